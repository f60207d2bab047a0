# P11KMS_CHECK_PTHREAD: the session pool and caches are shared between threads.
AC_DEFUN([P11KMS_CHECK_PTHREAD], [
  AC_SEARCH_LIBS([pthread_create], [pthread], [],
    [AC_MSG_ERROR([POSIX threads are required (libc6-dev)])])
  AC_SEARCH_LIBS([dlopen], [dl], [],
    [AC_MSG_ERROR([dlopen is required (libc6-dev)])])
])
