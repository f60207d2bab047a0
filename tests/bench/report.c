#include "config.h"

/* The results as a table for people and as JSON for tools. */

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <json-c/json.h>

#include "bench.h"

static const char *const all_figures[] = {"1a", "1b", "1a-t", "1b-t", "2",  "2-t", "3", "3-t",
                                          "4",  "5",  "6",    "7",    "8a", "8b",  "9"};

static void cpu_model(char *out, size_t size)
{
    snprintf(out, size, "unknown");
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (f == NULL)
        return;
    char line[512];
    while (fgets(line, sizeof(line), f) != NULL) {
        if (strncmp(line, "model name", 10) == 0) {
            const char *colon = strchr(line, ':');
            if (colon != NULL) {
                colon++;
                while (*colon == ' ' || *colon == '\t')
                    colon++;
                snprintf(out, size, "%.*s", (int)strcspn(colon, "\n"), colon);
            }
            break;
        }
    }
    fclose(f);
}

static long cores(void)
{
    return sysconf(_SC_NPROCESSORS_ONLN);
}

/* "12,345 ops/s" or "1.23 ms" depending on the figure. */
static void side_text(const figure *f, double ops, char *out, size_t size)
{
    if (ops <= 0) {
        snprintf(out, size, "-");
    } else if (f->kind == RATIO_THROUGHPUT) {
        snprintf(out, size, "%.0f/s", ops);
    } else {
        double s = 1.0 / ops;
        if (s >= 1e-3)
            snprintf(out, size, "%.2f ms", s * 1e3);
        else
            snprintf(out, size, "%.3f us", s * 1e6);
    }
}

static void goal_text(const figure *f, char *out, size_t size)
{
    if (f->max_a_ms > 0)
        snprintf(out, size, "A<%.0fms", f->max_a_ms < 1e6 ? f->max_a_ms : 1e6);
    else if (f->goal <= 0)
        snprintf(out, size, "report");
    else
        snprintf(out, size, "%s %.2fx", f->kind == RATIO_THROUGHPUT ? ">=" : "<=", f->goal);
}

