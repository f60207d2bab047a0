/* Checked byte buffers: the one way p11kms parsers and encoders touch binary layouts.
 *
 * A reader walks an input with a position and a sticky failure flag: a read that would run past
 * the end fails, leaves the position where it was and makes every later read fail too, so a
 * parser may read several fields and test once. A writer fills a fixed caller buffer; a write
 * that does not fit stores nothing, sets a sticky overflow flag and still counts its length, so
 * buf_writer_len() tells how large the buffer should have been (a writer over a NULL buffer of
 * capacity 0 measures). All integers are unsigned big-endian. */
#ifndef P11KMS_BUF_H
#define P11KMS_BUF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

typedef struct buf_reader {
    const uint8_t *data;
    size_t len;
    size_t pos;
    bool failed;
} buf_reader;

typedef struct buf_writer {
    uint8_t *data;
    size_t cap;
    size_t len; /* bytes written, or that would have been written (saturates at SIZE_MAX) */
    bool overflow;
} buf_writer;

/* Everything here is inline but buf_read_bytes: these run once per field on the encrypt and
 * decrypt paths. */

static inline void buf_reader_init(buf_reader *r, const void *data, size_t len)
{
    r->data = data;
    r->len = data != NULL ? len : 0;
    r->pos = 0;
    r->failed = false;
}

static inline void buf_writer_init(buf_writer *w, void *data, size_t cap)
{
    w->data = data;
    w->cap = data != NULL ? cap : 0;
    w->len = 0;
    w->overflow = false;
}

/* The one bounds check of the reader. A zero-length take succeeds with a NULL pointer when the
 * input itself is NULL. */
static inline bool buf_take_(buf_reader *r, size_t n, const uint8_t **p)
{
    *p = NULL;
    if (r->failed || n > r->len - r->pos || (r->data == NULL && n > 0)) {
        r->failed = true;
        return false;
    }
    if (r->data != NULL)
        *p = r->data + r->pos;
    r->pos += n;
    return true;
}

/* Each read returns true when it succeeded; on failure *out is zeroed (or set to NULL). */
static inline bool buf_read_u8(buf_reader *r, uint8_t *out)
{
    const uint8_t *p;
    bool ok = buf_take_(r, 1, &p);
    *out = ok ? p[0] : 0;
    return ok;
}

static inline bool buf_read_u16be(buf_reader *r, uint16_t *out)
{
    const uint8_t *p;
    bool ok = buf_take_(r, 2, &p);
    *out = ok ? (uint16_t)((unsigned)p[0] << 8 | p[1]) : 0;
    return ok;
}

static inline bool buf_read_u32be(buf_reader *r, uint32_t *out)
{
    const uint8_t *p;
    bool ok = buf_take_(r, 4, &p);
    *out = ok ? (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3] : 0;
    return ok;
}

/* Copies n bytes into out. */
bool buf_read_bytes(buf_reader *r, void *out, size_t n);

/* Points *out at the next n bytes of the input (no copy) and steps over them. */
static inline bool buf_read_ref(buf_reader *r, size_t n, const uint8_t **out)
{
    return buf_take_(r, n, out);
}

/* Bytes left after the position (0 once the reader failed). */
static inline size_t buf_reader_remaining(const buf_reader *r)
{
    return r->failed ? 0 : r->len - r->pos;
}

/* True while no read has failed. */
static inline bool buf_reader_ok(const buf_reader *r)
{
    return !r->failed;
}

/* Reserves the next n (> 0) bytes for the caller to fill in place (e.g. a cipher's output);
 * NULL when they do not fit, or when n is 0. The one bounds check of the writer. */
static inline uint8_t *buf_write_reserve(buf_writer *w, size_t n)
{
    if (n == 0)
        return NULL;
    if (w->overflow || n > w->cap - w->len) {
        w->overflow = true;
        w->len = n > SIZE_MAX - w->len ? SIZE_MAX : w->len + n;
        return NULL;
    }
    uint8_t *p = w->data + w->len;
    w->len += n;
    return p;
}

/* Each write returns true while everything written so far fits. */
static inline bool buf_write_u8(buf_writer *w, uint8_t v)
{
    uint8_t *p = buf_write_reserve(w, 1);
    if (p != NULL)
        p[0] = v;
    return p != NULL;
}

static inline bool buf_write_u16be(buf_writer *w, uint16_t v)
{
    uint8_t *p = buf_write_reserve(w, 2);
    if (p != NULL) {
        p[0] = (uint8_t)(v >> 8);
        p[1] = (uint8_t)v;
    }
    return p != NULL;
}

static inline bool buf_write_u32be(buf_writer *w, uint32_t v)
{
    uint8_t *p = buf_write_reserve(w, 4);
    if (p != NULL) {
        p[0] = (uint8_t)(v >> 24);
        p[1] = (uint8_t)(v >> 16);
        p[2] = (uint8_t)(v >> 8);
        p[3] = (uint8_t)v;
    }
    return p != NULL;
}

/* src may already lie in the buffer (encoding in place): the bytes are moved, not copied. */
static inline bool buf_write_bytes(buf_writer *w, const void *src, size_t n)
{
    if (n == 0)
        return !w->overflow;
    uint8_t *p = buf_write_reserve(w, n);
    if (p != NULL && p != src)
        memmove(p, src, n);
    return p != NULL;
}

static inline size_t buf_writer_len(const buf_writer *w)
{
    return w->len;
}

static inline bool buf_writer_ok(const buf_writer *w)
{
    return !w->overflow;
}

#endif
