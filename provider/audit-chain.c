/* The audit log writer: records wait in memory for the writer thread, which appends them as one
 * batch (group commit) under an exclusive lock shared by every process using the log, chains
 * them, seals the batch with one HMAC computed by the token, fsyncs, and only then lets the
 * requests answer. Rotation and checkpoints happen under the same lock. */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>

#include "provider/audit.h"
#include "provider/keystore.h"
#include "common/threads.h"

typedef struct pending {
    const char *body;
    p11kms_err rc;
    char message[400];
    bool done;
    struct pending *next;
} pending;

typedef struct textbuf {
    char *p;
    size_t len, cap;
} textbuf;

struct audit_log {
    p11kms *svc;
    const service_config *cfg;
    char *lock_path;
    p11_key *key;
    char token_serial[17];

    pthread_mutex_t mu;
    pthread_cond_t wake, done;
    pending *head, *tail;
    bool stop; /* closing: the writer drains the queue and ends */
    pthread_t writer;
    bool writer_running;
    textbuf out; /* the batch being written (writer thread only) */

    /* Writer thread only, valid under the file lock. */
    int fd;
    dev_t dev;
    ino_t ino;
    off_t end;
    bool have_state;
    uint64_t seq;
    uint8_t hash[AUDIT_HASH_LEN];
    uint8_t chain[AUDIT_CHAIN_ID_LEN];
    int lock_fd;
    int64_t last_checkpoint_ms;
};

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

bool audit_log_refuses(const audit_log *log)
{
    return !log->cfg->audit_continue;
}

/* --- state of the chain ---------------------------------------------------------------------- */

/* Parses a seal line; false if line is not one. */
static bool parse_seal(const char *line, size_t len, uint64_t *seq,
                       uint8_t chain[AUDIT_CHAIN_ID_LEN])
{
    if (len < 10 || strncmp(line, "{\"seal\":", 8) != 0)
        return false;
    json_tokener *tok = json_tokener_new();
    json_object *o = json_tokener_parse_ex(tok, line, (int)len);
    bool ok = o != NULL && json_tokener_get_error(tok) == json_tokener_success;
    json_object *v;
    if (ok && json_object_object_get_ex(o, "seal", &v) && json_object_is_type(v, json_type_int))
        *seq = (uint64_t)json_object_get_int64(v);
    else
        ok = false;
    if (ok)
        ok = json_object_object_get_ex(o, "chain", &v) &&
             hex_decode_str(json_object_get_string(v), chain, AUDIT_CHAIN_ID_LEN, HEX_LOWER_ONLY);
    json_object_put(o);
    json_tokener_free(tok);
    return ok;
}

/* The state stored in the lock file at rotation: "SEQ HASH CHAIN\n". */
static bool read_lock_state(audit_log *log)
{
    char text[160] = {0}, hash[2 * AUDIT_HASH_LEN + 2], chain[2 * AUDIT_CHAIN_ID_LEN + 2];
    ssize_t n = pread(log->lock_fd, text, sizeof(text) - 1, 0);
    if (n <= 0 || sscanf(text, "%" SCNu64 " %65s %33s", &log->seq, hash, chain) != 3 ||
        !hex_decode_str(hash, log->hash, AUDIT_HASH_LEN, HEX_LOWER_ONLY) ||
        !hex_decode_str(chain, log->chain, AUDIT_CHAIN_ID_LEN, HEX_LOWER_ONLY))
        return false;
    return true;
}

static p11kms_err write_lock_state(audit_log *log, p11kms_error *err)
{
    char hash[2 * AUDIT_HASH_LEN + 1], chain[2 * AUDIT_CHAIN_ID_LEN + 1], text[160];
    hex_encode(log->hash, AUDIT_HASH_LEN, hash);
    hex_encode(log->chain, AUDIT_CHAIN_ID_LEN, chain);
    int n = snprintf(text, sizeof(text), "%" PRIu64 " %s %s\n", log->seq, hash, chain);
    if (ftruncate(log->lock_fd, 0) != 0 || pwrite(log->lock_fd, text, (size_t)n, 0) != n ||
        fsync(log->lock_fd) != 0)
        return P11KMS_RAISE(err, P11KMS_E_IO, "%s: cannot write the audit chain state: %s",
                            log->lock_path, strerror(errno));
    return P11KMS_OK;
}

