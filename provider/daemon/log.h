/* p11kmsd's log: one line per event on stderr (journald when run by systemd). Lines never hold
 * a plaintext, a key or a PIN: callers pass names, ids and classes only. */
#ifndef P11KMS_DAEMON_LOG_H
#define P11KMS_DAEMON_LOG_H

void log_line(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* request=ID principal=NAME op=OP key=KEY decision=D error=CLASS status=N us=N */
void log_request(const char *request_id, const char *principal, const char *op, const char *key,
                 const char *decision, const char *error_class, unsigned status, long long us);

#endif
