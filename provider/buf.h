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

typedef struct buf_reader {
    const uint8_t *data;
    size_t len;
    size_t pos;
    bool failed;
} buf_reader;

void buf_reader_init(buf_reader *r, const void *data, size_t len);
/* Each returns true when the read succeeded; on failure *out is zeroed (or set to NULL). */
bool buf_read_u8(buf_reader *r, uint8_t *out);
bool buf_read_u16be(buf_reader *r, uint16_t *out);
bool buf_read_u32be(buf_reader *r, uint32_t *out);
/* Copies n bytes into out. */
bool buf_read_bytes(buf_reader *r, void *out, size_t n);
/* Points *out at the next n bytes of the input (no copy) and steps over them. */
bool buf_read_ref(buf_reader *r, size_t n, const uint8_t **out);
/* Bytes left after the position (0 once the reader failed). */
size_t buf_reader_remaining(const buf_reader *r);
/* True while no read has failed. */
bool buf_reader_ok(const buf_reader *r);

typedef struct buf_writer {
    uint8_t *data;
    size_t cap;
    size_t len; /* bytes written, or that would have been written (saturates at SIZE_MAX) */
    bool overflow;
} buf_writer;

void buf_writer_init(buf_writer *w, void *data, size_t cap);
/* Each returns true while everything written so far fits. */
bool buf_write_u8(buf_writer *w, uint8_t v);
bool buf_write_u16be(buf_writer *w, uint16_t v);
bool buf_write_u32be(buf_writer *w, uint32_t v);
bool buf_write_bytes(buf_writer *w, const void *src, size_t n);
/* Reserves the next n (> 0) bytes for the caller to fill in place (e.g. a cipher's output);
 * NULL when they do not fit, or when n is 0. */
uint8_t *buf_write_reserve(buf_writer *w, size_t n);
size_t buf_writer_len(const buf_writer *w);
bool buf_writer_ok(const buf_writer *w);

#endif
