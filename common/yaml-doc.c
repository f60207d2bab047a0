#include "config.h"

#include "common/yaml-doc.h"
#include "common/utf8.h"

#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <yaml.h>

static const char *doc_name(const char *name)
{
    return name != NULL && *name != '\0' ? name : "<buffer>";
}

P11KMS_PRINTF(6, 7)
static p11kms_err raise_at(p11kms_error *err, p11kms_err code, const char *name, unsigned line,
                           unsigned column, const char *fmt, ...)
{
    char what[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof(what), fmt, ap);
    va_end(ap);
    return P11KMS_RAISE(err, code, "%s:%u:%u: %s", doc_name(name), line, column, what);
}

/* ---- UTF-8 check ------------------------------------------------------------------------ */

/* YAML's printable set: tab, line breaks, and no other C0, DEL, C1 (but NEL), U+FFFE, U+FFFF. */
static bool yaml_printable(uint32_t cp)
{
    if (cp < 0x20)
        return cp == 0x09 || cp == 0x0A || cp == 0x0D;
    if (cp >= 0x7F && cp <= 0x9F)
        return cp == 0x85;
    return cp != 0xFFFE && cp != 0xFFFF;
}

/* Checks the whole input before libyaml sees it: libyaml would also refuse bad UTF-8 and control
 * characters, but only where it reads them, without a useful position, and it silently accepts
 * UTF-16 with a byte order mark. Columns count characters, like libyaml's. */
static p11kms_err check_utf8(const char *name, const char *data, size_t len, p11kms_err code,
                             p11kms_error *err)
{
    const unsigned char *s = (const unsigned char *)data;
    unsigned line = 1, column = 1;
    for (size_t i = 0; i < len;) {
        size_t n = policy_utf8_sequence_len(s + i, len - i);
        if (n == 0)
            return raise_at(err, code, name, line, column,
                            "input is not valid UTF-8 (byte 0x%02X at offset %zu)", s[i], i);
        uint32_t cp = policy_utf8_code_point(s + i, n);
        if (!yaml_printable(cp))
            return raise_at(err, code, name, line, column,
                            "control character U+%04lX is not allowed", (unsigned long)cp);
        /* Line breaks as libyaml counts them: LF, CR not before LF, NEL, LS, PS. */
        bool lone_cr = cp == '\r' && !(i + 1 < len && s[i + 1] == '\n');
        if (cp == '\n' || lone_cr || cp == 0x85 || cp == 0x2028 || cp == 0x2029) {
            line++;
            column = 1;
        } else if (cp != '\r') {
            column++;
        }
        i += n;
    }
    return P11KMS_OK;
}

/* ---- tree ------------------------------------------------------------------------------- */

static void node_free(yaml_doc_node *node)
{
    if (node == NULL)
        return;
    for (size_t i = 0; i < node->count; i++) {
        if (node->keys != NULL)
            node_free(node->keys[i]);
        node_free(node->children[i]);
    }
    free(node->keys);
    free(node->children);
    free(node->scalar);
    free(node);
}

void yaml_doc_free(yaml_doc *doc)
{
    if (doc == NULL)
        return;
    node_free(doc->root);
    free(doc->file);
    free(doc);
}

/* Appends child (and, for a mapping, its key) to parent; takes ownership of both on success. */
static int node_append(yaml_doc_node *parent, yaml_doc_node *key, yaml_doc_node *child)
{
    size_t n = parent->count + 1;
    /* Capacity doubles: the arrays hold the next power of two of count, so they grow only when
     * count is 0 or a power of two (a long sequence costs O(n) copies, not O(n^2)). */
    size_t c = parent->count;
    if (c == 0 || (c & (c - 1)) == 0) {
        size_t cap = c == 0 ? 1 : c * 2;
        if (cap < c || cap > SIZE_MAX / sizeof(yaml_doc_node *))
            return -1;
        yaml_doc_node **children = realloc(parent->children, cap * sizeof(*children));
        if (children == NULL)
            return -1;
        parent->children = children;
        if (parent->kind == YAML_DOC_MAP) {
            yaml_doc_node **keys = realloc(parent->keys, cap * sizeof(*keys));
            if (keys == NULL)
                return -1;
            parent->keys = keys;
        }
    }
    if (parent->kind == YAML_DOC_MAP)
        parent->keys[parent->count] = key;
    parent->children[parent->count] = child;
    parent->count = n;
    return 0;
}

