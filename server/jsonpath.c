/*
 * Kubernetes JSONPath (k8s.io/client-go/util/jsonpath) as Tekton Triggers
 * applies it (pkg/template/jsonpath.go): compiled once at load, evaluated per
 * event on the parsed payload. Where client-go's behaviour is odd it is
 * followed (a field on null is missing, an index on null yields nothing, a
 * recursive descent yields containers only), and where gpuhook differs the
 * difference is listed in docs/tekton-compat.md.
 */
#include "gpuhook/jsonpath.h"
#include "gpuhook/buf.h"
#include "gpuhook/error.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#define JSONPATH_MISSING 1
#define JSONPATH_KEY_MAX 1024

enum jsonpath_kind { JK_FIELD, JK_WILD, JK_RECURSE, JK_SLICE, JK_UNION, JK_FILTER };
enum jsonpath_opnd { JO_PATH, JO_STRING, JO_NUMBER, JO_TRUE, JO_FALSE };
enum jsonpath_op { JOP_EXISTS, JOP_EQ, JOP_NE, JOP_LT, JOP_GT, JOP_LE, JOP_GE };

struct jsonpath_step;

struct jsonpath_list {
    struct jsonpath_step *s;
    size_t n;
};

struct jsonpath_operand {
    enum jsonpath_opnd kind;
    struct jsonpath_list path; /* JO_PATH: relative to @ */
    char *str;                 /* JO_STRING */
    double num;                /* JO_NUMBER */
};

struct jsonpath_step {
    enum jsonpath_kind kind;
    char *key;  /* JK_FIELD */
    long index; /* JK_FIELD: the key as an array index when it is all digits, else -1 */
    long v[3];  /* JK_SLICE: start, end, step */
    bool known[3];
    bool derived;               /* JK_SLICE: [N], whose end is N + 1 */
    struct jsonpath_step *alts; /* JK_UNION: fields and slices */
    size_t nalt;
    enum jsonpath_op op; /* JK_FILTER */
    struct jsonpath_operand left, right;
};

struct jsonpath {
    enum jsonpath_root root;
    struct jsonpath_list steps; /* after the root */
    struct jsonprune_seg *prune;
    size_t nprune;
};

struct jsonpath_parser {
    const char *p, *end;
    const char *why;
};

static void jsonpath_list_free(struct jsonpath_list *l);

static void jsonpath_step_free(struct jsonpath_step *s) {
    free(s->key);
    for (size_t i = 0; i < s->nalt; i++)
        jsonpath_step_free(&s->alts[i]);
    free(s->alts);
    jsonpath_list_free(&s->left.path);
    jsonpath_list_free(&s->right.path);
    free(s->left.str);
    free(s->right.str);
}

static void jsonpath_list_free(struct jsonpath_list *l) {
    for (size_t i = 0; i < l->n; i++)
        jsonpath_step_free(&l->s[i]);
    free(l->s);
    l->s = NULL;
    l->n = 0;
}

static struct jsonpath_step *jsonpath_push(struct jsonpath_list *l) {
    struct jsonpath_step *s = realloc(l->s, (l->n + 1) * sizeof(*s));
    if (!s)
        return NULL;
    l->s = s;
    memset(&s[l->n], 0, sizeof(s[0]));
    s[l->n].index = -1;
    return &s[l->n++];
}

static bool jsonpath_is_terminator(char c) {
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '.' || c == ',' || c == '[' ||
           c == ']' || c == '$' || c == '@' || c == '{' || c == '}';
}

static long jsonpath_digits_index(const char *k) {
    size_t n = strlen(k);
    if (n == 0 || n > 9 || strspn(k, "0123456789") != n)
        return -1;
    return strtol(k, NULL, 10);
}

static int jsonpath_set_field(struct jsonpath_step *s, const char *key, size_t n) {
    if (!(s->key = malloc(n + 1)))
        return GHE_NOMEM;
    memcpy(s->key, key, n);
    s->key[n] = '\0';
    s->kind = JK_FIELD;
    s->index = jsonpath_digits_index(s->key);
    return 0;
}

