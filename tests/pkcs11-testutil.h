/* Helpers shared by the token layer's tests (tests/pkcs11-*.c). */
#ifndef P11KMS_TESTS_PKCS11_TESTUTIL_H
#define P11KMS_TESTS_PKCS11_TESTUTIL_H

#include <stddef.h>
#include <stdint.h>

#include "lib/check.h"
#include "pkcs11/token.h"

/* Module, URI and "file:" PIN source of the test token (tests/lib/with-token.sh). */
p11_token_config pt_config(void);
/* Opens the token or exits 99. */
p11_token *pt_open(const p11_token_config *cfg);
/* Writes content to NAME in the test's scratch directory; returns the malloc'ed path. */
char *pt_write_file(const char *name, const char *content);
/* Writes a PIN file NAME in the scratch directory; returns "file:" + its path, malloc'ed. */
char *pt_write_source(const char *name, const char *content);
/* "file:" + path, malloc'ed. */
char *pt_file_source(const char *path);
/* Decodes hex; returns the length, exits 99 on bad input or overflow. */
size_t pt_unhex(const char *hex, uint8_t *out, size_t cap);
/* Path of the forwarding test module built from tests/pkcs11-shim.c. */
const char *pt_shim_path(void);
/* A control function of that module (p11kms_shim_count...), loading it on first use and keeping
 * it loaded; exits 99 if either is missing. */
void *pt_shim_symbol(const char *name);
/* Percent-encodes s for a PKCS#11 URI attribute value (RFC 7512: unreserved characters kept);
 * returns out, exits 99 if it does not fit. */
const char *pt_uri_escape(const char *s, char *out, size_t cap);
/* True when haystack contains needle. */
int pt_contains(const char *haystack, const char *needle);
/* True when the token stores CKO_DATA objects (pkcs11/data.c), found by writing and deleting
 * one. Where the token refuses the class (NSS softokn: CKR_ATTRIBUTE_VALUE_INVALID), prints
 * "not run on this token: WHAT (...)" and returns 0; any other failure fails the test, and on
 * SoftHSM, which stores them, so does a refusal: the checks are never passed over there. */
int pt_token_stores_data(p11_token *t, const char *what);

#endif