/* ---- loader ----------------------------------------------------------------------------- */

typedef struct loader {
    const char *name;
    p11kms_err code;
    p11kms_error *err;
    yaml_doc_node *root;
    /* Open collections, innermost last; for a mapping, pending_key is its key awaiting a value. */
    yaml_doc_node *stack[YAML_DOC_MAX_DEPTH];
    yaml_doc_node *pending_key[YAML_DOC_MAX_DEPTH];
    size_t depth;
    int documents;
} loader;

static p11kms_err no_memory(loader *ld)
{
    return P11KMS_RAISE(ld->err, P11KMS_E_NO_MEMORY, "%s: out of memory while loading YAML",
                        doc_name(ld->name));
}

static bool tag_is(const yaml_char_t *tag, const char *suffix)
{
    static const char prefix[] = "tag:yaml.org,2002:";
    const char *t = (const char *)tag;
    return strncmp(t, prefix, sizeof(prefix) - 1) == 0 &&
           strcmp(t + sizeof(prefix) - 1, suffix) == 0;
}

/* Only the YAML core schema tags, each on the kind of node it describes. Sets *force_string for
 * !!str, which makes a plain scalar a string like quoting does. */
static p11kms_err check_tag(loader *ld, const yaml_mark_t *mark, const yaml_char_t *tag,
                            yaml_doc_kind kind, bool *force_string)
{
    if (tag == NULL)
        return P11KMS_OK;
    bool ok;
    switch (kind) {
    case YAML_DOC_SCALAR:
        ok = tag_is(tag, "str") || tag_is(tag, "int") || tag_is(tag, "bool") ||
             tag_is(tag, "null") || tag_is(tag, "float");
        if (ok && force_string != NULL && tag_is(tag, "str"))
            *force_string = true;
        break;
    case YAML_DOC_MAP:
        ok = tag_is(tag, "map");
        break;
    default:
        ok = tag_is(tag, "seq");
        break;
    }
    if (ok)
        return P11KMS_OK;
    policy_quoted q = policy_quote((const char *)tag);
    return raise_at(ld->err, ld->code, ld->name, (unsigned)mark->line + 1,
                    (unsigned)mark->column + 1, "tag '%s' is not allowed (only core tags)", q.text);
}

static p11kms_err refuse_anchor(loader *ld, const yaml_mark_t *mark, const yaml_char_t *anchor)
{
    if (anchor == NULL)
        return P11KMS_OK;
    policy_quoted q = policy_quote((const char *)anchor);
    return raise_at(ld->err, ld->code, ld->name, (unsigned)mark->line + 1,
                    (unsigned)mark->column + 1, "anchors are not allowed (anchor '&%s')", q.text);
}

static yaml_doc_node *node_new(yaml_doc_kind kind, const yaml_mark_t *mark)
{
    yaml_doc_node *node = calloc(1, sizeof(*node));
    if (node == NULL)
        return NULL;
    node->kind = kind;
    node->line = (unsigned)mark->line + 1;
    node->column = (unsigned)mark->column + 1;
    return node;
}

/* Places a finished node: as the document root, as a sequence item, as a mapping key or as the
 * value of the pending mapping key. Takes ownership of node in every case. */