void report_table(const bench_results *r, const bench_opts *o)
{
    char cpu[256];
    cpu_model(cpu, sizeof(cpu));
    printf("\np11kms-bench: %s, %ld cores; token %s %s (%s), label \"%s\", model %s\n", cpu,
           cores(), r->token.library_manufacturer, r->token.library_version,
           r->token.library_description, r->token.token_label, r->token.token_model);
    if (o->key_cache != NULL || o->session_keys != 0)
        printf("p11kms configured with%s%s%s%.0u (not the library's defaults)\n",
               o->key_cache ? " token.key-cache " : "", o->key_cache ? o->key_cache : "",
               o->session_keys ? " token.session-keys " : "", o->session_keys);
    if (bench_single_thread_cpu() >= 0)
        printf("sides with one thread run pinned to CPU %d (both sides of a figure alike)\n",
               bench_single_thread_cpu());
    printf("p11kms key cache in force: %s%s%s\n", r->token.key_cache,
           r->token.key_cache_reason[0] ? " - " : "", r->token.key_cache_reason);
    if (o->rng != NULL || o->count_batch != 0)
        printf("p11kms configured with%s%s%s%.0u (not the library's defaults)\n",
               o->rng ? " token.rng " : "", o->rng ? o->rng : "",
               o->count_batch ? " keys.count-batch " : "", o->count_batch);
    if (o->smoke)
        printf("SMOKE RUN: %u operations per side, figures are meaningless\n", o->smoke_ops);
    else
        printf("%.2f s per side per round, A and B interleaved, median of %u rounds\n", o->duration,
               o->rounds);
    printf("\n%-4s %-46s %3s %12s %12s %7s %8s %4s %9s\n", "#", "figure", "thr", "A (p11kms)",
           "B (baseline)", "ratio", "goal", "met", "CPU ratio");
    for (unsigned i = 0; i < r->count; i++) {
        const figure *f = &r->figures[i];
        char a[32], b[32], goal[32];
        side_text(f, f->median_a, a, sizeof(a));
        side_text(f, f->median_b, b, sizeof(b));
        goal_text(f, goal, sizeof(goal));
        const char *met = f->goal <= 0 && f->max_a_ms <= 0 ? "-" : figure_met(f) ? "yes" : "NO";
        printf("%-4s %-46.46s %3u %12s %12s %6.3fx %8s %4s %8.3fx\n", f->id, f->title, f->threads,
               a, b, f->median_ratio, goal, met, f->median_cpu_ratio);
    }
    printf("(ratio: wall clock, the goal's measure; CPU ratio: the same from CPU time per "
           "operation, immune to other load, blind to waiting)\n\n");
    for (unsigned i = 0; i < r->count; i++) {
        const figure *f = &r->figures[i];
        printf("%-4s A: %s\n     B: %s\n", f->id, f->a_label, f->b_label);
        printf("    CPU per operation: A %.2f us, B %.2f us\n", f->median_a_cpu_us,
               f->median_b_cpu_us);
        if (f->note[0] != '\0')
            printf("    %s\n", f->note);
    }
    if (r->keys_created > 0) {
        printf("\ncreating %u keys with p11kms_create_key: %.1f s (%.2f ms per key; %.1f ms per "
               "key for the first tenth, %.1f ms for the last)\n",
               r->keys_created, r->create_seconds, r->create_seconds * 1e3 / r->keys_created,
               r->create_ms_first, r->create_ms_last);
        if (r->create_budget_hit)
            printf("CREATION BUDGET HIT: only %u of the %u keys asked for were created within "
                   "%.0f s; figures 5 and 7 use those\n",
                   r->keys_created, o->keys, o->create_budget);
    }
    if (r->warm_seconds > 0)
        printf("first use of %u of them (encryption batch reserved in its record): %.2f ms per "
               "key\n",
               r->warm_keys, r->warm_seconds * 1e3 / r->warm_keys);
    if (bench_retries() > 0)
        printf("RETRIED: %lu p11kms calls failed with \"could not reserve an encryption "
               "(contention); retry\" and were repeated\n",
               bench_retries());
    if (r->open_many_ms > 0)
        printf("start-up (open + close): %.1f ms with %u keys, %.1f ms with 1 key\n",
               r->open_many_ms, r->keys_created, r->open_one_ms);
}

/* --- JSON ---------------------------------------------------------------------------------- */

static json_object *num(double v)
{
    return json_object_new_double(isfinite(v) ? v : 0);
}

/* A NULL value is JSON null. */
static void add(json_object *o, const char *k, json_object *v)
{
    if (json_object_object_add(o, k, v) != 0)
        bench_die("out of memory building JSON");
}

static json_object *str(const char *s)
{
    return json_object_new_string(s);
}

static json_object *side_json(const figure *f, const char *label, double ops, const double *rounds,
                              double cpu_us)
{
    json_object *s = json_object_new_object();
    add(s, "label", str(label));
    add(s, "ops_per_s", num(ops));
    add(s, "us_per_op", num(ops > 0 ? 1e6 / ops : 0));
    add(s, "cpu_us_per_op", num(cpu_us));
    json_object *per = json_object_new_array();
    for (unsigned i = 0; i < f->rounds; i++)
        json_object_array_add(per, num(rounds[i]));
    add(s, "rounds_ops_per_s", per);
    return s;
}

