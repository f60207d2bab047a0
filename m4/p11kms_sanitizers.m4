# P11KMS_CHECK_SANITIZERS: --enable-sanitizers builds everything with ASan and UBSan.
AC_DEFUN([P11KMS_CHECK_SANITIZERS], [
  AC_ARG_ENABLE([sanitizers],
    [AS_HELP_STRING([--enable-sanitizers], [build with AddressSanitizer and UndefinedBehaviorSanitizer])],
    [], [enable_sanitizers=no])
  SANITIZER_CFLAGS=
  AS_IF([test "x$enable_sanitizers" = xyes], [
    SANITIZER_CFLAGS="-fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer"
    save_CFLAGS=$CFLAGS; CFLAGS="$CFLAGS $SANITIZER_CFLAGS"
    save_LDFLAGS=$LDFLAGS; LDFLAGS="$LDFLAGS $SANITIZER_CFLAGS"
    AC_MSG_CHECKING([whether $CC supports ASan and UBSan])
    AC_LINK_IFELSE([AC_LANG_PROGRAM([], [])], [AC_MSG_RESULT([yes])],
      [AC_MSG_ERROR([the compiler cannot build with -fsanitize=address,undefined])])
    CFLAGS=$save_CFLAGS; LDFLAGS=$save_LDFLAGS
  ])
  AM_CONDITIONAL([SANITIZERS], [test "x$enable_sanitizers" = xyes])
  AC_SUBST([SANITIZER_CFLAGS])
])
