/* keycache_install_copy out of memory: after a key record is written (keycache_commit), this
 * process installs a copy of it in its cache. Each allocation of that install is made to fail in
 * turn (tests/lib/failalloc.c, armed only between the write and the keystore unlock that follows
 * it: the link wraps keystore_meta_write and keystore_unlock, see tests/provider.am). The call
 * must still succeed (the record is written), the entry must be forgotten (no snapshot: the next
 * access re-reads the store) rather than left holding the old record, nothing may leak, and
 * afterwards, with allocation working again, the key must be found with its new description and
 * encrypt and decrypt: never "not found". state-refresh-ms is an hour, so only the forgetting
 * makes the next access re-read. Run with session copies off (allocation balance checked to the
 * block) and on (the failed install must also drop the key's copy). */
#include "config.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "failalloc.h"
#include "lib/check.h"
#include "lib/provider-fixture.h"
#include "p11kms.h"
#include "provider/keycache.h"
#include "provider/keystore.h"
#include "provider/service.h"

#ifndef FAILALLOC_AVAILABLE
int main(void)
{
    /* AddressSanitizer owns malloc and cannot share it with the replacement. */
    fprintf(stderr, "provider-keycache-oom-test: skipped under AddressSanitizer\n");
    return 77;
}
#else

static p11kms_error e;

/* --- the window: from a successful record write to the unlock after it ------------------- */

static struct {
    bool wanted;         /* open the window at the next successful write */
    long fail;           /* allocation to fail in it (-1: none) */
    bool open;           /* armed now */
    int opened;          /* windows opened since the test asked for one */
    long attempts, live; /* what the window saw */
} win;

p11kms_err __real_keystore_meta_write(p11kms *svc, key_meta *m, p11kms_error *err);
p11kms_err __wrap_keystore_meta_write(p11kms *svc, key_meta *m, p11kms_error *err);
void __real_keystore_unlock(p11kms *svc);
void __wrap_keystore_unlock(p11kms *svc);

p11kms_err __wrap_keystore_meta_write(p11kms *svc, key_meta *m, p11kms_error *err)
{
    p11kms_err rc = __real_keystore_meta_write(svc, m, err);
    if (rc == P11KMS_OK && win.wanted && !win.open) {
        win.opened++;
        win.open = true;
        failalloc_arm(win.fail);
    }
    return rc;
}

void __wrap_keystore_unlock(p11kms *svc)
{
    if (win.open) {
        win.attempts = failalloc_attempts();
        win.live = failalloc_live();
        failalloc_disarm();
        win.open = false;
    }
    __real_keystore_unlock(svc);
}

/* --- helpers -------------------------------------------------------------------------------- */

/* The test configuration with token_lines added to its token section and keys_lines to its
 * keys section. */
static char *config_with(const char *name, const char *token_lines, const char *keys_lines)
{
    char *base = fx_config(name, keys_lines, NULL, NULL);
    char *text = test_read_file(base, NULL);
    REQUIRE(text != NULL);
    char *at = strstr(text, "\ntoken:\n");
    REQUIRE(at != NULL);
    at += strlen("\ntoken:\n");
    size_t n = strlen(text) + strlen(token_lines) + 1;
    char *out = malloc(n);
    REQUIRE(out != NULL);
    snprintf(out, n, "%.*s%s%s", (int)(at - text), text, token_lines, at);
    char *path = fx_write_file(name, out);
    free(out);
    free(text);
    free(base);
    return path;
}

static bool snapshot_cached(p11kms *svc, const char *id)
{
    key_entry *entry = keycache_entry(svc, id);
    REQUIRE(entry != NULL);
    pthread_mutex_lock(&entry->lock);
    bool cached = entry->snap != NULL;
    pthread_mutex_unlock(&entry->lock);
    return cached;
}

static size_t live_copies(p11kms *svc)
{
    keycache_copy_report r;
    keycache_copy_status(svc, &r);
    return r.live;
}

/* Found, with this description, and usable: an encrypt/decrypt round trip and the decryption of
 * a ciphertext made before the test. */
static bool usable(p11kms *svc, const p11kms_principal *who, const char *id, const char *desc,
                   const p11kms_result *old_ct)
{
    static const uint8_t pt[] = "still here after the failed install";
    bool ok = true;
    p11kms_key_metadata md;
    p11kms_err rc = p11kms_describe_key(svc, who, id, &md, &e);
    if (rc != P11KMS_OK) {
        fprintf(stderr, "  describe: %s: %s\n", p11kms_error_class(rc), e.message);
        return false;
    }
    if (strcmp(md.description, desc) != 0) {
        fprintf(stderr, "  description \"%s\", want \"%s\"\n", md.description, desc);
        ok = false;
    }
    p11kms_result ct = {0}, back = {0};
    rc = p11kms_encrypt(svc, who, id, NULL, pt, sizeof(pt), &ct, &e);
    if (rc == P11KMS_OK)
        rc = p11kms_decrypt(svc, who, id, NULL, ct.ciphertext, ct.ciphertext_len, &back, &e);
    if (rc != P11KMS_OK || !fx_same(back.plaintext, back.plaintext_len, pt, sizeof(pt))) {
        fprintf(stderr, "  round trip: %s: %s\n", p11kms_error_class(rc), e.message);
        ok = false;
    }
    p11kms_result_free(&back);
    p11kms_result_free(&ct);
    rc = p11kms_decrypt(svc, who, id, NULL, old_ct->ciphertext, old_ct->ciphertext_len, &back, &e);
    if (rc != P11KMS_OK) {
        fprintf(stderr, "  old ciphertext: %s: %s\n", p11kms_error_class(rc), e.message);
        ok = false;
    }
    p11kms_result_free(&back);
    return ok;
}