static json_object *figure_json(const figure *f)
{
    json_object *o = json_object_new_object();
    add(o, "id", str(f->id));
    add(o, "title", str(f->title));
    add(o, "threads", json_object_new_int((int)f->threads));
    add(o, "ratio_kind",
        str(f->kind == RATIO_THROUGHPUT ? "throughput A/B (higher is better)"
                                        : "time per op A/B (lower is better)"));
    add(o, "ratio", num(f->median_ratio));
    json_object *per = json_object_new_array();
    for (unsigned i = 0; i < f->rounds; i++)
        json_object_array_add(per, num(f->ratio[i]));
    add(o, "rounds_ratio", per);
    if (f->goal > 0 || f->max_a_ms > 0) {
        char goal[32];
        goal_text(f, goal, sizeof(goal));
        add(o, "goal", str(goal));
        add(o, "met", json_object_new_boolean(figure_met(f)));
    } else {
        add(o, "goal", str("report only"));
    }
    add(o, "a", side_json(f, f->a_label, f->median_a, f->a_ops, f->median_a_cpu_us));
    add(o, "b", side_json(f, f->b_label, f->median_b, f->b_ops, f->median_b_cpu_us));
    add(o, "cpu_ratio", num(f->median_cpu_ratio));
    if (f->note[0] != '\0')
        add(o, "note", str(f->note));
    return o;
}

void report_json(const bench_results *r, const bench_opts *o, const char *path)
{
    json_object *root = json_object_new_object();
    add(root, "tool", str("p11kms-bench"));
    add(root, "format", json_object_new_int(1));
    add(root, "smoke", json_object_new_boolean(o->smoke));

    char cpu[256];
    cpu_model(cpu, sizeof(cpu));
    struct utsname u;
    json_object *machine = json_object_new_object();
    add(machine, "cpu", str(cpu));
    add(machine, "cores", json_object_new_int((int)cores()));
    add(machine, "kernel", str(uname(&u) == 0 ? u.release : "unknown"));
    add(root, "machine", machine);

    json_object *token = json_object_new_object();
    add(token, "module", str(r->token.module));
    add(token, "library", str(r->token.library_description));
    add(token, "library_version", str(r->token.library_version));
    add(token, "manufacturer", str(r->token.library_manufacturer));
    add(token, "cryptoki_version", str(r->token.cryptoki_version));
    add(token, "c_getinfo", str(r->module_name));
    add(token, "label", str(r->token.token_label));
    add(token, "model", str(r->token.token_model));
    add(token, "pool_size", json_object_new_int((int)r->token.pool_size));
    add(root, "token", token);

    json_object *settings = json_object_new_object();
    add(settings, "duration_s", num(o->duration));
    add(settings, "rounds", json_object_new_int((int)o->rounds));
    add(settings, "threads", json_object_new_int((int)o->threads));
    add(settings, "keys", json_object_new_int((int)o->keys));
    add(settings, "only", o->only ? str(o->only) : json_object_new_null());
    add(settings, "rng", o->rng ? str(o->rng) : str("library default"));
    add(settings, "count_batch", json_object_new_int((int)o->count_batch));
    add(settings, "key_cache", o->key_cache ? str(o->key_cache) : str("library default"));
    add(settings, "session_keys", json_object_new_int((int)o->session_keys));
    if (o->smoke)
        add(settings, "smoke_ops", json_object_new_int((int)o->smoke_ops));
    add(root, "settings", settings);

    json_object *setup = json_object_new_object();
    add(setup, "keys_requested", json_object_new_int((int)o->keys));
    add(setup, "keys_created", json_object_new_int((int)r->keys_created));
    add(setup, "create_budget_s", num(o->create_budget));
    add(setup, "create_budget_hit", json_object_new_boolean(r->create_budget_hit));
    add(setup, "create_ms_per_key_first_tenth", num(r->create_ms_first));
    add(setup, "create_ms_per_key_last_tenth", num(r->create_ms_last));
    add(setup, "create_seconds", num(r->create_seconds));
    add(setup, "first_use_seconds", num(r->warm_seconds));
    add(setup, "open_close_ms_many_keys", num(r->open_many_ms));
    add(setup, "open_close_ms_one_key", num(r->open_one_ms));
    add(setup, "contention_retries", json_object_new_int64((int64_t)bench_retries()));
    add(root, "setup", setup);

    json_object *figs = json_object_new_array();
    for (unsigned i = 0; i < r->count; i++)
        json_object_array_add(figs, figure_json(&r->figures[i]));
    add(root, "figures", figs);

    if (json_object_to_file_ext(path, root, JSON_C_TO_STRING_PRETTY) != 0)
        bench_die("cannot write %s: %s", path, json_util_get_last_err());
    json_object_put(root);
}

