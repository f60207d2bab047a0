/* Imported key material (BYOK): the maintenance the rest of the provider calls (doc/import.md). */
#ifndef P11KMS_PROVIDER_IMPORT_H
#define P11KMS_PROVIDER_IMPORT_H

#include "provider/service.h"

/* Maintenance: destroys expired material and expired wrapping key pairs; one line per action. */
p11kms_err import_maintain(p11kms *svc, void (*fn)(const char *line, void *arg), void *arg,
                           p11kms_error *err);

#endif