/* A field name up to the next unescaped terminator; "\x" stands for x. */
static int jsonpath_parse_field(struct jsonpath_parser *ps, struct jsonpath_list *l) {
    char key[JSONPATH_KEY_MAX];
    size_t n = 0;

    while (ps->p < ps->end && !jsonpath_is_terminator(*ps->p)) {
        if (*ps->p == '\\' && ps->p + 1 < ps->end)
            ps->p++;
        if (n + 1 >= sizeof(key))
            return (ps->why = "a key is longer than 1023 bytes", GHE_INVAL);
        key[n++] = *ps->p++;
    }
    if (n == 0)
        return 0; /* "body.[0]": an empty field selects what it is given */
    struct jsonpath_step *s = jsonpath_push(l);
    if (!s)
        return GHE_NOMEM;
    if (n == 1 && key[0] == '*') {
        s->kind = JK_WILD;
        return 0;
    }
    return jsonpath_set_field(s, key, n);
}

/* "-?digits" or nothing; *known says which. */
static bool jsonpath_parse_int(const char **pp, const char *end, long *v, bool *known) {
    const char *p = *pp;
    bool neg = false;
    long x = 0;
    size_t digits = 0;

    if (p < end && *p == '-') {
        neg = true;
        p++;
    }
    while (p < end && *p >= '0' && *p <= '9') {
        if (digits++ >= 9)
            return false;
        x = x * 10 + (*p++ - '0');
    }
    if (neg && digits == 0)
        return false;
    *known = digits > 0;
    *v = neg ? -x : x;
    *pp = p;
    return true;
}

/* One bracket item that is not a filter: '*', 'key', "key", N or a slice. */
static int jsonpath_parse_item(struct jsonpath_parser *ps, const char *a, const char *b,
                               struct jsonpath_step *s) {
    while (a < b && *a == ' ')
        a++;
    while (b > a && b[-1] == ' ')
        b--;
    static const char all[] = ":";
    if (b - a == 1 && *a == '*') {
        a = all; /* [*] is [:] */
        b = all + 1;
    }
    if (b - a >= 2 && (*a == '\'' || *a == '"') && b[-1] == *a) {
        if (memchr(a + 1, *a, (size_t)(b - a - 2)))
            return (ps->why = "a quote inside a quoted key", GHE_INVAL);
        return jsonpath_set_field(s, a + 1, (size_t)(b - a - 2));
    }
    const char *p = a;
    s->kind = JK_SLICE;
    for (int i = 0; i < 3; i++) {
        if (i > 0) {
            if (p == b)
                break;
            if (*p != ':')
                return (ps->why = "an array index is not a number or a slice", GHE_INVAL);
            p++;
        }
        if (!jsonpath_parse_int(&p, b, &s->v[i], &s->known[i]))
            return (ps->why = "an array index is not a number or a slice", GHE_INVAL);
        if (i == 0 && p == b) {
            /* [N]: the end is derived from the start */
            if (!s->known[0])
                return (ps->why = "an empty array index", GHE_INVAL);
            s->v[1] = s->v[0] + 1;
            s->known[1] = true;
            s->derived = true;
            return 0;
        }
    }
    if (p != b)
        return (ps->why = "an array index is not a number or a slice", GHE_INVAL);
    return 0;
}

static int jsonpath_parse_list(struct jsonpath_parser *ps, struct jsonpath_list *l, bool operand);

