#include "json.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "limits.h"

/* --- arena: every node of one document, freed together ------------------------------------ */

struct chunk {
    struct chunk *next;
    size_t used, size;
    _Alignas(16) unsigned char data[];
};

struct json_doc {
    struct chunk *chunks;
    struct json_value *root;
};

static void *arena_alloc(struct json_doc *doc, size_t size)
{
    size = (size + 15) & ~(size_t)15;
    struct chunk *c = doc->chunks;
    if (c == NULL || c->size - c->used < size) {
        size_t want = size > 32768 ? size : 32768;
        c = malloc(sizeof *c + want);
        if (c == NULL)
            return NULL;
        c->size = want;
        c->used = 0;
        c->next = doc->chunks;
        doc->chunks = c;
    }
    void *p = c->data + c->used;
    c->used += size;
    return p;
}

void json_free(struct json_doc *doc)
{
    if (doc == NULL)
        return;
    for (struct chunk *c = doc->chunks, *next; c; c = next) {
        next = c->next;
        free(c);
    }
    free(doc);
}

const struct json_value *json_root(const struct json_doc *doc)
{
    return doc->root;
}

/* --- the parser ------------------------------------------------------------------------------ */

struct parser {
    char *s;
    size_t len, pos;
    const struct json_options *opt;
    struct json_doc *doc;
    size_t values;
    /* Children of the containers being parsed, shared by all levels (a stack). */
    struct json_value **items;
    size_t items_len, items_cap;
    struct json_member *members;
    size_t members_len, members_cap;
    char *why;
    size_t why_len;
    bool failed;
};

static bool error(struct parser *p, const char *rule)
{
    if (!p->failed) {
        p->failed = true;
        (void)snprintf(p->why, p->why_len, "%s at byte %zu", rule, p->pos);
    }
    return false;
}

static void skip_ws(struct parser *p)
{
    while (p->pos < p->len) {
        char c = p->s[p->pos];
        if (c == ' ' || (!p->opt->ascii_frame && (c == '\t' || c == '\n' || c == '\r')))
            p->pos++;
        else
            break;
    }
}

static struct json_value *new_value(struct parser *p, enum json_type type)
{
    if (++p->values > p->opt->max_values) {
        error(p, "too many values");
        return NULL;
    }
    struct json_value *v = arena_alloc(p->doc, sizeof *v);
    if (v == NULL) {
        error(p, "out of memory");
        return NULL;
    }
    memset(v, 0, sizeof *v);
    v->type = type;
    return v;
}

static int hex4(const char *s)
{
    int v = 0;
    for (int i = 0; i < 4; i++) {
        char c = s[i];
        int d;
        if (c >= '0' && c <= '9')
            d = c - '0';
        else if (c >= 'a' && c <= 'f')
            d = c - 'a' + 10;
        else if (c >= 'A' && c <= 'F')
            d = c - 'A' + 10;
        else
            return -1;
        v = v << 4 | d;
    }
    return v;
}

