#include "config.h"

#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

/* One write per line, so that lines of concurrent workers never interleave. Control
 * characters (which a client could put in a key name) become '?'. */
static void emit(char *line, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)line[i] < 0x20 || line[i] == 0x7f)
            line[i] = '?';
    line[len] = '\n';
    ssize_t w = write(STDERR_FILENO, line, len + 1);
    (void)w;
}

void log_line(const char *fmt, ...)
{
    char line[1024];
    int n = snprintf(line, sizeof(line), "p11kmsd: ");
    va_list ap;
    va_start(ap, fmt);
    int m = vsnprintf(line + n, sizeof(line) - (size_t)n - 1, fmt, ap);
    va_end(ap);
    size_t len = (size_t)n + (m < 0 ? 0 : (size_t)m);
    if (len > sizeof(line) - 2)
        len = sizeof(line) - 2;
    emit(line, len);
}

/* A field value as one word: a client chooses key names (and a certificate subject holds
 * spaces), and a space in one would let it write fields of its own, such as "decision=allowed",
 * into the line. Spaces become %20 and '%' %25; a value longer than out_size - 1 is cut (at a
 * whole character of the output). */
static void one_word(const char *value, char *out, size_t out_size)
{
    size_t o = 0;
    for (size_t i = 0; value[i] != '\0' && o + 4 <= out_size; i++) {
        if (value[i] == ' ' || value[i] == '%') {
            memcpy(out + o, value[i] == ' ' ? "%20" : "%25", 3);
            o += 3;
        } else {
            out[o++] = value[i];
        }
    }
    out[o] = '\0';
}

void log_request(const char *request_id, const char *principal, const char *op, const char *key,
                 const char *decision, const char *error_class, unsigned status, long long us)
{
    char who[201], what[301];
    one_word(principal, who, sizeof(who));
    one_word(key != NULL && key[0] != '\0' ? key : "-", what, sizeof(what));
    log_line("request=%s principal=%s op=%s key=%s decision=%s error=%s status=%u us=%lld",
             request_id, who, op, what, decision, error_class != NULL ? error_class : "-", status,
             us);
}
