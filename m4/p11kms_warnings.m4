# P11KMS_CHECK_WARNINGS: the project's warning set; --enable-strict (default) adds -Werror.
AC_DEFUN([P11KMS_CHECK_WARNINGS], [
  AC_ARG_ENABLE([strict],
    [AS_HELP_STRING([--disable-strict], [do not turn warnings into errors])],
    [], [enable_strict=yes])
  WARN_CFLAGS="-Wall -Wextra -Wshadow -Wstrict-prototypes -Wmissing-prototypes -Wformat=2 -Wno-unused-parameter"
  AS_IF([test "x$enable_strict" = xyes], [WARN_CFLAGS="$WARN_CFLAGS -Werror"])
  AC_SUBST([WARN_CFLAGS])
  HIDDEN_CFLAGS="-fvisibility=hidden"
  AC_SUBST([HIDDEN_CFLAGS])
])