/* One filter operand: @path, 'text', "text", a number, true or false. */
static int jsonpath_parse_operand(struct jsonpath_parser *ps, const char *a, const char *b,
                                  struct jsonpath_operand *o) {
    while (a < b && *a == ' ')
        a++;
    while (b > a && b[-1] == ' ')
        b--;
    if (a == b)
        return (ps->why = "a filter lacks an operand", GHE_INVAL);
    if (*a == '@') {
        struct jsonpath_parser sub = {a + 1, b, NULL};
        o->kind = JO_PATH;
        int rc = jsonpath_parse_list(&sub, &o->path, true);
        if (rc == GHE_INVAL)
            ps->why = sub.why;
        return rc;
    }
    if ((*a == '\'' || *a == '"') && b - a >= 2 && b[-1] == *a) {
        o->kind = JO_STRING;
        if (!(o->str = malloc((size_t)(b - a - 1))))
            return GHE_NOMEM;
        size_t n = 0;
        for (const char *p = a + 1; p < b - 1; p++) {
            if (*p == '\\' && p + 1 < b - 1)
                p++;
            o->str[n++] = *p;
        }
        o->str[n] = '\0';
        return 0;
    }
    if ((size_t)(b - a) == 4 && memcmp(a, "true", 4) == 0)
        return (o->kind = JO_TRUE, 0);
    if ((size_t)(b - a) == 5 && memcmp(a, "false", 5) == 0)
        return (o->kind = JO_FALSE, 0);
    char tmp[64];
    if ((size_t)(b - a) >= sizeof(tmp))
        return (ps->why = "a filter operand is not a path, a quoted string or a number", GHE_INVAL);
    memcpy(tmp, a, (size_t)(b - a));
    tmp[b - a] = '\0';
    char *endp;
    o->num = strtod(tmp, &endp);
    if (endp == tmp || *endp || !isfinite(o->num))
        return (ps->why = "a filter operand is not a path, a quoted string or a number", GHE_INVAL);
    o->kind = JO_NUMBER;
    return 0;
}

/* [?(left OP right)] or [?(path)], with ps->p just after "[?(". */
static int jsonpath_parse_filter(struct jsonpath_parser *ps, struct jsonpath_step *s) {
    const char *a = ps->p, *p = ps->p;
    char quote = 0;

    for (; p < ps->end; p++) {
        if (quote) {
            if (*p == '\\' && p + 1 < ps->end)
                p++;
            else if (*p == quote)
                quote = 0;
        } else if (*p == '\'' || *p == '"') {
            quote = *p;
        } else if (*p == ')') {
            break;
        }
    }
    if (p == ps->end || p + 1 >= ps->end || p[1] != ']')
        return (ps->why = "an unterminated filter; expected \")]\"", GHE_INVAL);
    const char *b = p;
    ps->p = p + 2;
    s->kind = JK_FILTER;
    /* The operator is the first run of !<>= outside quotes. */
    const char *op = a;
    for (quote = 0; op < b; op++) {
        if (quote) {
            if (*op == quote)
                quote = 0;
        } else if (*op == '\'' || *op == '"') {
            quote = *op;
        } else if (strchr("!<>=", *op)) {
            break;
        }
    }
    if (op == b) {
        s->op = JOP_EXISTS;
        return jsonpath_parse_operand(ps, a, b, &s->left);
    }
    const char *ope = op;
    while (ope < b && strchr("!<>=", *ope))
        ope++;
    static const struct {
        const char *text;
        enum jsonpath_op op;
    } ops[] = {{"==", JOP_EQ}, {"!=", JOP_NE}, {"<=", JOP_LE},
               {">=", JOP_GE}, {"<", JOP_LT},  {">", JOP_GT}};
    size_t i = 0;
    for (; i < sizeof(ops) / sizeof(ops[0]); i++)
        if (strlen(ops[i].text) == (size_t)(ope - op) &&
            memcmp(ops[i].text, op, (size_t)(ope - op)) == 0)
            break;
    if (i == sizeof(ops) / sizeof(ops[0]))
        return (ps->why = "a filter operator other than ==, !=, <, >, <= or >=", GHE_INVAL);
    s->op = ops[i].op;
    int rc = jsonpath_parse_operand(ps, a, op, &s->left);
    if (!rc)
        rc = jsonpath_parse_operand(ps, ope, b, &s->right);
    return rc;
}

