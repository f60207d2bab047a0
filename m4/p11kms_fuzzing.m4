# P11KMS_CHECK_FUZZING: --enable-fuzzing instruments everything for libFuzzer (clang only), with
# ASan and UBSan, so that `make fuzz` can build and run the fuzz targets (tests/fuzz.am). The
# check programs still build and run as usual in such a build. Call after
# P11KMS_CHECK_SANITIZERS: it replaces SANITIZER_CFLAGS.
AC_DEFUN([P11KMS_CHECK_FUZZING], [
  AC_ARG_ENABLE([fuzzing],
    [AS_HELP_STRING([--enable-fuzzing], [build for libFuzzer with ASan and UBSan (needs CC=clang); enables make fuzz])],
    [], [enable_fuzzing=no])
  FUZZ_LDFLAGS=
  AS_IF([test "x$enable_fuzzing" = xyes], [
    AS_IF([test "x$enable_sanitizers" = xyes],
      [AC_MSG_ERROR([--enable-fuzzing already builds with ASan and UBSan: drop --enable-sanitizers])])
    SANITIZER_CFLAGS="-fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer"
    FUZZ_LDFLAGS="-fsanitize=fuzzer"
    save_CFLAGS=$CFLAGS; CFLAGS="$CFLAGS $SANITIZER_CFLAGS"
    save_LDFLAGS=$LDFLAGS; LDFLAGS="$LDFLAGS $SANITIZER_CFLAGS $FUZZ_LDFLAGS"
    AC_MSG_CHECKING([whether $CC builds libFuzzer programs])
    AC_LINK_IFELSE([AC_LANG_SOURCE([[
#include <stddef.h>
#include <stdint.h>
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) { (void)data; (void)size; return 0; }
]])], [AC_MSG_RESULT([yes])],
      [AC_MSG_ERROR([$CC cannot link with -fsanitize=fuzzer,address,undefined (use CC=clang; apt-get install clang libclang-rt-dev)])])
    CFLAGS=$save_CFLAGS; LDFLAGS=$save_LDFLAGS
  ])
  AM_CONDITIONAL([FUZZING], [test "x$enable_fuzzing" = xyes])
  AC_SUBST([FUZZ_LDFLAGS])
])