static p11kms_err attach(loader *ld, yaml_doc_node *node)
{
    if (ld->depth == 0) {
        ld->root = node;
        return P11KMS_OK;
    }
    yaml_doc_node *parent = ld->stack[ld->depth - 1];
    if (parent->kind == YAML_DOC_SEQ) {
        if (node_append(parent, NULL, node) != 0) {
            node_free(node);
            return no_memory(ld);
        }
        return P11KMS_OK;
    }
    yaml_doc_node *key = ld->pending_key[ld->depth - 1];
    if (key == NULL) {
        if (node->kind != YAML_DOC_SCALAR) {
            p11kms_err rc = raise_at(ld->err, ld->code, ld->name, node->line, node->column,
                                     "mapping keys must be scalars");
            node_free(node);
            return rc;
        }
        for (size_t i = 0; i < parent->count; i++) {
            const yaml_doc_node *k = parent->keys[i];
            if (k->scalar_len == node->scalar_len &&
                memcmp(k->scalar, node->scalar, node->scalar_len) == 0) {
                policy_quoted q = policy_quote(node->scalar);
                p11kms_err rc = raise_at(ld->err, ld->code, ld->name, node->line, node->column,
                                         "duplicate mapping key '%s' (first at line %u, column %u)",
                                         q.text, k->line, k->column);
                node_free(node);
                return rc;
            }
        }
        ld->pending_key[ld->depth - 1] = node;
        return P11KMS_OK;
    }
    ld->pending_key[ld->depth - 1] = NULL;
    if (node_append(parent, key, node) != 0) {
        node_free(key);
        node_free(node);
        return no_memory(ld);
    }
    return P11KMS_OK;
}

static p11kms_err on_scalar(loader *ld, const yaml_event_t *ev)
{
    const yaml_mark_t *mark = &ev->start_mark;
    bool force_string = false;
    p11kms_err rc = refuse_anchor(ld, mark, ev->data.scalar.anchor);
    if (rc == P11KMS_OK)
        rc = check_tag(ld, mark, ev->data.scalar.tag, YAML_DOC_SCALAR, &force_string);
    if (rc != P11KMS_OK)
        return rc;
    const char *value = (const char *)ev->data.scalar.value;
    size_t len = ev->data.scalar.length;
    /* A "\0" escape would make a C string shorter than the YAML value: two different values
     * would then compare equal in every consumer. */
    if (memchr(value, '\0', len) != NULL)
        return raise_at(ld->err, ld->code, ld->name, (unsigned)mark->line + 1,
                        (unsigned)mark->column + 1, "scalar contains a NUL character");
    yaml_doc_node *node = node_new(YAML_DOC_SCALAR, mark);
    if (node == NULL)
        return no_memory(ld);
    node->scalar = malloc(len + 1);
    if (node->scalar == NULL) {
        free(node);
        return no_memory(ld);
    }
    memcpy(node->scalar, value, len);
    node->scalar[len] = '\0';
    node->scalar_len = len;
    node->quoted = force_string || ev->data.scalar.style != YAML_PLAIN_SCALAR_STYLE;
    return attach(ld, node);
}

static p11kms_err on_collection_start(loader *ld, const yaml_event_t *ev, yaml_doc_kind kind)
{
    const yaml_mark_t *mark = &ev->start_mark;
    const yaml_char_t *anchor =
        kind == YAML_DOC_MAP ? ev->data.mapping_start.anchor : ev->data.sequence_start.anchor;
    const yaml_char_t *tag =
        kind == YAML_DOC_MAP ? ev->data.mapping_start.tag : ev->data.sequence_start.tag;
    p11kms_err rc = refuse_anchor(ld, mark, anchor);
    if (rc == P11KMS_OK)
        rc = check_tag(ld, mark, tag, kind, NULL);
    if (rc != P11KMS_OK)
        return rc;
    if (ld->depth >= YAML_DOC_MAX_DEPTH)
        return raise_at(ld->err, ld->code, ld->name, (unsigned)mark->line + 1,
                        (unsigned)mark->column + 1, "nesting deeper than %d levels",
                        YAML_DOC_MAX_DEPTH);
    if (ld->depth > 0 && ld->stack[ld->depth - 1]->kind == YAML_DOC_MAP &&
        ld->pending_key[ld->depth - 1] == NULL)
        return raise_at(ld->err, ld->code, ld->name, (unsigned)mark->line + 1,
                        (unsigned)mark->column + 1, "mapping keys must be scalars");
    yaml_doc_node *node = node_new(kind, mark);
    if (node == NULL)
        return no_memory(ld);
    ld->stack[ld->depth] = node;
    ld->pending_key[ld->depth] = NULL;
    ld->depth++;
    return P11KMS_OK;
}