static int jsonpath_parse_bracket(struct jsonpath_parser *ps, struct jsonpath_list *l) {
    struct jsonpath_step *s = jsonpath_push(l);
    if (!s)
        return GHE_NOMEM;
    ps->p++; /* '[' */
    if (ps->p + 1 < ps->end && ps->p[0] == '?' && ps->p[1] == '(') {
        ps->p += 2;
        return jsonpath_parse_filter(ps, s);
    }
    const char *a = ps->p, *b = memchr(a, ']', (size_t)(ps->end - a));
    if (!b)
        return (ps->why = "an unterminated '['", GHE_INVAL);
    ps->p = b + 1;
    size_t commas = 0;
    for (const char *c = a; c < b; c++)
        commas += *c == ',';
    if (commas == 0)
        return jsonpath_parse_item(ps, a, b, s);
    s->kind = JK_UNION;
    if (!(s->alts = calloc(commas + 1, sizeof(*s->alts))))
        return GHE_NOMEM;
    for (const char *c = a;; c++) {
        if (c == b || *c == ',') {
            struct jsonpath_step *alt = &s->alts[s->nalt++];
            alt->index = -1;
            int rc = jsonpath_parse_item(ps, a, c, alt);
            if (rc)
                return rc;
            if (alt->kind != JK_FIELD && alt->kind != JK_SLICE)
                return (ps->why = "a union of wildcards", GHE_INVAL);
            if (c == b)
                break;
            a = c + 1;
        }
    }
    return 0;
}

/* Steps until the end; in an operand, the path after '@'. */
static int jsonpath_parse_list(struct jsonpath_parser *ps, struct jsonpath_list *l, bool operand) {
    int rc = 0;
    (void)operand;
    while (!rc && ps->p < ps->end) {
        char c = *ps->p;
        if (c == ' ') {
            ps->p++;
        } else if (c == '.' && ps->p + 1 < ps->end && ps->p[1] == '.') {
            struct jsonpath_step *s = jsonpath_push(l);
            if (!s)
                return GHE_NOMEM;
            s->kind = JK_RECURSE;
            ps->p += 2;
            rc = jsonpath_parse_field(ps, l);
        } else if (c == '.') {
            ps->p++;
            rc = jsonpath_parse_field(ps, l);
        } else if (c == '[') {
            rc = jsonpath_parse_bracket(ps, l);
        } else {
            return (ps->why = "expected '.' or '[' in the path", GHE_INVAL);
        }
    }
    return rc;
}

void jsonpath_canonical_header(const char *name, char *out, size_t size) {
    size_t n = strlen(name);
    bool upper = true;

    if (!size)
        return;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)name[i];
        /* As Go does: a key with a byte outside a token is left as it is. */
        if (c <= ' ' || c >= 0x7f || strchr("\"(),/:;<=>?@[\\]{}", c)) {
            buf_copy_str(out, size, name);
            return;
        }
    }
    for (size_t i = 0; i < n && i + 1 < size; i++) {
        char c = name[i];
        if (upper && c >= 'a' && c <= 'z')
            c = (char)(c - 'a' + 'A');
        else if (!upper && c >= 'A' && c <= 'Z')
            c = (char)(c - 'A' + 'a');
        out[i] = c;
        upper = c == '-';
    }
    out[n + 1 < size ? n : size - 1] = '\0';
}

static int jsonpath_build_prune(struct jsonpath *p) {
    if (p->root != JSONPATH_BODY)
        return 0;
    p->prune = calloc(p->steps.n + 1, sizeof(*p->prune));
    if (!p->prune)
        return GHE_NOMEM;
    for (size_t i = 0; i < p->steps.n; i++) {
        const struct jsonpath_step *s = &p->steps.s[i];
        struct jsonprune_seg *g = &p->prune[p->nprune];
        if (s->kind == JK_FILTER || s->kind == JK_RECURSE)
            break; /* keep everything below: a filter reads the elements */
        g->index = -1;
        if (s->kind == JK_FIELD) {
            g->key = s->key;
            g->any = s->index >= 0; /* "a.0" may index an array: keep every element */
        } else {
            g->any = true; /* slices, unions and wildcards: indexes stay as they are */
        }
        p->nprune++;
    }
    return 0;
}

