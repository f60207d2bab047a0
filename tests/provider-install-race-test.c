/* Two threads install a key's record in its cache entry at the same time (provider/keycache.c,
 * install_at): the first publishes its snapshot and releases the entry's lock; before it goes on,
 * the second replaces that snapshot and drops the entry's reference to it, which frees it. The
 * first must not read its snapshot after publishing it. A CI run caught that (heap-use-after-free
 * under AddressSanitizer in provider-threads-test): it read the snapshot's current version to
 * decide which session copies to drop.
 *
 * The interleaving is forced, not hoped for: the link wraps pthread_mutex_unlock (see
 * tests/provider.am), and the wrapper holds the first thread right after it releases the entry's
 * lock until the second has installed. The read of freed memory is what AddressSanitizer and
 * valgrind report (CI runs this test under both); a plain build cannot see it. */
#include "config.h"

#include <pthread.h>
#include <semaphore.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include "lib/check.h"
#include "lib/provider-fixture.h"
#include "p11kms.h"
#include "provider/keycache.h"
#include "provider/service.h"

static p11kms_error e;

static _Atomic(pthread_mutex_t *) hold_after;
static pthread_t held_thread;
static sem_t go, held, resume;
static int holds;

int __real_pthread_mutex_unlock(pthread_mutex_t *m);
int __wrap_pthread_mutex_unlock(pthread_mutex_t *m);

int __wrap_pthread_mutex_unlock(pthread_mutex_t *m)
{
    int rc = __real_pthread_mutex_unlock(m);
    pthread_mutex_t *want = atomic_load(&hold_after);
    if (want != NULL && m == want && pthread_equal(pthread_self(), held_thread)) {
        atomic_store(&hold_after, NULL);
        holds++;
        sem_post(&held);
        sem_wait(&resume);
    }
    return rc;
}

typedef struct {
    p11kms *svc;
    key_entry *entry;
    p11kms_err rc;
    p11kms_error err;
} loader;

static void *first_installer(void *arg)
{
    loader *l = arg;
    sem_wait(&go); /* armed for this thread */
    l->rc = keycache_load(l->svc, l->entry, &l->err);
    return NULL;
}

static const meta_snapshot *current_snapshot(key_entry *entry)
{
    pthread_mutex_lock(&entry->lock);
    const meta_snapshot *s = entry->snap;
    pthread_mutex_unlock(&entry->lock);
    return s;
}

int main(void)
{
    REQUIRE(sem_init(&go, 0, 0) == 0 && sem_init(&held, 0, 0) == 0 && sem_init(&resume, 0, 0) == 0);
    p11kms *svc = fx_open(NULL);
    p11kms_principal *who = fx_principal("unix:user:install-race");
    char id[P11KMS_KEY_ID_LEN + 1];
    fx_create_key(svc, who, "install race", id);
    /* An Encrypt makes the version's session copy: install_at then decides which to drop. */
    static const uint8_t pt[] = "race";
    p11kms_result r;
    CHECK_OK(p11kms_encrypt(svc, who, id, NULL, pt, sizeof(pt), &r, &e), &e);
    p11kms_result_free(&r);
    key_entry *entry = keycache_entry(svc, id);
    REQUIRE(entry != NULL);

    fx_say("a second install frees the first one's snapshot between its unlock and what follows");
    for (int round = 0; round < 3; round++) {
        const meta_snapshot *before = current_snapshot(entry);
        loader first = {.svc = svc, .entry = entry};
        pthread_t t;
        REQUIRE(pthread_create(&t, NULL, first_installer, &first) == 0);
        held_thread = t;
        atomic_store(&hold_after, &entry->lock);
        sem_post(&go);
        sem_wait(&held);
        /* The first thread has published its snapshot and released the lock. */
        CHECK(current_snapshot(entry) != before);
        CHECK_OK(keycache_load(svc, entry, &e), &e);
        sem_post(&resume);
        pthread_join(t, NULL);
        CHECK_OK(first.rc, &first.err);
    }
    CHECK(holds == 3);

    fx_say("the key still encrypts and decrypts through its copy");
    CHECK_OK(p11kms_encrypt(svc, who, id, NULL, pt, sizeof(pt), &r, &e), &e);
    p11kms_result back;
    CHECK_OK(p11kms_decrypt(svc, who, NULL, NULL, r.ciphertext, r.ciphertext_len, &back, &e), &e);
    CHECK(back.plaintext_len == sizeof(pt) && memcmp(back.plaintext, pt, sizeof(pt)) == 0);
    p11kms_result_free(&back);
    p11kms_result_free(&r);

    p11kms_principal_free(who);
    p11kms_close(svc);
    return check_finish("provider-install-race-test");
}
