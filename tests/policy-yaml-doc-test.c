#include "config.h"

/* The strict YAML loader: every refusal must name the right line and column, and good input
 * must give the tree it describes. */

#include "tests/lib/check.h"
#include "common/yaml-doc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A code no loader path raises on its own: proves the caller's code is the one used. */
#define WANT_CODE P11KMS_E_CONFIG

typedef struct bad_case {
    const char *name;
    const char *text;
    size_t len;         /* 0: strlen(text) */
    const char *where;  /* expected "line:column" after the file name */
    const char *reason; /* substring of the message */
} bad_case;

static const bad_case bad_cases[] = {
    {"anchor on scalar", "a: &x 1\n", 0, "1:4", "anchors are not allowed"},
    {"anchor on mapping", "a:\n  b: &m\n    c: 1\n", 0, "2:6", "anchors are not allowed"},
    {"alias", "a: 1\nb: *x\n", 0, "2:4", "aliases are not allowed (alias '*x')"},
    {"anchor then alias", "a: &x [1]\nb: *x\n", 0, "1:4", "anchors are not allowed"},
    {"billion laughs", "a: &a [\"lol\",\"lol\"]\nb: &b [*a,*a,*a]\nc: &c [*b,*b,*b]\n", 0, "1:4",
     "anchors are not allowed"},
    {"custom tag", "a: !foo bar\n", 0, "1:4", "tag '!foo' is not allowed"},
    {"python tag", "a: !!python/object:os.system x\n", 0, "1:4", "is not allowed"},
    {"str tag on map", "a: !!str {b: 1}\n", 0, "1:4", "is not allowed"},
    {"seq tag on scalar", "a: !!seq x\n", 0, "1:4", "is not allowed"},
    {"binary tag", "a: !!binary aGVsbG8=\n", 0, "1:4", "is not allowed"},
    {"duplicate key", "a: 1\nb: 2\na: 3\n", 0, "3:1",
     "duplicate mapping key 'a' (first at line 1, column 1)"},
    {"duplicate nested key", "top:\n  x: 1\n  y: 2\n  x: 3\n", 0, "4:3",
     "duplicate mapping key 'x' (first at line 2, column 3)"},
    {"duplicate quoted vs plain", "a: 1\n\"a\": 2\n", 0, "2:1", "duplicate mapping key 'a'"},
    {"duplicate in flow", "{a: 1, a: 2}\n", 0, "1:8", "duplicate mapping key"},
    {"two documents", "a: 1\n---\nb: 2\n", 0, "2:1", "more than one YAML document"},
    {"two explicit documents", "---\na: 1\n...\n---\nb: 2\n", 0, "4:1", "more than one"},
    {"sequence as key", "? [a, b]\n: 1\n", 0, "1:3", "mapping keys must be scalars"},
    {"mapping as key", "? {a: 1}\n: 1\n", 0, "1:3", "mapping keys must be scalars"},
    {"invalid UTF-8 byte", "a: 1\nb: \xff\n", 0, "2:4", "not valid UTF-8 (byte 0xFF"},
    {"invalid UTF-8 after CRLF", "a: 1\r\nb: \xff\n", 0, "2:4", "not valid UTF-8"},
    {"invalid UTF-8 after lone CR", "a: 1\rb: 2\r\xff\n", 0, "3:1", "not valid UTF-8"},
    {"libyaml error after CRLF", "a: 1\r\nb: [\r\n", 0, "3:1", "YAML"},
    {"overlong UTF-8", "a: \xc0\xaf\n", 0, "1:4", "not valid UTF-8"},
    {"surrogate UTF-8", "a: x\xed\xa0\x80\n", 0, "1:5", "not valid UTF-8"},
    {"truncated UTF-8", "a: \xe2\x82", 0, "1:4", "not valid UTF-8"},
    {"above U+10FFFF", "a: \xf4\x90\x80\x80\n", 0, "1:4", "not valid UTF-8"},
    {"UTF-8 after multibyte", "\xc3\xa9t\xc3\xa9: \x80\n", 0, "1:6", "not valid UTF-8"},
    {"UTF-16 BOM",
     "\xff\xfe"
     "a\0:\0 \0"
     "1\0",
     8, "1:1", "not valid UTF-8"},
    {"NUL byte", "a: b\0c\n", 7, "1:5", "control character U+0000 is not allowed"},
    {"escape char", "a: b\x1b[31m\n", 0, "1:5", "control character U+001B"},
    {"C1 control", "a:\n  - \xc2\x9b\n", 0, "2:5", "control character U+009B"},
    {"DEL", "k\x7f: 1\n", 0, "1:2", "control character U+007F"},
    {"NUL escape", "a: \"b\\0c\"\n", 0, "1:4", "NUL character"},
    {"tab indentation", "a:\n\tb: 1\n", 0, "2:1", "YAML"},
    {"unclosed flow", "a: [1, 2\n", 0, "2:1", "YAML"},
    {"unclosed quote", "a: \"abc\n", 0, "2:1", "YAML"},
    {"bad indentation", "a:\n  b: 1\n c: 2\n", 0, "3:2", "YAML"},
    {"unknown directive version", "%YAML 2.0\n---\na: 1\n", 0, "1:1", "YAML"},
};

