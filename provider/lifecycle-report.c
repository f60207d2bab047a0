/* One line of a maintenance report, formatted for the caller's callback. */
#include "config.h"

#include "provider/lifecycle-report.h"

#include <stdarg.h>
#include <stdio.h>

void lifecycle_report(void (*fn)(const char *line, void *arg), void *arg, const char *fmt, ...)
{
    if (fn == NULL)
        return;
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    fn(line, arg);
}