/* UpdateKeyDescription with the window open and allocation fail failing. */
static p11kms_err update(p11kms *svc, const p11kms_principal *who, const char *id, const char *desc,
                         long fail)
{
    win.wanted = true;
    win.fail = fail;
    win.opened = 0;
    p11kms_err rc = p11kms_update_key_description(svc, who, id, desc, &e);
    win.wanted = false;
    REQUIRE(!win.open);
    return rc;
}

static void run(const char *name, const char *token_lines, bool copies)
{
    fx_say("%s: each allocation of the cache install after UpdateKeyDescription fails in turn",
           name);
    p11kms_principal *who = fx_principal("unix:user:keycache-oom-tester");
    char *path = config_with(name, token_lines, "state-refresh-ms: 3600000");
    p11kms *svc = fx_open(path);
    char id[P11KMS_KEY_ID_LEN + 1];
    fx_create_key(svc, who, "desc-start", id);
    /* Tags and an alias: more parts of the record to copy, each its own allocation. */
    static const p11kms_tag tags[] = {{"team", "payments"}, {"env", "prod"}};
    CHECK_OK(p11kms_tag_resource(svc, who, id, tags, 2, &e), &e);
    CHECK_OK(p11kms_create_alias(svc, who, copies ? "alias/oom-copies" : "alias/oom", id, &e), &e);
    static const uint8_t pt[] = "made before the failures";
    p11kms_result old_ct;
    CHECK_OK(p11kms_encrypt(svc, who, id, NULL, pt, sizeof(pt), &old_ct, &e), &e);
    CHECK(usable(svc, who, id, "desc-start", &old_ct));
    CHECK(live_copies(svc) == (copies ? 1 : 0));

    /* Without a failure: the install keeps a snapshot of the same shape as the one it replaces
     * (the same blocks, a description of the same length), so the balance is zero. */
    CHECK_OK(update(svc, who, id, "desc-00000", -1), &e);
    CHECK(win.opened == 1);
    long made = win.attempts;
    CHECK(made >= 2); /* the record's copy and the snapshot that holds it */
    if (!copies)
        CHECK(win.live == 0);
    CHECK(snapshot_cached(svc, id));
    /* What forgetting the entry frees (its snapshot's blocks): the balance a failed install must
     * leave, which frees the old snapshot and keeps nothing of the new one. */
    key_entry *entry = keycache_entry(svc, id);
    REQUIRE(entry != NULL);
    failalloc_arm(-1);
    keycache_forget(svc, entry);
    long forget_balance = failalloc_live();
    failalloc_disarm();
    if (!copies)
        CHECK(forget_balance < 0);
    CHECK(usable(svc, who, id, "desc-00000", &old_ct));

    long failed = 0;
    for (long n = 0; n < 10000; n++) {
        char desc[32];
        snprintf(desc, sizeof(desc), "desc-%05ld", n + 1);
        if (!snapshot_cached(svc, id)) { /* usable() re-read it */
            CHECK(false);
            break;
        }
        size_t copies_before = live_copies(svc);
        p11kms_err rc = update(svc, who, id, desc, n);
        if (win.attempts <= n)
            break; /* every allocation of the install has failed once */
        failed++;
        /* The record was written before the install: the call succeeds either way. */
        if (rc != P11KMS_OK)
            fprintf(stderr, "  allocation %ld failed: %s: %s\n", n, p11kms_error_class(rc),
                    e.message);
        CHECK(rc == P11KMS_OK);
        CHECK(win.opened == 1);
        /* Forgotten, not left holding the old record or a partial one. */
        bool cached = snapshot_cached(svc, id);
        if (cached)
            fprintf(stderr, "  allocation %ld failed: the entry still holds a snapshot\n", n);
        CHECK(!cached);
        /* Forgetting drops the key's session copies (made again on the next use). */
        if (copies)
            CHECK(copies_before == 1 && live_copies(svc) == 0);
        /* Nothing leaked: the old snapshot's blocks were freed and nothing stayed. */
        if (!copies && win.live != forget_balance) {
            fprintf(stderr, "  allocation %ld failed: balance %ld, want %ld\n", n, win.live,
                    forget_balance);
            CHECK(false);
        }
        /* Allocation works again: found, with the description just written, and usable. */
        bool ok = usable(svc, who, id, desc, &old_ct);
        if (!ok)
            fprintf(stderr, "  allocation %ld failed: the key is not usable afterwards\n", n);
        CHECK(ok);
        if (copies)
            CHECK(live_copies(svc) == 1);
    }
    fx_say("%s: %ld allocation failures injected (the install makes %ld allocations)", name, failed,
           made);
    CHECK(failed == made);
    p11kms_result_free(&old_ct);
    p11kms_close(svc);
    p11kms_principal_free(who);
    free(path);
}

int main(void)
{
    run("keycache-oom-token-object.yaml", "  key-cache: token-object\n", false);
    run("keycache-oom-session-copy.yaml", "  key-cache: session-copy\n", true);
    return check_finish("provider-keycache-oom-test");
}
#endif