/* Only this much of the end of the file is read to find the last seal (a batch is far
 * smaller); the whole file only when the window holds none. */
#define TAIL_WINDOW ((off_t)1 << 20)

/* Looks for the last complete seal line in [from, size) of the file. */
static p11kms_err scan_for_seal(audit_log *log, off_t from, off_t size, bool *found, off_t *keep,
                                p11kms_error *err)
{
    const char *path = log->cfg->audit_file;
    off_t len = size - from;
    *found = false;
    if (len <= 0)
        return P11KMS_OK;
    char *buf = malloc((size_t)len + 1);
    if (buf == NULL)
        return P11KMS_RAISE(err, P11KMS_E_NO_MEMORY, "out of memory reading %s", path);
    off_t got = 0;
    while (got < len) {
        ssize_t n = pread(log->fd, buf + got, (size_t)(len - got), from + got);
        if (n <= 0) {
            free(buf);
            return P11KMS_RAISE(err, P11KMS_E_IO, "%s: cannot read: %s", path,
                                n < 0 ? strerror(errno) : "short read");
        }
        got += n;
    }
    /* Walk complete lines backwards; a line cut by the start of the window is not one. */
    off_t line_end = len;
    while (line_end > 0 && buf[line_end - 1] != '\n')
        line_end--;
    while (line_end > 0 && !*found) {
        off_t start = line_end - 1;
        while (start > 0 && buf[start - 1] != '\n')
            start--;
        if (start == 0 && from > 0)
            break;
        uint64_t seq;
        if (parse_seal(buf + start, (size_t)(line_end - 1 - start), &seq, log->chain)) {
            *found = true;
            *keep = from + line_end;
            log->seq = seq;
            audit_hash_line(buf + start, (size_t)(line_end - 1 - start), log->hash);
        }
        line_end = start;
    }
    free(buf);
    return P11KMS_OK;
}

/* Finds the last seal line of the file; records after it were never acknowledged (their writer
 * died before sealing and syncing them) and are cut off. */
static p11kms_err recover_tail(audit_log *log, off_t size, p11kms_error *err)
{
    const char *path = log->cfg->audit_file;
    off_t keep = 0;
    bool found = false;
    off_t from = size > TAIL_WINDOW ? size - TAIL_WINDOW : 0;
    p11kms_err rc = scan_for_seal(log, from, size, &found, &keep, err);
    if (rc == P11KMS_OK && !found && from > 0)
        rc = scan_for_seal(log, 0, size, &found, &keep, err);
    if (rc != P11KMS_OK)
        return rc;
    if (!found) {
        if (!read_lock_state(log)) {
            /* A new chain: its id names its checkpoint in the token. */
            log->seq = 0;
            memset(log->hash, 0, sizeof(log->hash));
            if (RAND_bytes_ex(log->svc->libctx, log->chain, AUDIT_CHAIN_ID_LEN, 0) != 1)
                return P11KMS_RAISE(err, P11KMS_E_INTERNAL, "no random bytes for a chain id");
        }
        keep = 0;
    }
    if (keep < size) {
        fprintf(stderr,
                "p11kms: audit: %s: cutting %lld bytes after the last seal (records of requests "
                "that were never answered)\n",
                path, (long long)(size - keep));
        if (ftruncate(log->fd, keep) != 0 || fsync(log->fd) != 0)
            return P11KMS_RAISE(err, P11KMS_E_IO, "%s: cannot cut the unsealed tail: %s", path,
                                strerror(errno));
    }
    log->end = keep;
    log->have_state = true;
    return P11KMS_OK;
}

