#include "config.h"

/* Error collection and typed access to the YAML tree for the policy loader. */

#include "policy/load.h"
#include "common/utf8.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- error reporting -------------------------------------------------------------------- */

/* Errors are kept and reported at the end in file order: fields are checked in a fixed order,
 * which is not always the order they were written in. */
void loader_report(loader *ld, unsigned line, unsigned column, const char *text)
{
    ld->errors++;
    if (ld->stored_count > MAX_REPORTED_ERRORS)
        return;
    load_error *grown = realloc(ld->stored, (ld->stored_count + 1) * sizeof(*grown));
    char *copy = strdup(text);
    if (grown == NULL || copy == NULL) {
        if (grown != NULL)
            ld->stored = grown;
        free(copy);
        ld->no_memory = true;
        return;
    }
    ld->stored = grown;
    ld->stored[ld->stored_count].line = line;
    ld->stored[ld->stored_count].column = column;
    ld->stored[ld->stored_count].seq = ld->stored_count;
    ld->stored[ld->stored_count].text = copy;
    ld->stored_count++;
}

static int cmp_error(const void *a, const void *b)
{
    const load_error *x = a, *y = b;
    if (x->line != y->line)
        return x->line < y->line ? -1 : 1;
    if (x->column != y->column)
        return x->column < y->column ? -1 : 1;
    return x->seq < y->seq ? -1 : x->seq > y->seq;
}

/* Sorts, passes each line to on_error and frees them; returns the first in *first. */
void loader_flush_errors(loader *ld, policy_error_fn on_error, void *arg, char *first,
                         size_t first_size)
{
    qsort(ld->stored, ld->stored_count, sizeof(*ld->stored), cmp_error);
    first[0] = '\0';
    for (size_t i = 0; i < ld->stored_count; i++) {
        if (i == 0)
            snprintf(first, first_size, "%s", ld->stored[i].text);
        if (on_error != NULL && i < MAX_REPORTED_ERRORS)
            on_error(ld->stored[i].text, arg);
        free(ld->stored[i].text);
    }
    if (on_error != NULL && ld->errors > MAX_REPORTED_ERRORS)
        on_error("too many errors; the rest are not shown", arg);
    if (on_error != NULL && ld->no_memory)
        on_error("out of memory while loading the policy", arg);
    free(ld->stored);
    ld->stored = NULL;
    ld->stored_count = 0;
}

P11KMS_PRINTF(3, 4)
void loader_error_at(loader *ld, const yaml_doc_node *node, const char *fmt, ...)
{
    char what[600], line[1400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof(what), fmt, ap);
    va_end(ap);
    if (node != NULL)
        snprintf(line, sizeof(line), "%s:%u:%u: %s", ld->doc->file, node->line, node->column, what);
    else
        snprintf(line, sizeof(line), "%s: %s", ld->doc->file, what);
    loader_report(ld, node != NULL ? node->line : 0, node != NULL ? node->column : 0, line);
}

void loader_no_memory(loader *ld)
{
    if (!ld->no_memory)
        ld->errors++;
    ld->no_memory = true;
}

/* Grows *array (of elem bytes) to hold count + 1 elements. */
bool loader_reserve(loader *ld, void *array, size_t count, size_t elem)
{
    void **p = array;
    /* Capacity doubles: the array holds the next power of two of count, so it grows only when
     * count is 0 or a power of two (appending n items costs O(n), not O(n^2) copies). */
    if (count != 0 && (count & (count - 1)) != 0)
        return true;
    size_t cap = count == 0 ? 1 : count * 2;
    if (cap < count || cap > SIZE_MAX / elem) {
        loader_no_memory(ld);
        return false;
    }
    void *grown = realloc(*p, cap * elem);
    if (grown == NULL) {
        loader_no_memory(ld);
        return false;
    }
    *p = grown;
    return true;
}

char *loader_dup(loader *ld, const char *s)
{
    char *d = strdup(s);
    if (d == NULL)
        loader_no_memory(ld);
    return d;
}

/* ---- typed access ----------------------------------------------------------------------- */

static bool is_null_scalar(const yaml_doc_node *node)
{
    if (node->kind != YAML_DOC_SCALAR || node->quoted)
        return false;
    const char *s = node->scalar;
    return *s == '\0' || strcmp(s, "~") == 0 || strcmp(s, "null") == 0 || strcmp(s, "Null") == 0 ||
           strcmp(s, "NULL") == 0;
}

static const char *kind_text(yaml_doc_kind kind)
{
    return kind == YAML_DOC_SCALAR ? "a scalar" : kind == YAML_DOC_MAP ? "a mapping" : "a list";
}

bool loader_expect(loader *ld, const yaml_doc_node *node, yaml_doc_kind kind, const char *what)
{
    if (node->kind == kind && !(kind == YAML_DOC_SCALAR && is_null_scalar(node)))
        return true;
    if (node->kind == YAML_DOC_SCALAR && is_null_scalar(node))
        loader_error_at(ld, node, "%s has no value (expected %s)", what, kind_text(kind));
    else
        loader_error_at(ld, node, "%s must be %s, not %s", what, kind_text(kind),
                        kind_text(node->kind));
    return false;
}

/* A string value: any non-null scalar (a plain 123 or true is taken as text). */
const char *loader_string(loader *ld, const yaml_doc_node *node, const char *what)
{
    return loader_expect(ld, node, YAML_DOC_SCALAR, what) ? node->scalar : NULL;
}

/* A list, or (when allowed) a single scalar standing for a list of one, which *one holds. */
bool loader_items(loader *ld, const yaml_doc_node *node, const char *what,
                  const yaml_doc_node **one, const yaml_doc_node *const **items, size_t *count)
{
    if (one != NULL && node->kind == YAML_DOC_SCALAR && !is_null_scalar(node)) {
        *one = node;
        *items = one;
        *count = 1;
        return true;
    }
    if (!loader_expect(ld, node, YAML_DOC_SEQ, what))
        return false;
    if (node->count == 0) {
        loader_error_at(ld, node, "%s is empty", what);
        return false;
    }
    *items = (const yaml_doc_node *const *)node->children;
    *count = node->count;
    return true;
}

/* Reports a required field absent from map. */
bool loader_require(loader *ld, const yaml_doc_node *map, const yaml_doc_node *value,
                    const char *what, const char *field)
{
    if (value != NULL)
        return true;
    loader_error_at(ld, map, "%s has no '%s'", what, field);
    return false;
}

/* Whether items[i] repeats an earlier item of the same list (reported at the repeat). */
bool loader_repeat(loader *ld, policy_index *written, const yaml_doc_node *const *items, size_t i,
                   const char *what)
{
    size_t n;
    const char *text = items[i]->scalar;
    const size_t *prev = policy_index_find(written, text, &n);
    if (prev != NULL) {
        loader_error_at(ld, items[i], "%s '%s' is listed twice (first at line %u, column %u)", what,
                        policy_quote(text).text, items[prev[0]]->line, items[prev[0]]->column);
        return true;
    }
    if (!policy_index_add(written, text, i))
        loader_no_memory(ld);
    return false;
}

bool loader_name_ok(const char *s)
{
    size_t len = strlen(s);
    if (len == 0 || len > 64)
        return false;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '_' || c == '.'))
            return false;
    }
    return true;
}