int jsonpath_compile(const char *expr, struct jsonpath **out, const char **why) {
    size_t len = strlen(expr);
    const char *a = expr, *b = expr + len;

    *out = NULL;
    /* Tekton's relaxed forms: a.b, .a.b, {a.b} and {.a.b}; no other braces. */
    if (len >= 2 && a[0] == '{' && b[-1] == '}') {
        a++;
        b--;
    }
    if (a < b && *a == '.')
        a++;
    for (const char *c = a; c < b; c++)
        if (*c == '{' || *c == '}')
            return (*why = "unbalanced '{' or '}'", GHE_INVAL);
    if (a == b)
        return (*why = "an empty expression", GHE_INVAL);

    struct jsonpath *p = calloc(1, sizeof(*p));
    if (!p)
        return GHE_NOMEM;
    struct jsonpath_list all = {0};
    struct jsonpath_parser ps = {a, b, NULL};
    int rc = jsonpath_parse_field(&ps, &all);
    if (!rc)
        rc = jsonpath_parse_list(&ps, &all, false);
    if (rc == GHE_INVAL)
        *why = ps.why;
    if (!rc) {
        static const char *const roots[] = {"body", "header", "extensions", "context"};
        size_t r = 0;
        if (all.n > 0 && all.s[0].kind == JK_FIELD)
            for (; r < 4 && strcmp(all.s[0].key, roots[r]) != 0; r++)
                ;
        if (all.n == 0 || all.s[0].kind != JK_FIELD || r == 4) {
            *why = "expected body, header, extensions or context";
            rc = GHE_INVAL;
        } else {
            p->root = (enum jsonpath_root)r;
            jsonpath_step_free(&all.s[0]);
            memmove(all.s, all.s + 1, (all.n - 1) * sizeof(*all.s));
            all.n--;
            p->steps = all;
            all.s = NULL;
            all.n = 0;
        }
    }
    if (!rc && p->root == JSONPATH_HEADER && p->steps.n > 0 && p->steps.s[0].kind == JK_FIELD) {
        char canon[JSONPATH_KEY_MAX];
        jsonpath_canonical_header(p->steps.s[0].key, canon, sizeof(canon));
        memcpy(p->steps.s[0].key, canon, strlen(canon) + 1);
    }
    if (!rc)
        rc = jsonpath_build_prune(p);
    jsonpath_list_free(&all);
    if (rc) {
        jsonpath_free(p);
        return rc;
    }
    *out = p;
    return 0;
}

void jsonpath_free(struct jsonpath *p) {
    if (!p)
        return;
    jsonpath_list_free(&p->steps);
    free(p->prune);
    free(p);
}

enum jsonpath_root jsonpath_root(const struct jsonpath *p) { return p->root; }

bool jsonpath_is_root(const struct jsonpath *p) { return p->steps.n == 0; }

const char *jsonpath_header_name(const struct jsonpath *p) {
    if (p->root != JSONPATH_HEADER || p->steps.n != 1 || p->steps.s[0].kind != JK_FIELD)
        return NULL;
    return p->steps.s[0].key;
}

struct jsonprune_path jsonpath_prune_path(const struct jsonpath *p) {
    struct jsonprune_path path = {p->prune, p->nprune};
    return path;
}

/* ------------------------------------------------------------ evaluation */

void jsonpath_results_cleanup(struct jsonpath_results *r) {
    free(r->v);
    memset(r, 0, sizeof(*r));
}