static void check_bad(const bad_case *c)
{
    p11kms_error err = {0};
    yaml_doc *doc = (yaml_doc *)1;
    size_t len = c->len != 0 ? c->len : strlen(c->text);
    p11kms_err rc = yaml_doc_load_buffer("t.yaml", c->text, len, WANT_CODE, &doc, &err);
    CHECK(rc == WANT_CODE);
    CHECK(err.code == WANT_CODE);
    CHECK(doc == NULL);
    char prefix[64];
    snprintf(prefix, sizeof(prefix), "t.yaml:%s: ", c->where);
    bool at = strncmp(err.message, prefix, strlen(prefix)) == 0;
    bool why = strstr(err.message, c->reason) != NULL;
    CHECK(at && why);
    if (!at || !why || rc != WANT_CODE)
        fprintf(stderr, "  case '%s': want '%s...%s', got '%s'\n", c->name, prefix, c->reason,
                err.message);
    yaml_doc_free(rc == P11KMS_OK ? doc : NULL);
}

/* Depth bound: 32 nested collections load, 33 fail at the 33rd opening bracket. */
static void check_depth(void)
{
    char text[256];
    size_t n = 0;
    for (int i = 0; i < YAML_DOC_MAX_DEPTH; i++)
        text[n++] = '[';
    for (int i = 0; i < YAML_DOC_MAX_DEPTH; i++)
        text[n++] = ']';
    p11kms_error err = {0};
    yaml_doc *doc = NULL;
    CHECK_OK(yaml_doc_load_buffer("d", text, n, WANT_CODE, &doc, &err), &err);
    yaml_doc_free(doc);

    n = 0;
    for (int i = 0; i < YAML_DOC_MAX_DEPTH + 1; i++)
        text[n++] = '[';
    for (int i = 0; i < YAML_DOC_MAX_DEPTH + 1; i++)
        text[n++] = ']';
    doc = NULL;
    CHECK_ERR(yaml_doc_load_buffer("d", text, n, WANT_CODE, &doc, &err), WANT_CODE, &err);
    CHECK(strncmp(err.message, "d:1:33: nesting deeper than 32", 30) == 0);
    CHECK(doc == NULL);

    /* Very deep input (far beyond the bound) must stop early, not exhaust memory or stack. */
    size_t big = 200000;
    char *deep = malloc(big);
    REQUIRE(deep != NULL);
    memset(deep, '[', big);
    CHECK_ERR(yaml_doc_load_buffer("d", deep, big, WANT_CODE, &doc, &err), WANT_CODE, &err);
    CHECK(strstr(err.message, "nesting deeper") != NULL);
    free(deep);
}

