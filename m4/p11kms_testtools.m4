# P11KMS_CHECK_TEST_TOOLS: where the test suite finds SoftHSM and OpenSC.
# Missing tools do not stop the build, but every test that needs them fails (never skips):
# a CI run without a real token must not pass.
AC_DEFUN([P11KMS_CHECK_TEST_TOOLS], [
  AC_ARG_WITH([softhsm-module],
    [AS_HELP_STRING([--with-softhsm-module=PATH], [SoftHSMv2 PKCS#11 module used by the tests])],
    [SOFTHSM_MODULE=$withval], [
      SOFTHSM_MODULE=
      for m in /usr/lib/softhsm/libsofthsm2.so /usr/lib/$host_cpu-linux-gnu/softhsm/libsofthsm2.so \
               /usr/lib64/pkcs11/libsofthsm2.so /usr/local/lib/softhsm/libsofthsm2.so; do
        AS_IF([test -f "$m"], [SOFTHSM_MODULE=$m; break])
      done])
  AC_MSG_CHECKING([for the SoftHSMv2 module used by the tests])
  AC_MSG_RESULT([${SOFTHSM_MODULE:-not found (apt-get install softhsm2)}])
  AC_PATH_PROG([SOFTHSM2_UTIL], [softhsm2-util], [])
  AC_PATH_PROG([PKCS11_TOOL], [pkcs11-tool], [])
  AC_PATH_PROG([VALGRIND], [valgrind], [])
  AC_SUBST([SOFTHSM_MODULE])
  # NSS softokn, the second token the suite runs on (TEST.nsstest; tests/lib/with-token.sh).
  AC_ARG_WITH([nss-softokn],
    [AS_HELP_STRING([--with-nss-softokn=PATH], [NSS softokn PKCS#11 module used by the tests])],
    [NSS_SOFTOKN=$withval], [
      NSS_SOFTOKN=
      multiarch=`dpkg-architecture -qDEB_HOST_MULTIARCH 2>/dev/null || echo $host_cpu-linux-gnu`
      for m in /usr/lib/$multiarch/libsoftokn3.so /usr/lib/$host_cpu-linux-gnu/libsoftokn3.so \
               /usr/lib64/libsoftokn3.so /usr/lib/libsoftokn3.so; do
        AS_IF([test -f "$m"], [NSS_SOFTOKN=$m; break])
      done])
  AC_MSG_CHECKING([for the NSS softokn module used by the tests])
  AC_MSG_RESULT([${NSS_SOFTOKN:-not found (apt-get install libnss3)}])
  AC_PATH_PROG([NSS_CERTUTIL], [certutil], [])
  AS_IF([test -z "$NSS_CERTUTIL"], [AC_MSG_WARN([certutil not found: the .nsstest tests will fail (apt-get install libnss3-tools)])])
  AC_SUBST([NSS_SOFTOKN])
])
