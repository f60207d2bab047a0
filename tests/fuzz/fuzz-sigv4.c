/* Fuzz target: the SigV4 Authorization header parser, and the whole verifier around it
 * (provider/daemon/sigv4.c). The input is one Authorization header value, any bytes.
 *
 * Invariants: the parser accepts or says why it refuses; what it accepts is well formed (an
 * access key id, an 8-digit date, 1..64 strictly sorted signed headers); the verifier never
 * accepts a request whose signature is not right (the signing key is fixed, the inputs random)
 * and every refusal has an error class and a message. */
#include "config.h"

#include <string.h>

#include "fuzz.h"
#include "provider/daemon/sigv4.h"

static p11kms_err fixed_key(void *arg, const char *akid, const char *date, const char *region,
                            const char *service, uint8_t key[32], char *principal_name, size_t size,
                            p11kms_error *err)
{
    (void)arg;
    (void)date;
    (void)region;
    (void)service;
    if (strcmp(akid, "PKMSFUZZKEYAAAAAAAAA") != 0)
        return P11KMS_RAISE(err, P11KMS_E_NOT_FOUND, "unknown");
    memset(key, 0x5a, 32);
    snprintf(principal_name, size, "fuzz");
    return P11KMS_OK;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    sigv4_authorization a;
    char why[200];
    sigv4_status st = sigv4_parse_authorization((const char *)data, size, &a, why, sizeof(why));
    FUZZ_ASSERT(st == SIGV4_OK || st == SIGV4_INCOMPLETE);
    FUZZ_ASSERT(st == SIGV4_OK || why[0] != '\0');
    if (st == SIGV4_OK) {
        /* what the parser accepted is well-formed */
        FUZZ_ASSERT(a.access_key_id[0] != '\0' && strlen(a.date) == 8);
        FUZZ_ASSERT(a.header_count > 0 && a.header_count <= SIGV4_SIGNED_HEADERS_MAX);
        for (size_t i = 1; i < a.header_count; i++)
            FUZZ_ASSERT(strcmp(a.headers[i - 1], a.headers[i]) < 0);
    }
    /* the whole verifier with this header: never accepted without the right signature */
    sigv4_header hs[] = {
        {"Host", 4, "localhost", 9},
        {"X-Amz-Date", 10, "20261130T120000Z", 16},
        {"Content-Type", 12, "application/x-amz-json-1.1", 26},
        {"X-Amz-Target", 12, "TrentService.ListKeys", 21},
        {"Authorization", 13, (const char *)data, size},
    };
    sigv4_request req = {"POST", "/", "", hs, 5, (const uint8_t *)"{}", 2};
    sigv4_expect ex = {"us-east-1", "kms", 1796040000, NULL, fixed_key, NULL};
    sigv4_result res;
    sigv4_status v = sigv4_verify(&req, &ex, &res);
    /* random bytes never carry the HMAC of this request under the fixed key */
    FUZZ_ASSERT(v != SIGV4_OK);
    FUZZ_ASSERT(res.error_class != NULL && res.message[0] != '\0');
    return 0;
}