static p11kms_err on_collection_end(loader *ld)
{
    /* libyaml guarantees balanced start/end events and a value for every key; refuse rather than
     * trust it if that ever breaks. */
    if (ld->depth == 0 || ld->stack[ld->depth - 1] == NULL)
        return raise_at(ld->err, ld->code, ld->name, 0, 0, "unbalanced collection end event");
    ld->depth--;
    yaml_doc_node *node = ld->stack[ld->depth];
    ld->stack[ld->depth] = NULL;
    return attach(ld, node);
}

static p11kms_err on_event(loader *ld, const yaml_event_t *ev, bool *done)
{
    const yaml_mark_t *mark = &ev->start_mark;
    switch (ev->type) {
    case YAML_DOCUMENT_START_EVENT:
        if (++ld->documents > 1)
            return raise_at(ld->err, ld->code, ld->name, (unsigned)mark->line + 1,
                            (unsigned)mark->column + 1,
                            "more than one YAML document (only one is allowed)");
        return P11KMS_OK;
    case YAML_ALIAS_EVENT: {
        policy_quoted q = policy_quote((const char *)ev->data.alias.anchor);
        return raise_at(ld->err, ld->code, ld->name, (unsigned)mark->line + 1,
                        (unsigned)mark->column + 1, "aliases are not allowed (alias '*%s')",
                        q.text);
    }
    case YAML_SCALAR_EVENT:
        return on_scalar(ld, ev);
    case YAML_SEQUENCE_START_EVENT:
        return on_collection_start(ld, ev, YAML_DOC_SEQ);
    case YAML_MAPPING_START_EVENT:
        return on_collection_start(ld, ev, YAML_DOC_MAP);
    case YAML_SEQUENCE_END_EVENT:
    case YAML_MAPPING_END_EVENT:
        return on_collection_end(ld);
    case YAML_STREAM_END_EVENT:
        *done = true;
        return P11KMS_OK;
    default: /* stream start, document end, no event */
        return P11KMS_OK;
    }
}

static void loader_cleanup(loader *ld)
{
    while (ld->depth > 0) {
        ld->depth--;
        node_free(ld->pending_key[ld->depth]);
        node_free(ld->stack[ld->depth]);
    }
    node_free(ld->root);
    ld->root = NULL;
}

static p11kms_err parse_events(loader *ld, const char *data, size_t len)
{
    yaml_parser_t parser;
    if (!yaml_parser_initialize(&parser))
        return no_memory(ld);
    yaml_parser_set_input_string(&parser, (const unsigned char *)data, len);
    yaml_parser_set_encoding(&parser, YAML_UTF8_ENCODING);
    p11kms_err rc = P11KMS_OK;
    bool done = false;
    while (rc == P11KMS_OK && !done) {
        yaml_event_t ev;
        if (!yaml_parser_parse(&parser, &ev)) {
            if (parser.error == YAML_MEMORY_ERROR) {
                rc = no_memory(ld);
                break;
            }
            const char *problem = parser.problem != NULL ? parser.problem : "syntax error";
            if (parser.context != NULL)
                rc = raise_at(ld->err, ld->code, ld->name, (unsigned)parser.problem_mark.line + 1,
                              (unsigned)parser.problem_mark.column + 1, "YAML: %s %s",
                              parser.context, problem);
            else
                rc = raise_at(ld->err, ld->code, ld->name, (unsigned)parser.problem_mark.line + 1,
                              (unsigned)parser.problem_mark.column + 1, "YAML: %s", problem);
            break;
        }
        rc = on_event(ld, &ev, &done);
        yaml_event_delete(&ev);
    }
    yaml_parser_delete(&parser);
    return rc;
}

