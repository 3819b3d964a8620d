/* A strict JSON parser for the documents the agent reads: control frames, the workload
 * description, the sealed input manifest and the manifest inside it.
 *
 * Strict means one meaning per text: duplicate keys are refused (never "last one wins"),
 * numbers must be integers within +-(2^53 - 1) (no fraction or exponent: nothing the protocol
 * reads is a float), strings must be valid UTF-8 without raw control characters, and escapes
 * may not produce lone surrogates. Nesting and the number of values are bounded, so memory is
 * bounded by the input size and MAX_JSON_VALUES whatever the input.
 *
 * The parser works in place: strings are unescaped inside the input buffer (an unescaped
 * string is never longer than its escaped form), each followed by a NUL, so the buffer must be
 * writable and outlive the parsed document. Error messages name the rule and a byte offset,
 * never the offending bytes (protocol section 2). */
#ifndef AGENT_JSON_H
#define AGENT_JSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "fail.h"

enum json_type { JSON_NULL, JSON_FALSE, JSON_TRUE, JSON_INT, JSON_STRING, JSON_ARRAY, JSON_OBJECT };

struct json_value;

struct json_member {
    const char *key; /* NUL-terminated; key_len excludes the NUL (keys may hold \u0000) */
    size_t key_len;
    struct json_value *value;
};

struct json_value {
    enum json_type type;
    int64_t integer;         /* JSON_INT */
    const char *string;      /* JSON_STRING: NUL-terminated, string_len bytes of UTF-8 */
    size_t string_len;
    struct json_value **items; /* JSON_ARRAY: count items */
    struct json_member *members; /* JSON_OBJECT: count members, in document order */
    size_t count;
};

struct json_options {
    bool ascii_frame;  /* control frames: raw bytes 0x20..0x7E only, spaces as whitespace, flat */
    size_t max_depth;  /* nesting of arrays and objects */
    size_t max_values; /* values created, containers included */
};

struct json_doc;

/* Parse `len` bytes at `text` (writable; see above). Returns NULL and writes a short reason to
 * `why` on any error. Free with json_free (the input buffer is the caller's). */
struct json_doc *json_parse(char *text, size_t len, const struct json_options *opt, char *why,
                            size_t why_len);
void json_free(struct json_doc *doc);
const struct json_value *json_root(const struct json_doc *doc);

/* The documents the agent reads: strict JSON, nested at most MAX_JSON_DEPTH, at most
 * MAX_JSON_VALUES values, an object with keys only from `allowed` and all of `required`. On any
 * failure records `code` with `what` (the document's name) and the rule, and returns NULL. */
const struct json_value *json_parse_document(char *text, size_t len, const char *const *allowed,
                                             const char *const *required, const char *what,
                                             enum fail_code code, struct json_doc **doc,
                                             struct failure *err);

/* The member called `key` in an object, or NULL. */
const struct json_value *json_get(const struct json_value *obj, const char *key);

/* Check that an object has only keys from `allowed` (a NULL-terminated list) and every key of
 * `required` (also NULL-terminated). On failure writes the rule and, when it is printable and
 * short, the key's name to `why`. */
bool json_check_keys(const struct json_value *obj, const char *const *allowed,
                     const char *const *required, char *why, size_t why_len);

/* Whether a key is safe to echo in an error message: 1..32 of [a-z0-9_]. */
bool json_key_printable(const char *key, size_t len);

/* Compare two UTF-8 strings by their UTF-16 code units (RFC 8785's key order). */
int json_utf16_compare(const char *a, size_t alen, const char *b, size_t blen);

/* Decode one UTF-8 code point at s[*i] (valid input assumed: parsed strings are). */
uint32_t json_utf8_next(const char *s, size_t len, size_t *i);

#endif