static int jsonpath_add(struct jsonpath_results *r, const cJSON *n) {
    if (r->n == r->cap) {
        size_t cap = r->cap ? r->cap * 2 : 8;
        const cJSON **v = realloc(r->v, cap * sizeof(*v));
        if (!v)
            return GHE_NOMEM;
        r->v = v;
        r->cap = cap;
    }
    r->v[r->n++] = n;
    return 0;
}

static int jsonpath_eval_list(const struct jsonpath_list *l, const cJSON *start,
                              struct jsonpath_results *res);

static int jsonpath_field(const struct jsonpath_step *s, const struct jsonpath_results *in,
                          struct jsonpath_results *out) {
    for (size_t i = 0; i < in->n; i++) {
        const cJSON *v = in->v[i], *c = NULL;
        if (cJSON_IsObject(v))
            c = cJSON_GetObjectItemCaseSensitive(v, s->key);
        else if (cJSON_IsArray(v) && s->index >= 0)
            c = cJSON_GetArrayItem(v, (int)s->index); /* gpuhook's a.0 form */
        if (c && jsonpath_add(out, c))
            return GHE_NOMEM;
    }
    return in->n && !out->n ? JSONPATH_MISSING : 0;
}

static int jsonpath_slice(const struct jsonpath_step *s, const struct jsonpath_results *in,
                          struct jsonpath_results *out) {
    for (size_t i = 0; i < in->n; i++) {
        const cJSON *v = in->v[i];
        if (cJSON_IsNull(v))
            continue;
        if (!cJSON_IsArray(v))
            return JSONPATH_MISSING;
        long len = cJSON_GetArraySize(v);
        long start = s->known[0] ? s->v[0] : 0;
        long end = s->known[1] ? s->v[1] : len;
        if (start < 0)
            start += len;
        if (end < 0 || (end == 0 && s->derived))
            end += len;
        if (end == start)
            continue;
        if (start >= len || start < 0 || end > len || end < 0 || start > end)
            return JSONPATH_MISSING;
        long step = s->known[2] ? s->v[2] : 1;
        if (step <= 0)
            return JSONPATH_MISSING;
        long k = 0;
        const cJSON *c;
        cJSON_ArrayForEach(c, v) {
            if (k >= start && k < end && (k - start) % step == 0 && jsonpath_add(out, c))
                return GHE_NOMEM;
            k++;
        }
    }
    return 0;
}

static int jsonpath_recurse(const cJSON *v, struct jsonpath_results *out) {
    if ((!cJSON_IsArray(v) && !cJSON_IsObject(v)) || !v->child)
        return 0;
    if (jsonpath_add(out, v))
        return GHE_NOMEM;
    for (const cJSON *c = v->child; c; c = c->next)
        if (jsonpath_recurse(c, out))
            return GHE_NOMEM;
    return 0;
}

/* One operand's value for an element: 0, JSONPATH_MISSING, or GHE_NOMEM; *n NULL when none. */
static int jsonpath_operand_eval(const struct jsonpath_operand *o, const cJSON *elem,
                                 const cJSON **n, cJSON *lit) {
    struct jsonpath_results r = {0};
    int rc = 0;

    *n = NULL;
    switch (o->kind) {
    case JO_PATH:
        rc = jsonpath_eval_list(&o->path, elem, &r);
        if (!rc && r.n > 1)
            rc = JSONPATH_MISSING; /* "can only compare one element at a time" */
        if (!rc && r.n == 1)
            *n = r.v[0];
        jsonpath_results_cleanup(&r);
        return rc;
    case JO_STRING:
        lit->type = cJSON_String;
        lit->valuestring = o->str;
        break;
    case JO_NUMBER:
        lit->type = cJSON_Number;
        lit->valuedouble = o->num;
        break;
    case JO_TRUE:
        lit->type = cJSON_True;
        break;
    case JO_FALSE:
        lit->type = cJSON_False;
        break;
    }
    *n = lit;
    return 0;
}