p11kms_err yaml_doc_load_buffer(const char *name, const char *data, size_t len,
                                p11kms_err error_code, yaml_doc **out, p11kms_error *err)
{
    if (out == NULL)
        return P11KMS_RAISE(err, P11KMS_E_INTERNAL, "yaml_doc_load_buffer: out is NULL");
    *out = NULL;
    if (data == NULL && len > 0)
        return P11KMS_RAISE(err, P11KMS_E_INTERNAL, "yaml_doc_load_buffer: data is NULL");
    if (len > YAML_DOC_MAX_BYTES)
        return raise_at(err, error_code, name, 1, 1, "input is %zu bytes, more than the %d allowed",
                        len, YAML_DOC_MAX_BYTES);
    p11kms_err rc = check_utf8(name, data, len, error_code, err);
    if (rc != P11KMS_OK)
        return rc;

    loader ld = {.name = name, .code = error_code, .err = err};
    rc = parse_events(&ld, len > 0 ? data : "", len);
    if (rc != P11KMS_OK) {
        loader_cleanup(&ld);
        return rc;
    }
    yaml_doc *doc = calloc(1, sizeof(*doc));
    if (doc != NULL)
        doc->file = strdup(doc_name(name));
    if (doc == NULL || doc->file == NULL) {
        free(doc);
        loader_cleanup(&ld);
        return no_memory(&ld);
    }
    doc->root = ld.root;
    *out = doc;
    return P11KMS_OK;
}

p11kms_err yaml_doc_load_file(const char *path, p11kms_err error_code, yaml_doc **out,
                              p11kms_error *err)
{
    return yaml_doc_load_file_mode(path, 0, error_code, out, err);
}

p11kms_err yaml_doc_load_file_mode(const char *path, unsigned forbidden_mode, p11kms_err error_code,
                                   yaml_doc **out, p11kms_error *err)
{
    if (out == NULL || path == NULL)
        return P11KMS_RAISE(err, P11KMS_E_INTERNAL, "yaml_doc_load_file: NULL argument");
    *out = NULL;
    /* O_NONBLOCK: a FIFO must be refused below, not wait for a writer. */
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    if (fd < 0)
        return P11KMS_RAISE(err, error_code, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return P11KMS_RAISE(err, error_code, "%s: not a regular file", path);
    }
    if ((st.st_mode & forbidden_mode) != 0) {
        close(fd);
        return P11KMS_RAISE(
            err, error_code, "%s: mode %04o lets group or others change it (chmod %s)", path,
            (unsigned)st.st_mode & 07777u, (forbidden_mode & 022u) == 022u ? "go-w" : "o-w");
    }
    FILE *f = fdopen(fd, "rb");
    if (f == NULL) {
        close(fd);
        return P11KMS_RAISE(err, P11KMS_E_NO_MEMORY, "%s: out of memory", path);
    }
    /* Read one byte past the bound so that a file that grew after fstat is still refused. */
    char *buf = malloc(YAML_DOC_MAX_BYTES + 1);
    if (buf == NULL) {
        fclose(f);
        return P11KMS_RAISE(err, P11KMS_E_NO_MEMORY, "%s: out of memory", path);
    }
    size_t len = fread(buf, 1, YAML_DOC_MAX_BYTES + 1, f);
    int failed = ferror(f);
    fclose(f);
    p11kms_err rc;
    if (failed)
        rc = P11KMS_RAISE(err, error_code, "%s: read error", path);
    else
        rc = yaml_doc_load_buffer(path, buf, len, error_code, out, err);
    free(buf);
    return rc;
}

/* ---- accessors -------------------------------------------------------------------------- */

const yaml_doc_node *yaml_doc_map_get(const yaml_doc_node *map, const char *key)
{
    if (map == NULL || map->kind != YAML_DOC_MAP || key == NULL)
        return NULL;
    size_t len = strlen(key);
    for (size_t i = 0; i < map->count; i++)
        if (map->keys[i]->scalar_len == len && memcmp(map->keys[i]->scalar, key, len) == 0)
            return map->children[i];
    return NULL;
}

