#include "config.h"

#include "buf.h"

#include <string.h>

void buf_reader_init(buf_reader *r, const void *data, size_t len)
{
    r->data = data;
    r->len = data != NULL ? len : 0;
    r->pos = 0;
    r->failed = false;
}

/* The one bounds check of the reader: everything else goes through it. A zero-length take
 * succeeds with a NULL pointer when the input itself is NULL. */
static bool take(buf_reader *r, size_t n, const uint8_t **p)
{
    *p = NULL;
    if (r->failed || n > r->len - r->pos) {
        r->failed = true;
        return false;
    }
    if (r->data != NULL)
        *p = r->data + r->pos;
    r->pos += n;
    return true;
}

bool buf_read_u8(buf_reader *r, uint8_t *out)
{
    const uint8_t *p;
    bool ok = take(r, 1, &p);
    *out = ok ? p[0] : 0;
    return ok;
}

bool buf_read_u16be(buf_reader *r, uint16_t *out)
{
    const uint8_t *p;
    bool ok = take(r, 2, &p);
    *out = ok ? (uint16_t)((unsigned)p[0] << 8 | p[1]) : 0;
    return ok;
}

bool buf_read_u32be(buf_reader *r, uint32_t *out)
{
    const uint8_t *p;
    bool ok = take(r, 4, &p);
    *out = ok ? (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3] : 0;
    return ok;
}

bool buf_read_bytes(buf_reader *r, void *out, size_t n)
{
    const uint8_t *p;
    if (!take(r, n, &p)) {
        if (n > 0)
            memset(out, 0, n);
        return false;
    }
    if (n > 0)
        memcpy(out, p, n);
    return true;
}

bool buf_read_ref(buf_reader *r, size_t n, const uint8_t **out)
{
    return take(r, n, out);
}

size_t buf_reader_remaining(const buf_reader *r)
{
    return r->failed ? 0 : r->len - r->pos;
}

bool buf_reader_ok(const buf_reader *r)
{
    return !r->failed;
}

void buf_writer_init(buf_writer *w, void *data, size_t cap)
{
    w->data = data;
    w->cap = data != NULL ? cap : 0;
    w->len = 0;
    w->overflow = false;
}

/* The one bounds check of the writer. */
uint8_t *buf_write_reserve(buf_writer *w, size_t n)
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

bool buf_write_u8(buf_writer *w, uint8_t v)
{
    uint8_t *p = buf_write_reserve(w, 1);
    if (p != NULL)
        p[0] = v;
    return p != NULL;
}

bool buf_write_u16be(buf_writer *w, uint16_t v)
{
    uint8_t *p = buf_write_reserve(w, 2);
    if (p != NULL) {
        p[0] = (uint8_t)(v >> 8);
        p[1] = (uint8_t)v;
    }
    return p != NULL;
}

bool buf_write_u32be(buf_writer *w, uint32_t v)
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

bool buf_write_bytes(buf_writer *w, const void *src, size_t n)
{
    if (n == 0)
        return !w->overflow;
    uint8_t *p = buf_write_reserve(w, n);
    if (p != NULL)
        memmove(p, src, n); /* src may already lie in the buffer (encode in place) */
    return p != NULL;
}

size_t buf_writer_len(const buf_writer *w)
{
    return w->len;
}

bool buf_writer_ok(const buf_writer *w)
{
    return !w->overflow;
}
