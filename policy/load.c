#include "config.h"

/* Loading a policy: the top-level fields, the indexes the evaluator uses, the separation of
 * duties check, and the policy object's life cycle. */

#include "policy/load.h"
#include "common/utf8.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- indexes ---------------------------------------------------------------------------- */

static void build_indexes(loader *ld)
{
    policy *pol = ld->pol;
    for (size_t s = 0; s < pol->statement_count; s++) {
        statement *st = &pol->statements[s];
        if (!policy_index_add(&pol->by_sid, st->sid, s)) {
            loader_no_memory(ld);
            return;
        }
        if (st->global) {
            if (!loader_reserve(ld, &pol->global, pol->global_count, sizeof(size_t)))
                return;
            pol->global[pol->global_count++] = s;
            continue;
        }
        for (size_t k = 0; k < st->key_count; k++) {
            const key_selector *sel = &st->keys[k];
            if (sel->glob.exact) {
                if (!policy_index_add(&pol->by_selector, sel->glob.literal, s)) {
                    loader_no_memory(ld);
                    return;
                }
                continue;
            }
            if (!loader_reserve(ld, &pol->patterns, pol->pattern_count, sizeof(selector_ref)))
                return;
            pol->patterns[pol->pattern_count].selector = sel;
            pol->patterns[pol->pattern_count].statement = s;
            pol->pattern_count++;
        }
    }
}

static void report_conflict(void *arg, const statement *at, const char *message)
{
    loader *ld = arg;
    char line[1600];
    snprintf(line, sizeof(line), "%s:%u:%u: %s", ld->doc->file, at->line, at->column, message);
    loader_report(ld, at->line, at->column, line);
}

/* ---- top level -------------------------------------------------------------------------- */

void policy_destroy(policy *pol)
{
    if (pol == NULL)
        return;
    for (size_t i = 0; i < pol->statement_count; i++)
        loader_free_statement(&pol->statements[i]);
    free(pol->statements);
    for (size_t i = 0; i < pol->entry_count; i++) {
        policy_glob_free(&pol->entries[i]->glob);
        free(pol->entries[i]->text);
        free(pol->entries[i]);
    }
    free(pol->entries);
    for (size_t i = 0; i < pol->group_count; i++)
        free(pol->group_names[i]);
    free(pol->group_names);
    policy_index_free(&pol->by_selector);
    policy_index_free(&pol->by_sid);
    free(pol->patterns);
    free(pol->global);
    free(pol->source);
    free(pol);
}

static void parse_root(loader *ld, const yaml_doc_node *root)
{
    if (root == NULL) {
        loader_error_at(ld, NULL, "the policy is empty (it needs at least 'version: 1')");
        return;
    }
    if (!loader_expect(ld, root, YAML_DOC_MAP, "the policy"))
        return;
    const yaml_doc_node *version = NULL, *groups = NULL, *global = NULL, *statements = NULL;
    for (size_t i = 0; i < root->count; i++) {
        const char *f = root->keys[i]->scalar;
        if (strcmp(f, "version") == 0)
            version = root->children[i];
        else if (strcmp(f, "groups") == 0)
            groups = root->children[i];
        else if (strcmp(f, "global") == 0)
            global = root->children[i];
        else if (strcmp(f, "statements") == 0)
            statements = root->children[i];
        else
            loader_error_at(ld, root->keys[i],
                            "unknown field '%s' (version, groups, global, statements)",
                            policy_quote(f).text);
    }
    if (loader_require(ld, root, version, "the policy", "version") && version != NULL) {
        unsigned long v = 0;
        p11kms_error e = {0};
        if (yaml_doc_get_uint(ld->doc, version, 0, 1000, &v, P11KMS_E_MALFORMED_POLICY, &e) !=
            P11KMS_OK)
            loader_report(ld, version->line, version->column, e.message);
        else if (v != 1)
            loader_error_at(ld, version, "unsupported policy version %lu (this p11kms reads 1)", v);
    }
    if (groups != NULL) {
        loader_parse_groups(ld, groups);
        for (size_t g = 0; g < ld->group_count && !ld->no_memory; g++)
            loader_expand_group(ld, g);
    }
    if (global != NULL)
        loader_parse_statements(ld, global, true);
    if (statements != NULL)
        loader_parse_statements(ld, statements, false);
}