void yaml_doc_report_at(const yaml_doc *doc, const yaml_doc_node *node, p11kms_err error_code,
                        p11kms_error *err, const char *fmt, ...)
{
    char what[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof(what), fmt, ap);
    va_end(ap);
    const char *name = doc_name(doc != NULL ? doc->file : NULL);
    if (node == NULL)
        (void)P11KMS_RAISE(err, error_code, "%s: %s", name, what);
    else
        (void)P11KMS_RAISE(err, error_code, "%s:%u:%u: %s", name, node->line, node->column, what);
}

static const char *kind_name(yaml_doc_kind kind)
{
    switch (kind) {
    case YAML_DOC_SCALAR:
        return "a scalar";
    case YAML_DOC_MAP:
        return "a mapping";
    default:
        return "a sequence";
    }
}

p11kms_err yaml_doc_expect(const yaml_doc *doc, const yaml_doc_node *node, yaml_doc_kind kind,
                           const char *what, p11kms_err error_code, p11kms_error *err)
{
    if (node == NULL)
        return yaml_doc_error_at(doc, NULL, error_code, err, "%s is missing (expected %s)", what,
                                 kind_name(kind));
    if (node->kind != kind)
        return yaml_doc_error_at(doc, node, error_code, err, "%s must be %s, not %s", what,
                                 kind_name(kind), kind_name(node->kind));
    return P11KMS_OK;
}

p11kms_err yaml_doc_get_uint(const yaml_doc *doc, const yaml_doc_node *node, unsigned long min,
                             unsigned long max, unsigned long *out, p11kms_err error_code,
                             p11kms_error *err)
{
    p11kms_err rc = yaml_doc_expect(doc, node, YAML_DOC_SCALAR, "value", error_code, err);
    if (rc != P11KMS_OK)
        return rc;
    const char *s = node->scalar;
    /* Decimal only, no sign, no leading zero: "010" is octal in YAML 1.1 and decimal in 1.2. */
    bool digits = !node->quoted && node->scalar_len > 0 && (node->scalar_len == 1 || s[0] != '0');
    for (size_t i = 0; digits && i < node->scalar_len; i++)
        digits = s[i] >= '0' && s[i] <= '9';
    if (!digits) {
        policy_quoted q = policy_quote(s);
        return yaml_doc_error_at(doc, node, error_code, err,
                                 "expected an unquoted decimal integer, found '%s'", q.text);
    }
    errno = 0;
    unsigned long v = strtoul(s, NULL, 10);
    if (errno == ERANGE || v < min || v > max)
        return yaml_doc_error_at(doc, node, error_code, err, "%s is out of range (%lu to %lu)", s,
                                 min, max);
    *out = v;
    return P11KMS_OK;
}

p11kms_err yaml_doc_get_bool(const yaml_doc *doc, const yaml_doc_node *node, bool *out,
                             p11kms_err error_code, p11kms_error *err)
{
    p11kms_err rc = yaml_doc_expect(doc, node, YAML_DOC_SCALAR, "value", error_code, err);
    if (rc != P11KMS_OK)
        return rc;
    static const char *const yes[] = {"true", "True", "TRUE"};
    static const char *const no[] = {"false", "False", "FALSE"};
    if (!node->quoted) {
        for (size_t i = 0; i < 3; i++) {
            if (strcmp(node->scalar, yes[i]) == 0) {
                *out = true;
                return P11KMS_OK;
            }
            if (strcmp(node->scalar, no[i]) == 0) {
                *out = false;
                return P11KMS_OK;
            }
        }
    }
    /* yes/no/on/off are booleans in YAML 1.1 only: refuse them rather than guess. */
    policy_quoted q = policy_quote(node->scalar);
    return yaml_doc_error_at(doc, node, error_code, err,
                             "expected true or false (unquoted), found '%s'", q.text);
}
