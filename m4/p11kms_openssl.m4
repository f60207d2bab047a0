# P11KMS_CHECK_OPENSSL_FEATURES
# Link-test what p11kms needs from OpenSSL instead of trusting a version number:
# a private library context, the secure heap and AES-256-GCM fetched from a context.
AC_DEFUN([P11KMS_CHECK_OPENSSL_FEATURES], [
  AC_MSG_CHECKING([for OSSL_LIB_CTX, secure heap and fetchable AES-256-GCM])
  save_CFLAGS=$CFLAGS; save_LIBS=$LIBS
  CFLAGS="$CFLAGS $LIBCRYPTO_CFLAGS"; LIBS="$LIBS $LIBCRYPTO_LIBS"
  AC_LINK_IFELSE([AC_LANG_PROGRAM([[
#include <openssl/crypto.h>
#include <openssl/evp.h>
]], [[
    OSSL_LIB_CTX *ctx = OSSL_LIB_CTX_new();
    EVP_CIPHER *c = EVP_CIPHER_fetch(ctx, "AES-256-GCM", NULL);
    void *p = OPENSSL_secure_zalloc(32);
    OPENSSL_secure_clear_free(p, 32);
    EVP_CIPHER_free(c);
    OSSL_LIB_CTX_free(ctx);
    return CRYPTO_secure_malloc_initialized();
]])], [AC_MSG_RESULT([yes])],
     [AC_MSG_RESULT([no])
      AC_MSG_ERROR([OpenSSL 3 with OSSL_LIB_CTX and the secure heap is required. On Debian: apt-get install libssl-dev])])
  CFLAGS=$save_CFLAGS; LIBS=$save_LIBS
])
