/* One line of a maintenance report, formatted for the caller's callback. */
#ifndef P11KMS_PROVIDER_LIFECYCLE_REPORT_H
#define P11KMS_PROVIDER_LIFECYCLE_REPORT_H

#include "p11kms-error.h"

/* Formats one line of a maintenance report and hands it to fn (NULL: nothing). */
void lifecycle_report(void (*fn)(const char *line, void *arg), void *arg, const char *fmt, ...)
    P11KMS_PRINTF(3, 4);

#endif