static void check_size(void)
{
    size_t len = YAML_DOC_MAX_BYTES + 1;
    char *text = malloc(len);
    REQUIRE(text != NULL);
    memset(text, ' ', len);
    text[0] = '#';
    p11kms_error err = {0};
    yaml_doc *doc = NULL;
    CHECK_ERR(yaml_doc_load_buffer("s", text, len, WANT_CODE, &doc, &err), WANT_CODE, &err);
    CHECK(strstr(err.message, "more than the 1048576 allowed") != NULL);
    /* Exactly at the bound: a comment line, accepted as an empty document. */
    CHECK_OK(yaml_doc_load_buffer("s", text, len - 1, WANT_CODE, &doc, &err), &err);
    CHECK(doc != NULL && doc->root == NULL);
    yaml_doc_free(doc);

    /* The file loader enforces the same bound. */
    FILE *f = fopen("big.yaml", "wb");
    REQUIRE(f != NULL);
    REQUIRE(fwrite(text, 1, len, f) == len);
    REQUIRE(fclose(f) == 0);
    CHECK_ERR(yaml_doc_load_file("big.yaml", WANT_CODE, &doc, &err), WANT_CODE, &err);
    CHECK(strncmp(err.message, "big.yaml:1:1: input is", 22) == 0);
    free(text);
}

static void check_good(void)
{
    const char *text = "# comment\n"
                       "name: p11kms\n"
                       "count: 42\n"
                       "quoted: \"42\"\n"
                       "flag: true\n"
                       "tagged: !!str 7\n"
                       "list:\n"
                       "  - one\n"
                       "  - {k: v}\n"
                       "\xc3\xa9t\xc3\xa9: \"\\u00e9\"\n"
                       "block: |\n"
                       "  line\n";
    p11kms_error err = {0};
    yaml_doc *doc = NULL;
    CHECK_OK(yaml_doc_load_buffer("g.yaml", text, strlen(text), WANT_CODE, &doc, &err), &err);
    REQUIRE(doc != NULL && doc->root != NULL);
    const yaml_doc_node *root = doc->root;
    CHECK(root->kind == YAML_DOC_MAP && root->count == 8);
    CHECK(root->line == 2 && root->column == 1);
    CHECK(strcmp(doc->file, "g.yaml") == 0);

    const yaml_doc_node *name = yaml_doc_map_get(root, "name");
    CHECK(name != NULL && name->kind == YAML_DOC_SCALAR && strcmp(name->scalar, "p11kms") == 0);
    CHECK(name != NULL && name->line == 2 && name->column == 7 && !name->quoted);

    unsigned long v = 0;
    CHECK_OK(yaml_doc_get_uint(doc, yaml_doc_map_get(root, "count"), 0, 100, &v, WANT_CODE, &err),
             &err);
    CHECK(v == 42);
    CHECK_ERR(yaml_doc_get_uint(doc, yaml_doc_map_get(root, "count"), 0, 41, &v, WANT_CODE, &err),
              WANT_CODE, &err);
    CHECK(strncmp(err.message, "g.yaml:3:8: 42 is out of range (0 to 41)", 40) == 0);
    /* Quoted "42" is a string, so it is not a number. */
    CHECK_ERR(yaml_doc_get_uint(doc, yaml_doc_map_get(root, "quoted"), 0, 100, &v, WANT_CODE, &err),
              WANT_CODE, &err);
    CHECK(strncmp(err.message, "g.yaml:4:9: expected an unquoted decimal", 40) == 0);
    const yaml_doc_node *tagged = yaml_doc_map_get(root, "tagged");
    CHECK(tagged != NULL && tagged->quoted && strcmp(tagged->scalar, "7") == 0);

    bool flag = false;
    CHECK_OK(yaml_doc_get_bool(doc, yaml_doc_map_get(root, "flag"), &flag, WANT_CODE, &err), &err);
    CHECK(flag);
    CHECK_ERR(yaml_doc_get_bool(doc, name, &flag, WANT_CODE, &err), WANT_CODE, &err);
    CHECK(strncmp(err.message, "g.yaml:2:7: expected true or false", 34) == 0);

    const yaml_doc_node *list = yaml_doc_map_get(root, "list");
    CHECK_OK(yaml_doc_expect(doc, list, YAML_DOC_SEQ, "list", WANT_CODE, &err), &err);
    CHECK_ERR(yaml_doc_expect(doc, list, YAML_DOC_MAP, "list", WANT_CODE, &err), WANT_CODE, &err);
    CHECK(strcmp(err.message, "g.yaml:8:3: list must be a mapping, not a sequence") == 0);
    CHECK_ERR(yaml_doc_expect(doc, yaml_doc_map_get(root, "absent"), YAML_DOC_MAP, "absent",
                              WANT_CODE, &err),
              WANT_CODE, &err);
    CHECK(strcmp(err.message, "g.yaml: absent is missing (expected a mapping)") == 0);
    REQUIRE(list != NULL && list->count == 2);
    CHECK(list->children[1]->kind == YAML_DOC_MAP && list->children[1]->line == 9 &&
          list->children[1]->column == 5);
    CHECK(strcmp(yaml_doc_map_get(list->children[1], "k")->scalar, "v") == 0);

    const yaml_doc_node *ete = yaml_doc_map_get(root, "\xc3\xa9t\xc3\xa9");
    CHECK(ete != NULL && ete->quoted && strcmp(ete->scalar, "\xc3\xa9") == 0);
    /* Columns count characters: "été: " is 5 characters before the value. */
    CHECK(ete != NULL && ete->line == 10 && ete->column == 6);
    const yaml_doc_node *block = yaml_doc_map_get(root, "block");
    CHECK(block != NULL && block->quoted && strcmp(block->scalar, "line\n") == 0);
    CHECK(yaml_doc_map_get(list, "k") == NULL);

    CHECK_ERR(yaml_doc_error_at(doc, name, WANT_CODE, &err, "custom %d", 5), WANT_CODE, &err);
    CHECK(strcmp(err.message, "g.yaml:2:7: custom 5") == 0);
    yaml_doc_free(doc);

    /* Empty input and a comment-only file are empty documents. */
    doc = NULL;
    CHECK_OK(yaml_doc_load_buffer(NULL, "", 0, WANT_CODE, &doc, &err), &err);
    CHECK(doc != NULL && doc->root == NULL && strcmp(doc->file, "<buffer>") == 0);
    yaml_doc_free(doc);
    /* A NULL data pointer with zero length is an empty document too. */
    doc = NULL;
    CHECK_OK(yaml_doc_load_buffer("e", NULL, 0, WANT_CODE, &doc, &err), &err);
    CHECK(doc != NULL && doc->root == NULL);
    yaml_doc_free(doc);
    /* One explicit document with an end marker is fine. */
    text = "---\na: [1, 2]\n...\n";
    CHECK_OK(yaml_doc_load_buffer("x", text, strlen(text), WANT_CODE, &doc, &err), &err);
    yaml_doc_free(doc);
    /* A UTF-8 byte order mark is allowed. */
    text = "\xef\xbb\xbf"
           "a: 1\n";
    CHECK_OK(yaml_doc_load_buffer("x", text, strlen(text), WANT_CODE, &doc, &err), &err);
    CHECK(doc != NULL && yaml_doc_map_get(doc->root, "a") != NULL);
    yaml_doc_free(doc);
}

