#include "config.h"

#include "buf.h"

bool buf_read_bytes(buf_reader *r, void *out, size_t n)
{
    const uint8_t *p;
    if (!buf_take_(r, n, &p)) {
        if (n > 0)
            memset(out, 0, n);
        return false;
    }
    if (n > 0)
        memcpy(out, p, n);
    return true;
}
