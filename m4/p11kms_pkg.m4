# P11KMS_REQUIRE_PKG(VARIABLE-PREFIX, MODULES, DEBIAN-PACKAGE)
# pkg-config check whose failure tells the user which Debian package to install.
AC_DEFUN([P11KMS_REQUIRE_PKG], [
  PKG_CHECK_MODULES([$1], [$2], [],
    [AC_MSG_ERROR([$2 not found by pkg-config. On Debian: apt-get install $3])])
])