/* --- checking a result file ---------------------------------------------------------------- */

static int bad(const char *path, const char *why, const char *where)
{
    fprintf(stderr, "%s: %s%s%s\n", path, why, where ? ": " : "", where ? where : "");
    return 1;
}

static bool positive(json_object *o, const char *key)
{
    json_object *v;
    if (!json_object_object_get_ex(o, key, &v))
        return false;
    if (!json_object_is_type(v, json_type_double) && !json_object_is_type(v, json_type_int))
        return false;
    double d = json_object_get_double(v);
    return isfinite(d) && d > 0;
}

static int check_figure(const char *path, json_object *f)
{
    json_object *id, *a, *b;
    if (!json_object_object_get_ex(f, "id", &id) || !json_object_is_type(id, json_type_string))
        return bad(path, "a figure has no id", NULL);
    const char *name = json_object_get_string(id);
    if (!positive(f, "ratio"))
        return bad(path, "figure without a positive ratio", name);
    if (!json_object_object_get_ex(f, "a", &a) || !json_object_object_get_ex(f, "b", &b) ||
        !positive(a, "ops_per_s") || !positive(b, "ops_per_s"))
        return bad(path, "figure without positive ops/s on both sides", name);
    return 0;
}

int report_check_json(const char *path)
{
    json_object *root = json_object_from_file(path);
    if (root == NULL)
        return bad(path, "not valid JSON", json_util_get_last_err());
    int rc = 0;
    json_object *machine, *cores_v, *token, *label, *figs, *settings, *only;
    if (!json_object_object_get_ex(root, "machine", &machine) ||
        !json_object_object_get_ex(machine, "cores", &cores_v) || json_object_get_int(cores_v) < 1)
        rc = bad(path, "no machine description", NULL);
    else if (!json_object_object_get_ex(root, "token", &token) ||
             !json_object_object_get_ex(token, "label", &label) ||
             json_object_get_string_len(label) == 0)
        rc = bad(path, "no token description", NULL);
    else if (!json_object_object_get_ex(root, "figures", &figs) ||
             !json_object_is_type(figs, json_type_array) || json_object_array_length(figs) == 0)
        rc = bad(path, "no figures", NULL);
    for (size_t i = 0; rc == 0 && i < json_object_array_length(figs); i++)
        rc = check_figure(path, json_object_array_get_idx(figs, i));
    /* A run of every figure must have every figure. */
    json_object *threads = NULL;
    bool all = json_object_object_get_ex(root, "settings", &settings) &&
               json_object_object_get_ex(settings, "only", &only) &&
               json_object_is_type(only, json_type_null);
    bool concurrent = all && json_object_object_get_ex(settings, "threads", &threads) &&
                      json_object_get_int(threads) > 1;
    for (size_t k = 0; rc == 0 && all && k < sizeof(all_figures) / sizeof(*all_figures); k++) {
        if ((strncmp(all_figures[k], "1b", 2) == 0 || strcmp(all_figures[k], "8b") == 0) &&
            !concurrent)
            continue; /* the concurrent variant of figure 1 needs --threads 2 or more */
        bool found = false;
        for (size_t i = 0; i < json_object_array_length(figs); i++) {
            json_object *id;
            if (json_object_object_get_ex(json_object_array_get_idx(figs, i), "id", &id) &&
                strcmp(json_object_get_string(id), all_figures[k]) == 0)
                found = true;
        }
        if (!found)
            rc = bad(path, "figure missing", all_figures[k]);
    }
    json_object_put(root);
    return rc;
}
