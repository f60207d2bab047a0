#include "config.h"

/* Load for the audit crash and disk-full tests: THREADS threads encrypt 32 bytes under KEY as
 * fast as they can, each request with its own request id, and print "ACK ID" once a request is
 * answered (so audited) and "REFUSED ID CLASS" when it is refused. Stops after COUNT requests per
 * thread, or when killed.
 *
 * usage: audit-loader CONFIG KEY THREADS COUNT */

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "p11kms.h"

static p11kms *svc;
static const char *key;
static unsigned long count;
static pthread_mutex_t out_lock = PTHREAD_MUTEX_INITIALIZER;

static void *worker(void *arg)
{
    unsigned long t = (unsigned long)(uintptr_t)arg;
    static const uint8_t pt[32] = "audit loader plaintext, 32 bytes";
    for (unsigned long i = 0; i < count; i++) {
        char id[64];
        snprintf(id, sizeof(id), "load-%lu-%lu", t, i);
        p11kms_error e = {0};
        p11kms_principal *who = p11kms_principal_new();
        if (who == NULL || p11kms_principal_add(who, "unix:user:loader", &e) != P11KMS_OK ||
            p11kms_principal_set_request_id(who, id, &e) != P11KMS_OK) {
            fprintf(stderr, "audit-loader: principal: %s\n", e.message);
            exit(99);
        }
        p11kms_result r;
        p11kms_err rc = p11kms_encrypt(svc, who, key, NULL, pt, sizeof(pt), &r, &e);
        pthread_mutex_lock(&out_lock);
        if (rc == P11KMS_OK)
            printf("ACK %s\n", id);
        else
            printf("REFUSED %s %s %s\n", id, p11kms_error_class(rc), e.message);
        fflush(stdout);
        pthread_mutex_unlock(&out_lock);
        if (rc == P11KMS_OK)
            p11kms_result_free(&r);
        p11kms_principal_free(who);
    }
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc != 5) {
        fprintf(stderr, "usage: audit-loader CONFIG KEY THREADS COUNT\n");
        return 2;
    }
    p11kms_error e = {0};
    if (p11kms_open(argv[1], &svc, &e) != P11KMS_OK) {
        fprintf(stderr, "audit-loader: open: %s\n", e.message);
        return 99;
    }
    key = argv[2];
    unsigned long threads = strtoul(argv[3], NULL, 10);
    count = strtoul(argv[4], NULL, 10);
    pthread_t tid[64];
    if (threads < 1 || threads > 64)
        return 2;
    for (unsigned long t = 0; t < threads; t++)
        if (pthread_create(&tid[t], NULL, worker, (void *)(uintptr_t)t) != 0)
            return 99;
    for (unsigned long t = 0; t < threads; t++)
        pthread_join(tid[t], NULL);
    p11kms_close(svc);
    return 0;
}
