#include "config.h"

#include "buf.h"
#include "lib/check.h"

static void test_reader(void)
{
    static const uint8_t in[] = {0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09};
    buf_reader r;
    uint8_t u8;
    uint16_t u16;
    uint32_t u32;
    uint8_t two[2];
    const uint8_t *ref;

    buf_reader_init(&r, in, sizeof(in));
    CHECK(buf_read_u8(&r, &u8) && u8 == 0x01);
    CHECK(buf_read_u16be(&r, &u16) && u16 == 0x0203);
    CHECK(buf_read_u32be(&r, &u32) && u32 == 0x04050607);
    CHECK(buf_reader_remaining(&r) == 2);
    CHECK(buf_read_ref(&r, 0, &ref) && ref == in + 7);
    /* A read past the end fails, zeroes its output and sticks. */
    CHECK(!buf_read_u32be(&r, &u32) && u32 == 0);
    CHECK(!buf_reader_ok(&r));
    CHECK(buf_reader_remaining(&r) == 0);
    CHECK(!buf_read_u8(&r, &u8) && u8 == 0); /* would fit, but the reader already failed */

    buf_reader_init(&r, in, sizeof(in));
    CHECK(buf_read_ref(&r, 9, &ref) && ref == in && buf_reader_remaining(&r) == 0);
    CHECK(!buf_read_ref(&r, 1, &ref) && ref == NULL);

    buf_reader_init(&r, in, 1);
    two[0] = two[1] = 0xAA;
    CHECK(!buf_read_bytes(&r, two, 2) && two[0] == 0 && two[1] == 0);
    CHECK(!buf_read_u16be(&r, &u16) && u16 == 0);

    /* Lengths near SIZE_MAX must not wrap the bounds check. */
    buf_reader_init(&r, in, sizeof(in));
    CHECK(buf_read_u8(&r, &u8));
    CHECK(!buf_read_ref(&r, SIZE_MAX, &ref));

    buf_reader_init(&r, NULL, 0);
    CHECK(buf_read_ref(&r, 0, &ref) && ref == NULL && buf_reader_ok(&r));
    CHECK(!buf_read_u8(&r, &u8));
}

static void test_writer(void)
{
    uint8_t out[7];
    buf_writer w;
    buf_writer_init(&w, out, sizeof(out));
    CHECK(buf_write_u8(&w, 0xAB));
    CHECK(buf_write_u16be(&w, 0x0102));
    CHECK(buf_write_u32be(&w, 0xA1B2C3D4));
    CHECK(buf_writer_len(&w) == 7 && buf_writer_ok(&w));
    CHECK(memcmp(out, "\xAB\x01\x02\xA1\xB2\xC3\xD4", 7) == 0);
    CHECK(buf_write_bytes(&w, "", 0)); /* nothing to write still fits */
    CHECK(!buf_write_u8(&w, 0xFF));
    CHECK(!buf_writer_ok(&w) && buf_writer_len(&w) == 8);
    CHECK(memcmp(out, "\xAB\x01\x02\xA1\xB2\xC3\xD4", 7) == 0);

    /* A write that does not fit stores nothing, even when part of it would fit. */
    uint8_t small[3] = {0, 0, 0};
    buf_writer_init(&w, small, sizeof(small));
    CHECK(buf_write_u16be(&w, 0x1111));
    CHECK(!buf_write_u16be(&w, 0x2222));
    CHECK(small[2] == 0);
    CHECK(!buf_write_u8(&w, 0x33)); /* sticky, although one byte would fit */
    CHECK(small[2] == 0 && buf_writer_len(&w) == 5);

    /* Measuring: a NULL buffer counts what would be written. */
    buf_writer_init(&w, NULL, 0);
    buf_write_u32be(&w, 1);
    buf_write_bytes(&w, "abc", 3);
    CHECK(buf_writer_len(&w) == 7 && !buf_writer_ok(&w));

    /* Reserve gives a pointer into the buffer, or NULL. */
    buf_writer_init(&w, out, sizeof(out));
    uint8_t *p = buf_write_reserve(&w, 4);
    CHECK(p == out);
    CHECK(buf_write_reserve(&w, 0) == NULL);
    CHECK(buf_write_reserve(&w, 4) == NULL && !buf_writer_ok(&w));

    /* The length saturates instead of wrapping. */
    buf_writer_init(&w, out, sizeof(out));
    CHECK(buf_write_reserve(&w, SIZE_MAX) == NULL);
    CHECK(buf_write_reserve(&w, 10) == NULL);
    CHECK(buf_writer_len(&w) == SIZE_MAX);

    /* In-place: bytes already at their place are kept (memmove). */
    uint8_t place[4] = {1, 2, 3, 4};
    buf_writer_init(&w, place, sizeof(place));
    buf_write_u16be(&w, 0x0102);
    CHECK(buf_write_bytes(&w, place + 2, 2) && memcmp(place, "\x01\x02\x03\x04", 4) == 0);
}

int main(void)
{
    test_reader();
    test_writer();
    return check_finish("format-buf-test");
}