static p11kms_err load_doc(const yaml_doc *doc, policy_error_fn on_error, void *arg, policy **out,
                           p11kms_error *err)
{
    loader ld = {.doc = doc};
    ld.pol = calloc(1, sizeof(policy));
    if (ld.pol == NULL || (ld.pol->source = strdup(doc->file)) == NULL) {
        free(ld.pol);
        return P11KMS_RAISE(err, P11KMS_E_NO_MEMORY, "%s: out of memory loading the policy",
                            doc->file);
    }
    atomic_init(&ld.pol->refs, 1);
    parse_root(&ld, doc->root);
    loader_free_groups(&ld);
    policy_index_free(&ld.sid_seen);
    free(ld.sid_nodes);
    if (!ld.no_memory)
        build_indexes(&ld);
    /* Duties are checked on the statements that loaded, so one error elsewhere does not hide a
     * conflict (and a broken statement does not invent one). */
    if (!ld.no_memory)
        policy_check_duties(ld.pol, report_conflict, &ld);
    if (ld.errors == 0) {
        *out = ld.pol;
        return P11KMS_OK;
    }
    char first[512];
    loader_flush_errors(&ld, on_error, arg, first, sizeof(first));
    policy_destroy(ld.pol);
    if (ld.no_memory)
        return P11KMS_RAISE(err, P11KMS_E_NO_MEMORY, "%s: out of memory loading the policy",
                            doc->file);
    if (ld.errors == 1)
        return P11KMS_RAISE(err, P11KMS_E_MALFORMED_POLICY, "%s", first);
    return P11KMS_RAISE(err, P11KMS_E_MALFORMED_POLICY, "%.400s (and %zu more errors)", first,
                        ld.errors - 1);
}

static p11kms_err finish_doc(p11kms_err rc, yaml_doc *doc, policy_error_fn on_error, void *arg,
                             policy **out, p11kms_error *err)
{
    if (rc != P11KMS_OK) {
        /* The YAML layer stops at its first error; it is still one line of the report. */
        if (on_error != NULL && err != NULL && rc == P11KMS_E_MALFORMED_POLICY)
            on_error(err->message, arg);
        return rc;
    }
    rc = load_doc(doc, on_error, arg, out, err);
    yaml_doc_free(doc);
    return rc;
}

p11kms_err policy_load_buffer(const char *name, const char *data, size_t len,
                              policy_error_fn on_error, void *arg, policy **out, p11kms_error *err)
{
    if (out == NULL)
        return P11KMS_RAISE(err, P11KMS_E_INTERNAL, "policy_load_buffer: out is NULL");
    *out = NULL;
    yaml_doc *doc = NULL;
    p11kms_error local = {0};
    p11kms_error *e = err != NULL ? err : &local;
    p11kms_err rc = yaml_doc_load_buffer(name, data, len, P11KMS_E_MALFORMED_POLICY, &doc, e);
    return finish_doc(rc, doc, on_error, arg, out, e);
}

p11kms_err policy_load_file(const char *path, policy_error_fn on_error, void *arg, policy **out,
                            p11kms_error *err)
{
    if (out == NULL || path == NULL)
        return P11KMS_RAISE(err, P11KMS_E_INTERNAL, "policy_load_file: NULL argument");
    *out = NULL;
    yaml_doc *doc = NULL;
    p11kms_error local = {0};
    p11kms_error *e = err != NULL ? err : &local;
    p11kms_err rc = yaml_doc_load_file(path, P11KMS_E_MALFORMED_POLICY, &doc, e);
    return finish_doc(rc, doc, on_error, arg, out, e);
}

p11kms_err policy_check_file(const char *path, policy_error_fn on_error, void *arg,
                             p11kms_error *err)
{
    policy *pol = NULL;
    p11kms_err rc = policy_load_file(path, on_error, arg, &pol, err);
    policy_free(pol);
    return rc;
}

policy *policy_ref(policy *pol)
{
    if (pol != NULL)
        atomic_fetch_add_explicit(&pol->refs, 1, memory_order_relaxed);
    return pol;
}

void policy_free(policy *pol)
{
    if (pol == NULL)
        return;
    /* acq_rel: the last owner must see every other owner's reads finished before freeing. */
    if (atomic_fetch_sub_explicit(&pol->refs, 1, memory_order_acq_rel) == 1)
        policy_destroy(pol);
}

const char *policy_source(const policy *pol)
{
    return pol != NULL ? pol->source : NULL;
}

size_t policy_statement_count(const policy *pol)
{
    return pol != NULL ? pol->statement_count : 0;
}

const char *policy_statement_sid(const policy *pol, long index)
{
    if (pol == NULL || index < 0 || (size_t)index >= pol->statement_count)
        return "";
    return pol->statements[index].sid;
}