static size_t put_utf8(char *out, uint32_t cp)
{
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xC0 | cp >> 6);
        out[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xE0 | cp >> 12);
        out[1] = (char)(0x80 | (cp >> 6 & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | cp >> 18);
    out[1] = (char)(0x80 | (cp >> 12 & 0x3F));
    out[2] = (char)(0x80 | (cp >> 6 & 0x3F));
    out[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/* Length of the valid UTF-8 sequence starting at s[0] (at most `avail` bytes), or 0. */
static size_t utf8_sequence(const unsigned char *s, size_t avail)
{
    unsigned char c = s[0];
    size_t n;
    unsigned char lo = 0x80, hi = 0xBF;
    if (c < 0x80)
        return 1;
    if (c >= 0xC2 && c <= 0xDF)
        n = 2;
    else if (c >= 0xE0 && c <= 0xEF) {
        n = 3;
        if (c == 0xE0)
            lo = 0xA0; /* overlong */
        if (c == 0xED)
            hi = 0x9F; /* UTF-16 surrogates */
    } else if (c >= 0xF0 && c <= 0xF4) {
        n = 4;
        if (c == 0xF0)
            lo = 0x90; /* overlong */
        if (c == 0xF4)
            hi = 0x8F; /* above U+10FFFF */
    } else
        return 0;
    if (avail < n || s[1] < lo || s[1] > hi)
        return 0;
    for (size_t i = 2; i < n; i++)
        if (s[i] < 0x80 || s[i] > 0xBF)
            return 0;
    return n;
}

/* Parse a string at p->pos (on the opening quote), unescaping in place. */
static bool parse_string(struct parser *p, const char **out, size_t *out_len)
{
    p->pos++; /* opening quote */
    char *dst = p->s + p->pos;
    size_t w = 0;
    while (true) {
        if (p->pos >= p->len)
            return error(p, "unterminated string");
        unsigned char c = (unsigned char)p->s[p->pos];
        if (c == '"') {
            dst[w] = '\0'; /* lands on or before the closing quote */
            p->pos++;
            *out = dst;
            *out_len = w;
            return true;
        }
        if (c < 0x20)
            return error(p, "raw control character in a string");
        if (c == '\\') {
            if (p->pos + 1 >= p->len)
                return error(p, "unterminated escape");
            char e = p->s[p->pos + 1];
            static const char escaped[] = "\"\\/bfnrt";
            static const char decoded[] = "\"\\/\b\f\n\r\t";
            const char *simple = e != '\0' ? strchr(escaped, e) : NULL;
            if (simple != NULL) {
                dst[w++] = decoded[simple - escaped];
                p->pos += 2;
                continue;
            }
            if (e != 'u')
                return error(p, "invalid escape");
            if (p->len - p->pos < 6)
                return error(p, "truncated \\u escape");
            int u = hex4(p->s + p->pos + 2);
            if (u < 0)
                return error(p, "invalid \\u escape");
            uint32_t cp = (uint32_t)u;
            size_t consumed = 6;
            if (cp >= 0xDC00 && cp <= 0xDFFF)
                return error(p, "lone low surrogate");
            if (cp >= 0xD800 && cp <= 0xDBFF) {
                if (p->len - p->pos < 12 || p->s[p->pos + 6] != '\\' || p->s[p->pos + 7] != 'u')
                    return error(p, "lone high surrogate");
                int lo = hex4(p->s + p->pos + 8);
                if (lo < 0xDC00 || lo > 0xDFFF)
                    return error(p, "lone high surrogate");
                cp = 0x10000 + ((cp - 0xD800) << 10) + ((uint32_t)lo - 0xDC00);
                consumed = 12;
            }
            w += put_utf8(dst + w, cp);
            p->pos += consumed;
            continue;
        }
        if (c >= 0x80) {
            if (p->opt->ascii_frame)
                return error(p, "byte outside 0x20..0x7E");
            size_t n = utf8_sequence((const unsigned char *)p->s + p->pos, p->len - p->pos);
            if (n == 0)
                return error(p, "invalid UTF-8");
            memmove(dst + w, p->s + p->pos, n);
            w += n;
            p->pos += n;
            continue;
        }
        if (p->opt->ascii_frame && c == 0x7F)
            return error(p, "byte outside 0x20..0x7E");
        dst[w++] = (char)c;
        p->pos++;
    }
}

static bool parse_integer(struct parser *p, int64_t *out)
{
    bool negative = false;
    if (p->s[p->pos] == '-') {
        negative = true;
        p->pos++;
    }
    if (p->pos >= p->len || p->s[p->pos] < '0' || p->s[p->pos] > '9')
        return error(p, "invalid number");
    int64_t v = 0;
    if (p->s[p->pos] == '0') {
        p->pos++;
        if (p->pos < p->len && p->s[p->pos] >= '0' && p->s[p->pos] <= '9')
            return error(p, "leading zero in a number");
    } else {
        while (p->pos < p->len && p->s[p->pos] >= '0' && p->s[p->pos] <= '9') {
            v = v * 10 + (p->s[p->pos] - '0');
            if (v > MAX_SAFE_INTEGER)
                return error(p, "integer outside +-(2^53 - 1)");
            p->pos++;
        }
    }
    if (p->pos < p->len && (p->s[p->pos] == '.' || p->s[p->pos] == 'e' || p->s[p->pos] == 'E'))
        return error(p, "not an integer (fractions and exponents are refused)");
    *out = negative ? -v : v;
    return true;
}

static bool literal(struct parser *p, const char *word)
{
    size_t n = strlen(word);
    if (p->len - p->pos < n || memcmp(p->s + p->pos, word, n) != 0)
        return error(p, "invalid literal");
    p->pos += n;
    return true;
}

static int compare_member_keys(const void *a, const void *b)
{
    const struct json_member *x = *(const struct json_member *const *)a;
    const struct json_member *y = *(const struct json_member *const *)b;
    if (x->key_len != y->key_len)
        return x->key_len < y->key_len ? -1 : 1;
    return memcmp(x->key, y->key, x->key_len);
}

static bool has_duplicate(struct parser *p, const struct json_member *m, size_t n)
{
    if (n < 2)
        return false;
    if (n <= 16) {
        for (size_t i = 1; i < n; i++)
            for (size_t j = 0; j < i; j++)
                if (m[i].key_len == m[j].key_len && memcmp(m[i].key, m[j].key, m[i].key_len) == 0)
                    return true;
        return false;
    }
    const struct json_member **sorted = malloc(n * sizeof *sorted);
    if (sorted == NULL) {
        error(p, "out of memory");
        return true;
    }
    for (size_t i = 0; i < n; i++)
        sorted[i] = &m[i];
    qsort(sorted, n, sizeof *sorted, compare_member_keys);
    bool dup = false;
    for (size_t i = 1; i < n && !dup; i++)
        dup = compare_member_keys(&sorted[i - 1], &sorted[i]) == 0;
    free(sorted);
    return dup;
}

static bool grow(struct parser *p, void **array, size_t *cap, size_t elem)
{
    size_t next = *cap ? *cap * 2 : 16;
    void *grown = realloc(*array, next * elem);
    if (grown == NULL)
        return error(p, "out of memory");
    *array = grown;
    *cap = next;
    return true;
}

static struct json_value *parse_value(struct parser *p, size_t depth);

static struct json_value *parse_array(struct parser *p, size_t depth)
{
    struct json_value *v = new_value(p, JSON_ARRAY);
    if (v == NULL)
        return NULL;
    size_t base = p->items_len;
    p->pos++; /* [ */
    skip_ws(p);
    if (p->pos < p->len && p->s[p->pos] == ']') {
        p->pos++;
        return v;
    }
    while (true) {
        struct json_value *item = parse_value(p, depth + 1);
        if (item == NULL)
            return NULL;
        if (p->items_len == p->items_cap &&
            !grow(p, (void **)&p->items, &p->items_cap, sizeof *p->items))
            return NULL;
        p->items[p->items_len++] = item;
        skip_ws(p);
        if (p->pos < p->len && p->s[p->pos] == ',') {
            p->pos++;
            continue;
        }
        if (p->pos < p->len && p->s[p->pos] == ']') {
            p->pos++;
            break;
        }
        error(p, "expected ',' or ']'");
        return NULL;
    }
    v->count = p->items_len - base;
    v->items = arena_alloc(p->doc, v->count * sizeof *v->items);
    if (v->items == NULL) {
        error(p, "out of memory");
        return NULL;
    }
    memcpy(v->items, p->items + base, v->count * sizeof *v->items);
    p->items_len = base;
    return v;
}

static struct json_value *parse_object(struct parser *p, size_t depth)
{
    struct json_value *v = new_value(p, JSON_OBJECT);
    if (v == NULL)
        return NULL;
    size_t base = p->members_len;
    p->pos++; /* { */
    skip_ws(p);
    if (p->pos < p->len && p->s[p->pos] == '}') {
        p->pos++;
        return v;
    }
    while (true) {
        skip_ws(p);
        if (p->pos >= p->len || p->s[p->pos] != '"') {
            error(p, "expected a string key");
            return NULL;
        }
        struct json_member m;
        if (!parse_string(p, &m.key, &m.key_len))
            return NULL;
        skip_ws(p);
        if (p->pos >= p->len || p->s[p->pos] != ':') {
            error(p, "expected ':'");
            return NULL;
        }
        p->pos++;
        m.value = parse_value(p, depth + 1);
        if (m.value == NULL)
            return NULL;
        if (p->members_len == p->members_cap &&
            !grow(p, (void **)&p->members, &p->members_cap, sizeof *p->members))
            return NULL;
        p->members[p->members_len++] = m;
        skip_ws(p);
        if (p->pos < p->len && p->s[p->pos] == ',') {
            p->pos++;
            continue;
        }
        if (p->pos < p->len && p->s[p->pos] == '}') {
            p->pos++;
            break;
        }
        error(p, "expected ',' or '}'");
        return NULL;
    }
    v->count = p->members_len - base;
    if (has_duplicate(p, p->members + base, v->count)) {
        error(p, "duplicate key");
        return NULL;
    }
    v->members = arena_alloc(p->doc, v->count * sizeof *v->members);
    if (v->members == NULL) {
        error(p, "out of memory");
        return NULL;
    }
    memcpy(v->members, p->members + base, v->count * sizeof *v->members);
    p->members_len = base;
    return v;
}

static struct json_value *parse_value(struct parser *p, size_t depth)
{
    skip_ws(p);
    if (p->pos >= p->len) {
        error(p, "expected a value");
        return NULL;
    }
    char c = p->s[p->pos];
    if (c == '{' || c == '[') {
        if (depth >= p->opt->max_depth || (p->opt->ascii_frame && depth > 0)) {
            error(p, p->opt->ascii_frame ? "nested value in a flat frame" : "nesting too deep");
            return NULL;
        }
        return c == '{' ? parse_object(p, depth) : parse_array(p, depth);
    }
    struct json_value *v = NULL;
    if (c == '"') {
        v = new_value(p, JSON_STRING);
        if (v && !parse_string(p, &v->string, &v->string_len))
            return NULL;
    } else if (c == '-' || (c >= '0' && c <= '9')) {
        v = new_value(p, JSON_INT);
        if (v && !parse_integer(p, &v->integer))
            return NULL;
    } else if (c == 't') {
        v = new_value(p, JSON_TRUE);
        if (v && !literal(p, "true"))
            return NULL;
    } else if (c == 'f') {
        v = new_value(p, JSON_FALSE);
        if (v && !literal(p, "false"))
            return NULL;
    } else if (c == 'n') {
        v = new_value(p, JSON_NULL);
        if (v && !literal(p, "null"))
            return NULL;
    } else {
        error(p, "unexpected character");
    }
    return v;
}

struct json_doc *json_parse(char *text, size_t len, const struct json_options *opt, char *why,
                            size_t why_len)
{
    struct parser p = {.s = text, .len = len, .opt = opt, .why = why, .why_len = why_len};
    if (why_len)
        why[0] = '\0';
    if (opt->ascii_frame)
        for (size_t i = 0; i < len; i++)
            if ((unsigned char)text[i] < 0x20 || (unsigned char)text[i] > 0x7E) {
                p.pos = i;
                error(&p, "byte outside 0x20..0x7E");
                return NULL;
            }
    p.doc = calloc(1, sizeof *p.doc);
    if (p.doc == NULL) {
        error(&p, "out of memory");
        return NULL;
    }
    struct json_value *root = parse_value(&p, 0);
    if (root != NULL) {
        skip_ws(&p);
        if (p.pos != p.len) {
            error(&p, "data after the JSON value");
            root = NULL;
        } else if (opt->ascii_frame && root->type != JSON_OBJECT) {
            p.pos = 0;
            error(&p, "a frame is a JSON object");
            root = NULL;
        }
    }
    free(p.items);
    free(p.members);
    if (root == NULL) {
        json_free(p.doc);
        return NULL;
    }
    p.doc->root = root;
    return p.doc;
}

const struct json_value *json_parse_document(char *text, size_t len, const char *const *allowed,
                                             const char *const *required, const char *what,
                                             enum fail_code code, struct json_doc **doc,
                                             struct failure *err)
{
    static const struct json_options options = {.max_depth = MAX_JSON_DEPTH,
                                                 .max_values = MAX_JSON_VALUES};
    char why[160];
    *doc = json_parse(text, len, &options, why, sizeof why);
    if (*doc == NULL) {
        fail(err, code, "%s is not strict JSON: %s", what, why);
        return NULL;
    }
    const struct json_value *root = json_root(*doc);
    if (root->type != JSON_OBJECT) {
        fail(err, code, "%s is not a JSON object", what);
        return NULL;
    }
    if (!json_check_keys(root, allowed, required, why, sizeof why)) {
        fail(err, code, "%s: %s", what, why);
        return NULL;
    }
    return root;
}

/* --- lookups and checks ------------------------------------------------------------------ */

const struct json_value *json_get(const struct json_value *obj, const char *key)
{
    if (obj == NULL || obj->type != JSON_OBJECT)
        return NULL;
    size_t n = strlen(key);
    for (size_t i = 0; i < obj->count; i++)
        if (obj->members[i].key_len == n && memcmp(obj->members[i].key, key, n) == 0)
            return obj->members[i].value;
    return NULL;
}

bool json_key_printable(const char *key, size_t len)
{
    if (len == 0 || len > 32)
        return false;
    for (size_t i = 0; i < len; i++) {
        char c = key[i];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_'))
            return false;
    }
    return true;
}

static bool in_list(const char *const *list, const char *key, size_t len)
{
    for (; *list; list++)
        if (strlen(*list) == len && memcmp(*list, key, len) == 0)
            return true;
    return false;
}

bool json_check_keys(const struct json_value *obj, const char *const *allowed,
                     const char *const *required, char *why, size_t why_len)
{
    for (size_t i = 0; i < obj->count; i++) {
        const struct json_member *m = &obj->members[i];
        if (!in_list(allowed, m->key, m->key_len)) {
            if (json_key_printable(m->key, m->key_len))
                (void)snprintf(why, why_len, "unknown key \"%s\"", m->key);
            else
                (void)snprintf(why, why_len, "an unknown key that is not printable");
            return false;
        }
    }
    for (; *required; required++)
        if (json_get(obj, *required) == NULL) {
            (void)snprintf(why, why_len, "missing key \"%s\"", *required);
            return false;
        }
    return true;
}

uint32_t json_utf8_next(const char *s, size_t len, size_t *i)
{
    const unsigned char *u = (const unsigned char *)s;
    unsigned char c = u[*i];
    uint32_t cp;
    size_t n;
    if (c < 0x80) {
        cp = c;
        n = 1;
    } else if (c < 0xE0) {
        cp = c & 0x1F;
        n = 2;
    } else if (c < 0xF0) {
        cp = c & 0x0F;
        n = 3;
    } else {
        cp = c & 0x07;
        n = 4;
    }
    for (size_t k = 1; k < n && *i + k < len; k++)
        cp = cp << 6 | (u[*i + k] & 0x3F);
    *i += n;
    return cp;
}

/* The UTF-16 code unit at position `half` (0 or 1) of code point cp. */
static uint32_t utf16_unit(uint32_t cp, int half)
{
    if (cp < 0x10000)
        return cp;
    cp -= 0x10000;
    return half == 0 ? 0xD800 + (cp >> 10) : 0xDC00 + (cp & 0x3FF);
}

int json_utf16_compare(const char *a, size_t alen, const char *b, size_t blen)
{
    size_t i = 0, j = 0;
    uint32_t ca = 0, cb = 0;
    int ha = 2, hb = 2; /* which unit of the current code point comes next; 2: fetch a new one */
    while (true) {
        if (ha == 2) {
            if (i >= alen)
                ca = UINT32_MAX;
            else
                ca = json_utf8_next(a, alen, &i);
            ha = 0;
        }
        if (hb == 2) {
            if (j >= blen)
                cb = UINT32_MAX;
            else
                cb = json_utf8_next(b, blen, &j);
            hb = 0;
        }
        if (ca == UINT32_MAX || cb == UINT32_MAX)
            return ca == cb ? 0 : ca == UINT32_MAX ? -1 : 1;
        uint32_t ua = utf16_unit(ca, ha), ub = utf16_unit(cb, hb);
        if (ua != ub)
            return ua < ub ? -1 : 1;
        ha = (ca >= 0x10000 && ha == 0) ? 1 : 2;
        hb = (cb >= 0x10000 && hb == 0) ? 1 : 2;
    }
}