/* Compares as Go's text/template eq/lt do: same kinds only. Returns 1, 0 or -1 (an error). */
static int jsonpath_compare(enum jsonpath_op op, const cJSON *l, const cJSON *r) {
    int cmp;
    if (cJSON_IsString(l) && cJSON_IsString(r))
        cmp = strcmp(l->valuestring, r->valuestring);
    else if (cJSON_IsNumber(l) && cJSON_IsNumber(r))
        cmp = l->valuedouble < r->valuedouble ? -1 : l->valuedouble > r->valuedouble;
    else if (cJSON_IsBool(l) && cJSON_IsBool(r) && (op == JOP_EQ || op == JOP_NE))
        cmp = cJSON_IsTrue(l) != cJSON_IsTrue(r);
    else
        return -1;
    switch (op) {
    case JOP_EQ:
        return cmp == 0;
    case JOP_NE:
        return cmp != 0;
    case JOP_LT:
        return cmp < 0;
    case JOP_GT:
        return cmp > 0;
    case JOP_LE:
        return cmp <= 0;
    case JOP_GE:
        return cmp >= 0;
    default:
        return -1;
    }
}

static int jsonpath_filter(const struct jsonpath_step *s, const struct jsonpath_results *in,
                           struct jsonpath_results *out) {
    for (size_t i = 0; i < in->n; i++) {
        const cJSON *v = in->v[i], *e;
        if (!cJSON_IsArray(v))
            return JSONPATH_MISSING; /* "is not array or slice and cannot be filtered" */
        cJSON_ArrayForEach(e, v) {
            cJSON llit = {0}, rlit = {0};
            const cJSON *l, *r;
            int rc = jsonpath_operand_eval(&s->left, e, &l, &llit);
            if (s->op == JOP_EXISTS) {
                if (rc == GHE_NOMEM)
                    return rc;
                if (rc == 0 && l && jsonpath_add(out, e))
                    return GHE_NOMEM;
                continue;
            }
            if (rc)
                return rc;
            if (!l)
                continue;
            if ((rc = jsonpath_operand_eval(&s->right, e, &r, &rlit)) != 0)
                return rc;
            if (!r)
                continue;
            int pass = jsonpath_compare(s->op, l, r);
            if (pass < 0)
                return JSONPATH_MISSING;
            if (pass && jsonpath_add(out, e))
                return GHE_NOMEM;
        }
    }
    return 0;
}

static int jsonpath_step_eval(const struct jsonpath_step *s, const struct jsonpath_results *in,
                              struct jsonpath_results *out) {
    int rc = 0;
    const cJSON *c;

    if (in->n == 0)
        return 0; /* no input, no output */
    switch (s->kind) {
    case JK_FIELD:
        return jsonpath_field(s, in, out);
    case JK_WILD:
        for (size_t i = 0; i < in->n && !rc; i++)
            if (cJSON_IsArray(in->v[i]) || cJSON_IsObject(in->v[i]))
                cJSON_ArrayForEach(c, in->v[i]) if ((rc = jsonpath_add(out, c)) != 0) break;
        return rc;
    case JK_RECURSE:
        for (size_t i = 0; i < in->n && !rc; i++)
            rc = jsonpath_recurse(in->v[i], out);
        return rc;
    case JK_SLICE:
        return jsonpath_slice(s, in, out);
    case JK_UNION:
        for (size_t a = 0; a < s->nalt && !rc; a++) {
            struct jsonpath_results part = {0};
            rc = jsonpath_step_eval(&s->alts[a], in, &part);
            for (size_t k = 0; !rc && k < part.n; k++)
                rc = jsonpath_add(out, part.v[k]);
            jsonpath_results_cleanup(&part);
        }
        return rc;
    case JK_FILTER:
        return jsonpath_filter(s, in, out);
    }
    return 0;
}