static void check_file(void)
{
    p11kms_error err = {0};
    yaml_doc *doc = NULL;
    CHECK_ERR(yaml_doc_load_file("no-such-file.yaml", WANT_CODE, &doc, &err), WANT_CODE, &err);
    CHECK(strncmp(err.message, "no-such-file.yaml: cannot open", 30) == 0);
    CHECK_ERR(yaml_doc_load_file(".", WANT_CODE, &doc, &err), WANT_CODE, &err);
    CHECK(strstr(err.message, "not a regular file") != NULL);

    FILE *f = fopen("dup.yaml", "wb");
    REQUIRE(f != NULL);
    fputs("a:\n  b: 1\n  b: 2\n", f);
    REQUIRE(fclose(f) == 0);
    CHECK_ERR(yaml_doc_load_file("dup.yaml", WANT_CODE, &doc, &err), WANT_CODE, &err);
    CHECK(strncmp(err.message, "dup.yaml:3:3: duplicate mapping key 'b'", 39) == 0);

    f = fopen("good.yaml", "wb");
    REQUIRE(f != NULL);
    fputs("a:\n  b: 1\n", f);
    REQUIRE(fclose(f) == 0);
    CHECK_OK(yaml_doc_load_file("good.yaml", WANT_CODE, &doc, &err), &err);
    CHECK(doc != NULL && strcmp(doc->file, "good.yaml") == 0);
    yaml_doc_free(doc);
}

int main(void)
{
    for (size_t i = 0; i < sizeof(bad_cases) / sizeof(bad_cases[0]); i++)
        check_bad(&bad_cases[i]);
    check_depth();
    check_size();
    check_good();
    check_file();
    return check_finish("policy-yaml-doc-test");
}
