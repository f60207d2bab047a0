/* Strict YAML document loader shared by the policy and the configuration parsers.
 *
 * Loads one YAML document with libyaml into a tree of scalars, mappings and sequences that
 * remember their line and column. It refuses what a deployment file never needs and an attacker
 * could abuse: anchors and aliases, tags other than the core scalar tags, duplicate mapping keys,
 * more than one document, non-UTF-8 input, input over a size bound and nesting over a depth
 * bound. Errors carry "file:line:column: message".
 *
 * Also refused: control characters other than tab and line breaks (also C1 and DEL), scalars
 * that would contain a NUL (a "\0" escape), non-scalar mapping keys. Columns count characters,
 * not bytes. Every error is raised with the caller's error_code (also for a file that cannot be
 * opened), except running out of memory (P11KMS_E_NO_MEMORY). */
#ifndef P11KMS_COMMON_YAML_DOC_H
#define P11KMS_COMMON_YAML_DOC_H

#include <stdbool.h>
#include <stddef.h>

#include "p11kms-error.h"

#define YAML_DOC_MAX_BYTES (1024 * 1024)
#define YAML_DOC_MAX_DEPTH 32

typedef enum yaml_doc_kind { YAML_DOC_SCALAR, YAML_DOC_MAP, YAML_DOC_SEQ } yaml_doc_kind;

typedef struct yaml_doc_node yaml_doc_node;
struct yaml_doc_node {
    yaml_doc_kind kind;
    unsigned line, column; /* 1-based, where the node starts */
    char *scalar;          /* SCALAR: NUL-terminated UTF-8 value */
    size_t scalar_len;
    bool quoted; /* SCALAR: written in quotes, as a block scalar or with !!str (so "123"
                  * is a string, not a number) */
    /* MAP: keys[i] (always SCALAR nodes) maps to children[i]; SEQ: children[i]. */
    yaml_doc_node **keys;
    yaml_doc_node **children;
    size_t count;
};

typedef struct yaml_doc {
    char *file;          /* name used in messages */
    yaml_doc_node *root; /* NULL for an empty document */
} yaml_doc;

/* Loads from a file path or an in-memory buffer (name is used in messages). On failure *out is
 * NULL and err->message is "name:line:column: what is wrong". */
P11KMS_MUST_CHECK p11kms_err yaml_doc_load_file(const char *path, p11kms_err error_code,
                                                yaml_doc **out, p11kms_error *err);
P11KMS_MUST_CHECK p11kms_err yaml_doc_load_buffer(const char *name, const char *data, size_t len,
                                                  p11kms_err error_code, yaml_doc **out,
                                                  p11kms_error *err);
void yaml_doc_free(yaml_doc *doc);

/* Mapping lookup by key (NULL if absent or node is not a mapping). */
const yaml_doc_node *yaml_doc_map_get(const yaml_doc_node *map, const char *key);

/* yaml_doc_load_file that also refuses a file whose mode has any of forbidden_mode's bits
 * (e.g. 022: writable by group or others). Never blocks on a FIFO: only regular files load. */
P11KMS_MUST_CHECK p11kms_err yaml_doc_load_file_mode(const char *path, unsigned forbidden_mode,
                                                     p11kms_err error_code, yaml_doc **out,
                                                     p11kms_error *err);

/* Scalar conversions; each fails (raising error_code with file:line:column) on a wrong type. */
p11kms_err yaml_doc_expect(const yaml_doc *doc, const yaml_doc_node *node, yaml_doc_kind kind,
                           const char *what, p11kms_err error_code, p11kms_error *err);
p11kms_err yaml_doc_get_uint(const yaml_doc *doc, const yaml_doc_node *node, unsigned long min,
                             unsigned long max, unsigned long *out, p11kms_err error_code,
                             p11kms_error *err);
p11kms_err yaml_doc_get_bool(const yaml_doc *doc, const yaml_doc_node *node, bool *out,
                             p11kms_err error_code, p11kms_error *err);
/* Records error_code with "file:line:column: " + formatted message at node. */
void yaml_doc_report_at(const yaml_doc *doc, const yaml_doc_node *node, p11kms_err error_code,
                        p11kms_error *err, const char *fmt, ...) P11KMS_PRINTF(5, 6);
/* Raises error_code at node and evaluates to it, visibly, so that callers and static analysis
 * see that "return yaml_doc_error_at(...)" never returns P11KMS_OK (like P11KMS_RAISE).
 * error_code is evaluated twice: pass a constant or a plain variable. */
#define yaml_doc_error_at(doc, node, error_code, err, ...)                                         \
    (yaml_doc_report_at((doc), (node), (error_code), (err), __VA_ARGS__), (p11kms_err)(error_code))

#endif