static int jsonpath_eval_list(const struct jsonpath_list *l, const cJSON *start,
                              struct jsonpath_results *res) {
    struct jsonpath_results cur = {0}, next = {0};
    int rc;

    res->n = 0;
    if ((rc = jsonpath_add(&cur, start)) != 0)
        return rc;
    for (size_t i = 0; i < l->n && !rc; i++) {
        next.n = 0;
        rc = jsonpath_step_eval(&l->s[i], &cur, &next);
        struct jsonpath_results t = cur;
        cur = next;
        next = t;
    }
    jsonpath_results_cleanup(&next);
    if (rc) {
        jsonpath_results_cleanup(&cur);
        return rc;
    }
    jsonpath_results_cleanup(res);
    *res = cur;
    return 0;
}

int jsonpath_eval(const struct jsonpath *p, const cJSON *root, struct jsonpath_results *res) {
    if (!root) {
        res->n = 0;
        return JSONPATH_MISSING;
    }
    return jsonpath_eval_list(&p->steps, root, res);
}

/* ------------------------------------------------------------ printing */

static int jsonpath_print_number(const cJSON *n, struct buf *out) {
    char tmp[64];
    double d = n->valuedouble;

    if (n->valuestring)
        return buf_appends(out, n->valuestring);
    if (!isfinite(d))
        return buf_appends(out, "null");
    if (d > -1e15 && d < 1e15 && d == (double)(long long)d) {
        snprintf(tmp, sizeof(tmp), "%.0f", d);
    } else {
        snprintf(tmp, sizeof(tmp), "%.15g", d);
        if (strtod(tmp, NULL) != d)
            snprintf(tmp, sizeof(tmp), "%.17g", d);
    }
    return buf_appends(out, tmp);
}

static int jsonpath_print_string(const char *s, struct buf *out) {
    int rc;
    if ((rc = buf_append(out, "\"", 1)) || (rc = buf_append_json_escaped(out, s, strlen(s))))
        return rc;
    return buf_append(out, "\"", 1);
}

int jsonpath_print_json(const cJSON *node, struct buf *out) {
    int rc = 0;
    const cJSON *c;

    if (cJSON_IsString(node))
        return jsonpath_print_string(node->valuestring, out);
    if (cJSON_IsNumber(node))
        return jsonpath_print_number(node, out);
    if (cJSON_IsTrue(node))
        return buf_appends(out, "true");
    if (cJSON_IsFalse(node))
        return buf_appends(out, "false");
    if (!cJSON_IsArray(node) && !cJSON_IsObject(node))
        return buf_appends(out, "null");
    bool obj = cJSON_IsObject(node);
    if ((rc = buf_append(out, obj ? "{" : "[", 1)) != 0)
        return rc;
    for (c = node->child; c && !rc; c = c->next) {
        if (c != node->child && (rc = buf_append(out, ",", 1)) != 0)
            break;
        if (obj && ((rc = jsonpath_print_string(c->string ? c->string : "", out)) != 0 ||
                    (rc = buf_append(out, ":", 1)) != 0))
            break;
        rc = jsonpath_print_json(c, out);
    }
    return rc ? rc : buf_append(out, obj ? "}" : "]", 1);
}

int jsonpath_print_results(const struct jsonpath_results *res, struct buf *out, bool *structured) {
    int rc = 0;

    *structured = false;
    if (res->n == 1) {
        const cJSON *v = res->v[0];
        if (cJSON_IsString(v))
            return buf_appends(out, v->valuestring);
        *structured = cJSON_IsArray(v) || cJSON_IsObject(v);
        return jsonpath_print_json(v, out);
    }
    *structured = true;
    if ((rc = buf_append(out, "[", 1)) != 0)
        return rc;
    for (size_t i = 0; i < res->n && !rc; i++) {
        if (i && (rc = buf_append(out, ",", 1)) != 0)
            break;
        rc = jsonpath_print_json(res->v[i], out);
    }
    return rc ? rc : buf_append(out, "]", 1);
}
