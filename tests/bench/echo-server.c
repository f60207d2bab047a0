#include "config.h"

/* The bare baseline of the daemon figure: a server on a Unix socket that does nothing but the
 * transport. It reads requests of a known length and answers each with a canned reply of a
 * given length, one epoll loop in one process (no HTTP library, no JSON, no token, no thread
 * hand-off): the fewest wake-ups any server can make per request. What it reaches is the ceiling
 * of p11kmsd's request rate on this machine; the figure reports p11kmsd against it. */

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench.h"

enum { MAX_FD = 4096, EVENTS = 64 };

static size_t pending[MAX_FD]; /* bytes of the current request read so far, per connection */

static _Noreturn void serve(int lfd, size_t request_len, const char *reply, size_t reply_len)
{
    int ep = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = lfd};
    if (ep < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev) != 0)
        _exit(2);
    char buf[8192];
    struct epoll_event ready[EVENTS];
    for (;;) {
        int n = epoll_wait(ep, ready, EVENTS, -1);
        for (int i = 0; i < n; i++) {
            int fd = ready[i].data.fd;
            if (fd == lfd) {
                int c = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
                struct epoll_event cev = {.events = EPOLLIN, .data.fd = c};
                if (c < 0 || c >= MAX_FD || epoll_ctl(ep, EPOLL_CTL_ADD, c, &cev) != 0) {
                    if (c >= 0)
                        close(c);
                    continue;
                }
                pending[c] = 0;
                continue;
            }
            ssize_t r = read(fd, buf, sizeof(buf));
            if (r <= 0) {
                if (r < 0 && errno == EINTR)
                    continue;
                close(fd); /* also leaves the epoll set */
                continue;
            }
            pending[fd] += (size_t)r;
            while (pending[fd] >= request_len) {
                pending[fd] -= request_len;
                size_t off = 0;
                while (off < reply_len) {
                    ssize_t w = write(fd, reply + off, reply_len - off);
                    if (w < 0 && errno == EINTR)
                        continue;
                    if (w <= 0)
                        break;
                    off += (size_t)w;
                }
            }
        }
    }
}

pid_t echo_server_start(const char *sock, size_t request_len, size_t reply_len)
{
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    if (strlen(sock) >= sizeof(a.sun_path))
        bench_die("socket path too long for a Unix socket: %s", sock);
    memcpy(a.sun_path, sock, strlen(sock) + 1);
    /* The reply: an HTTP/1.1 200 whose JSON body pads it to the length p11kmsd answered (the
     * Content-Length field has a fixed width, so the header's length does not depend on it). */
    static const char head_fmt[] = "HTTP/1.1 200 OK\r\nContent-Type: application/x-amz-json-1.1\r\n"
                                   "Content-Length: %6zu\r\n\r\n";
    size_t header_len = (size_t)snprintf(NULL, 0, head_fmt, (size_t)0);
    if (request_len == 0 || reply_len < header_len + 2 || reply_len - header_len > 999999)
        bench_die("echo server: a reply of %zu bytes cannot be built", reply_len);
    char *reply = malloc(reply_len + 1);
    if (reply == NULL)
        bench_die("out of memory");
    snprintf(reply, reply_len + 1, head_fmt, reply_len - header_len);
    memset(reply + header_len, 'A', reply_len - header_len);
    reply[header_len] = '{';
    reply[reply_len - 1] = '}';

    unlink(sock);
    int lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (lfd < 0 || bind(lfd, (struct sockaddr *)&a, sizeof(a)) != 0 || listen(lfd, 64) != 0)
        bench_die("echo server on %s: %s", sock, strerror(errno));
    pid_t pid = fork();
    if (pid < 0)
        bench_die("fork: %s", strerror(errno));
    if (pid == 0) {
        signal(SIGTERM, SIG_DFL);
        prctl(PR_SET_PDEATHSIG, SIGTERM); /* a benchmark that dies leaves no server behind */
        serve(lfd, request_len, reply, reply_len);
    }
    close(lfd);
    free(reply);
    return pid;
}

void echo_server_stop(pid_t pid)
{
    kill(pid, SIGTERM);
    int status = 0;
    waitpid(pid, &status, 0);
}