static p11kms_err open_current(audit_log *log, p11kms_error *err)
{
    if (log->fd >= 0)
        close(log->fd);
    log->fd = open(log->cfg->audit_file, O_RDWR | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
    if (log->fd < 0)
        return P11KMS_RAISE(err, P11KMS_E_IO, "%s: cannot open the audit log: %s",
                            log->cfg->audit_file, strerror(errno));
    struct stat st;
    if (fstat(log->fd, &st) != 0)
        return P11KMS_RAISE(err, P11KMS_E_IO, "%s: %s", log->cfg->audit_file, strerror(errno));
    log->dev = st.st_dev;
    log->ino = st.st_ino;
    log->have_state = false;
    return P11KMS_OK;
}

/* Under the file lock: makes fd the current file and the chain state its tail, whatever other
 * processes did since this one last wrote. */
static p11kms_err sync_state(audit_log *log, p11kms_error *err)
{
    struct stat st;
    if (log->fd < 0 || stat(log->cfg->audit_file, &st) != 0 || st.st_dev != log->dev ||
        st.st_ino != log->ino) {
        p11kms_err rc = open_current(log, err);
        if (rc != P11KMS_OK)
            return rc;
    }
    if (fstat(log->fd, &st) != 0)
        return P11KMS_RAISE(err, P11KMS_E_IO, "%s: %s", log->cfg->audit_file, strerror(errno));
    if (log->have_state && st.st_size == log->end)
        return P11KMS_OK;
    return recover_tail(log, st.st_size, err);
}

static bool new_day(const audit_log *log)
{
    struct stat st;
    if (fstat(log->fd, &st) != 0 || st.st_size == 0)
        return false;
    time_t now = time(NULL);
    struct tm a, b;
    gmtime_r(&st.st_mtime, &a);
    gmtime_r(&now, &b);
    return a.tm_year != b.tm_year || a.tm_yday != b.tm_yday;
}

/* Renames the current file to FILE.YYYYMMDDTHHMMSSZ.LASTSEQ and starts a new one; the chain
 * state goes to the lock file first so the new file continues it. */
static p11kms_err rotate(audit_log *log, p11kms_error *err)
{
    p11kms_err rc = write_lock_state(log, err);
    if (rc != P11KMS_OK)
        return rc;
    char stamp[32], *to = NULL;
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(stamp, sizeof(stamp), "%Y%m%dT%H%M%SZ", &tm);
    if (asprintf(&to, "%s.%s.%020" PRIu64, log->cfg->audit_file, stamp, log->seq) < 0)
        return P11KMS_RAISE(err, P11KMS_E_NO_MEMORY, "out of memory");
    int r = rename(log->cfg->audit_file, to);
    free(to);
    if (r != 0)
        return P11KMS_RAISE(err, P11KMS_E_IO, "%s: cannot rotate: %s", log->cfg->audit_file,
                            strerror(errno));
    uint64_t seq = log->seq;
    uint8_t hash[AUDIT_HASH_LEN], chain[AUDIT_CHAIN_ID_LEN];
    memcpy(hash, log->hash, sizeof(hash));
    memcpy(chain, log->chain, sizeof(chain));
    rc = open_current(log, err);
    if (rc != P11KMS_OK)
        return rc;
    log->seq = seq;
    memcpy(log->hash, hash, sizeof(hash));
    memcpy(log->chain, chain, sizeof(chain));
    log->end = 0;
    log->have_state = true;
    return P11KMS_OK;
}

/* --- one batch -------------------------------------------------------------------------------- */

static bool text_add(textbuf *t, const char *s, size_t n)
{
    if (t->len + n + 1 > t->cap) {
        size_t cap = (t->cap ? t->cap * 2 : 4096) + n;
        char *p = realloc(t->p, cap);
        if (p == NULL)
            return false;
        t->p = p;
        t->cap = cap;
    }
    memcpy(t->p + t->len, s, n);
    t->len += n;
    t->p[t->len] = '\0';
    return true;
}

/* Appends one line (without its newline) and advances the chain. */
static bool add_line(textbuf *t, uint8_t hash[AUDIT_HASH_LEN], const char *line, size_t n)
{
    audit_hash_line(line, n, hash);
    return text_add(t, line, n) && text_add(t, "\n", 1);
}

static p11kms_err write_all(audit_log *log, const char *p, size_t n, p11kms_error *err)
{
    size_t done = 0;
    while (done < n) {
        ssize_t w = write(log->fd, p + done, n - done);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return P11KMS_RAISE(err, P11KMS_E_IO, "%s: audit write failed: %s",
                                log->cfg->audit_file, w < 0 ? strerror(errno) : "no progress");
        done += (size_t)w;
    }
    if (fsync(log->fd) != 0)
        return P11KMS_RAISE(err, P11KMS_E_IO, "%s: audit fsync failed: %s", log->cfg->audit_file,
                            strerror(errno));
    return P11KMS_OK;
}

static p11kms_err store_checkpoint(audit_log *log, p11kms_error *err)
{
    audit_checkpoint c = {.seq = log->seq, .time = (int64_t)time(NULL)};
    memcpy(c.hash, log->hash, sizeof(c.hash));
    memcpy(c.chain, log->chain, sizeof(c.chain));
    uint8_t in[AUDIT_MAC_INPUT_MAX];
    size_t n = audit_mac_input(AUDIT_CHECKPOINT_DOMAIN, c.chain, c.seq, c.hash, in);
    p11kms_err rc = p11_hmac_sha256(log->svc->token, log->key, in, n, c.mac, err);
    if (rc == P11KMS_OK)
        rc = audit_checkpoint_store(log->svc, &c, err);
    if (rc == P11KMS_OK)
        log->last_checkpoint_ms = now_ms();
    return rc;
}

static p11kms_err write_batch(audit_log *log, pending *batch, textbuf *out, p11kms_error *err)
{
    p11kms_err rc = sync_state(log, err);
    if (rc != P11KMS_OK)
        return rc;
    uint64_t seq = log->seq;
    uint8_t hash[AUDIT_HASH_LEN];
    memcpy(hash, log->hash, sizeof(hash));
    out->len = 0;
    for (pending *p = batch; p != NULL; p = p->next) {
        char head[128], prev[2 * AUDIT_HASH_LEN + 1];
        hex_encode(hash, AUDIT_HASH_LEN, prev);
        int hn = snprintf(head, sizeof(head), "{\"seq\":%" PRIu64 ",\"prev\":\"%s\",", ++seq, prev);
        size_t start = out->len;
        if (!text_add(out, head, (size_t)hn) || !text_add(out, p->body, strlen(p->body)) ||
            !text_add(out, "}", 1))
            return P11KMS_RAISE(err, P11KMS_E_NO_MEMORY, "out of memory");
        audit_hash_line(out->p + start, out->len - start, hash);
        if (!text_add(out, "\n", 1))
            return P11KMS_RAISE(err, P11KMS_E_NO_MEMORY, "out of memory");
    }
    uint8_t in[AUDIT_MAC_INPUT_MAX], mac[P11_HMAC_SHA256_LEN];
    size_t n = audit_mac_input(AUDIT_SEAL_DOMAIN, log->chain, seq, hash, in);
    rc = p11_hmac_sha256(log->svc->token, log->key, in, n, mac, err);
    if (rc != P11KMS_OK)
        return rc;
    char seal[400], prev[2 * AUDIT_HASH_LEN + 1], mac_hex[2 * P11_HMAC_SHA256_LEN + 1];
    char chain[2 * AUDIT_CHAIN_ID_LEN + 1];
    hex_encode(hash, AUDIT_HASH_LEN, prev);
    hex_encode(mac, P11_HMAC_SHA256_LEN, mac_hex);
    hex_encode(log->chain, AUDIT_CHAIN_ID_LEN, chain);
    int sn = snprintf(seal, sizeof(seal),
                      "{\"seal\":%" PRIu64 ",\"prev\":\"%s\",\"chain\":\"%s\",\"token\":\"%s\","
                      "\"mac\":\"%s\"}",
                      seq, prev, chain, log->token_serial, mac_hex);
    if (!add_line(out, hash, seal, (size_t)sn))
        return P11KMS_RAISE(err, P11KMS_E_NO_MEMORY, "out of memory");

    if ((log->cfg->audit_max_size > 0 && log->end > 0 &&
         (uint64_t)log->end + out->len > log->cfg->audit_max_size) ||
        (log->cfg->audit_daily && new_day(log))) {
        rc = rotate(log, err);
        if (rc != P11KMS_OK)
            return rc;
    }
    rc = write_all(log, out->p, out->len, err);
    if (rc != P11KMS_OK) {
        /* Nothing of a failed batch is acknowledged: take back what reached the file. */
        if (ftruncate(log->fd, log->end) != 0 || fsync(log->fd) != 0)
            log->have_state = false;
        return rc;
    }
    log->end += (off_t)out->len;
    log->seq = seq;
    memcpy(log->hash, hash, sizeof(hash));
    if (now_ms() - log->last_checkpoint_ms >= (int64_t)log->cfg->audit_checkpoint_s * 1000) {
        p11kms_error cerr = {0};
        if (store_checkpoint(log, &cerr) != P11KMS_OK)
            fprintf(stderr, "p11kms: audit: WARNING: checkpoint not stored: %s\n", cerr.message);
    }
    if (log->cfg->audit_syslog) {
        for (pending *p = batch; p != NULL; p = p->next)
            syslog(LOG_AUTHPRIV | LOG_INFO, "p11kms-audit {%s}", p->body);
    }
    return P11KMS_OK;
}

static p11kms_err flush(audit_log *log, pending *batch, textbuf *out, p11kms_error *err)
{
    if (flock(log->lock_fd, LOCK_EX) != 0)
        return P11KMS_RAISE(err, P11KMS_E_IO, "%s: cannot lock: %s", log->lock_path,
                            strerror(errno));
    p11kms_err rc = write_batch(log, batch, out, err);
    flock(log->lock_fd, LOCK_UN);
    return rc;
}

/* Group commit: the writer thread takes every record waiting, waits up to audit.sync-delay-ms
 * for more, writes them as one batch with one seal and one fsync, then wakes their requests.
 * A request waits only for the batch that holds its record. */
static void *writer_main(void *arg)
{
    audit_log *log = arg;
    pthread_mutex_lock(&log->mu);
    for (;;) {
        while (log->head == NULL && !log->stop)
            pthread_cond_wait(&log->wake, &log->mu);
        if (log->head == NULL)
            break; /* stopping, nothing left */
        if (log->cfg->audit_sync_delay_ms > 0 && !log->stop) {
            struct timespec until;
            clock_gettime(CLOCK_REALTIME, &until);
            until.tv_nsec += (long)log->cfg->audit_sync_delay_ms * 1000000L;
            until.tv_sec += until.tv_nsec / 1000000000L;
            until.tv_nsec %= 1000000000L;
            while (!log->stop && pthread_cond_timedwait(&log->wake, &log->mu, &until) == 0)
                ;
        }
        pending *batch = log->head;
        log->head = log->tail = NULL;
        pthread_mutex_unlock(&log->mu);
        p11kms_error ferr = {0};
        p11kms_err rc = flush(log, batch, &log->out, &ferr);
        pthread_mutex_lock(&log->mu);
        for (pending *q = batch; q != NULL;) {
            pending *next = q->next;
            q->rc = rc;
            if (rc != P11KMS_OK)
                snprintf(q->message, sizeof(q->message), "%.399s", ferr.message);
            q->done = true;
            q = next;
        }
        pthread_cond_broadcast(&log->done);
    }
    pthread_mutex_unlock(&log->mu);
    return NULL;
}

p11kms_err audit_log_write(audit_log *log, const char *body, p11kms_error *err)
{
    pending p = {.body = body};
    pthread_mutex_lock(&log->mu);
    if (log->tail != NULL)
        log->tail->next = &p;
    else
        log->head = &p;
    log->tail = &p;
    pthread_cond_signal(&log->wake);
    while (!p.done)
        pthread_cond_wait(&log->done, &log->mu);
    pthread_mutex_unlock(&log->mu);
    if (p.rc != P11KMS_OK)
        return P11KMS_RAISE(err, p.rc, "%s", p.message);
    return P11KMS_OK;
}

/* --- open and close --------------------------------------------------------------------------- */

void audit_log_close(audit_log *log)
{
    if (log == NULL)
        return;
    if (log->writer_running) {
        pthread_mutex_lock(&log->mu);
        log->stop = true;
        pthread_cond_signal(&log->wake);
        pthread_mutex_unlock(&log->mu);
        pthread_join(log->writer, NULL);
        log->writer_running = false;
    }
    /* The shutdown checkpoint: only when this process wrote the tail of the log. */
    if (log->key != NULL && log->lock_fd >= 0 && flock(log->lock_fd, LOCK_EX) == 0) {
        struct stat st;
        if (log->fd >= 0 && log->have_state && log->seq > 0 &&
            stat(log->cfg->audit_file, &st) == 0 && st.st_ino == log->ino &&
            st.st_dev == log->dev && st.st_size == log->end) {
            p11kms_error err = {0};
            if (store_checkpoint(log, &err) != P11KMS_OK)
                fprintf(stderr, "p11kms: audit: WARNING: shutdown checkpoint not stored: %s\n",
                        err.message);
        }
        flock(log->lock_fd, LOCK_UN);
    }
    if (log->fd >= 0)
        close(log->fd);
    if (log->lock_fd >= 0)
        close(log->lock_fd);
    pthread_cond_destroy(&log->wake);
    pthread_cond_destroy(&log->done);
    pthread_mutex_destroy(&log->mu);
    free(log->lock_path);
    free(log->out.p);
    free(log);
}

/* The audit key, made if the token has none yet under the keystore lock (every process and host
 * sharing the token and store takes it): two processes that both found none and both generated
 * would leave two keys with one CKA_ID, and no audit log could find its key again. */
static p11kms_err audit_key_made_once(p11kms *svc, p11_key **out, p11kms_error *err)
{
    p11kms_error first = {0};
    p11kms_err rc = audit_key_get(svc->token, false, out, &first);
    if (rc != P11KMS_E_NOT_FOUND) {
        if (rc != P11KMS_OK && err != NULL)
            *err = first;
        return rc;
    }
    rc = keystore_lock(svc, err);
    if (rc != P11KMS_OK)
        return rc;
    rc = audit_key_get(svc->token, true, out, err);
    keystore_unlock(svc);
    return rc;
}

p11kms_err audit_log_open(p11kms *svc, audit_log **out, p11kms_error *err)
{
    *out = NULL;
    audit_log *log = calloc(1, sizeof(*log));
    if (log == NULL)
        return P11KMS_RAISE(err, P11KMS_E_NO_MEMORY, "out of memory");
    log->svc = svc;
    log->cfg = svc->cfg;
    log->fd = log->lock_fd = -1;
    log->last_checkpoint_ms = now_ms();
    const sync_obj locks[] = {
        {SYNC_MUTEX, &log->mu, "the audit log lock"},
        {SYNC_COND, &log->wake, "the audit writer's wake condition"},
        {SYNC_COND, &log->done, "the audit writer's done condition"},
    };
    p11kms_err sync_rc = sync_init_all(locks, sizeof(locks) / sizeof(locks[0]), err);
    if (sync_rc != P11KMS_OK) {
        free(log);
        return sync_rc;
    }
    p11kms_err rc = P11KMS_OK;
    if (asprintf(&log->lock_path, "%s.lock", svc->cfg->audit_file) < 0) {
        log->lock_path = NULL;
        rc = P11KMS_RAISE(err, P11KMS_E_NO_MEMORY, "out of memory");
    }
    if (rc == P11KMS_OK) {
        log->lock_fd = open(log->lock_path, O_RDWR | O_CREAT | O_CLOEXEC, 0640);
        if (log->lock_fd < 0)
            rc = P11KMS_RAISE(err, P11KMS_E_IO, "%s: cannot open: %s", log->lock_path,
                              strerror(errno));
    }
    p11_token_info info;
    if (rc == P11KMS_OK)
        rc = p11_token_get_info(svc->token, &info, err);
    if (rc == P11KMS_OK) {
        snprintf(log->token_serial, sizeof(log->token_serial), "%s", info.token_serial);
        rc = audit_key_made_once(svc, &log->key, err);
    }
    if (rc == P11KMS_OK)
        rc = audit_checkpoint_migrate(svc, err);
    if (rc == P11KMS_OK && svc->cfg->audit_syslog)
        openlog("p11kms", LOG_PID, LOG_AUTHPRIV);
    if (rc == P11KMS_OK) {
        int e = pthread_create(&log->writer, NULL, writer_main, log);
        if (e != 0)
            rc = P11KMS_RAISE(err, P11KMS_E_INTERNAL, "cannot start the audit writer: %s",
                              strerror(e));
        log->writer_running = e == 0;
    }
    if (rc != P11KMS_OK) {
        audit_log_close(log);
        return rc;
    }
    *out = log;
    return P11KMS_OK;
}
