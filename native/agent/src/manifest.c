#include "manifest.h"

#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "canon.h"
#include "crypto.h"
#include "encoding.h"
#include "limits.h"
#include "names.h"
#include "sha256.h"

#define MANIFEST_LABEL PROTOCOL_NAME "/input-manifest"
#define MANIFEST_KEY_INFO PROTOCOL_NAME "/input-manifest-key"

static bool format_fail(struct failure *err, const char *what)
{
    return fail(err, FAIL_INPUT_MANIFEST_FORMAT, "input manifest: %s", what);
}

void manifest_free(struct manifest *m)
{
    free(m->args);
    free(m->env);
    free(m->inputs);
    json_free(m->doc);
    free(m->plaintext);
    memset(m, 0, sizeof *m);
}

/* --- the sealed form ------------------------------------------------------------------------ */

static bool b64_member(const struct json_value *root, const char *key, uint8_t **out,
                       size_t *len, struct failure *err)
{
    const struct json_value *v = json_get(root, key);
    if (v->type != JSON_STRING)
        return fail(err, FAIL_INPUT_MANIFEST_FORMAT,
                    "sealed input manifest: \"%s\" must be a base64 string", key);
    /* Canonical only: stray bits in the last character would give one sealed manifest many
     * encodings that all open. Decoded in place (the text is not needed afterwards). */
    uint8_t *bytes = (uint8_t *)(uintptr_t)v->string;
    if (!b64_decode_padded(bytes, v->string_len, bytes, len))
        return fail(err, FAIL_INPUT_MANIFEST_FORMAT,
                    "sealed input manifest: \"%s\" is not canonical base64", key);
    *out = bytes;
    return true;
}

bool manifest_parse_sealed(char *sealed, size_t len, uint8_t nonce[12], uint8_t **ciphertext,
                           size_t *ciphertext_len, struct failure *err)
{
    static const char *const keys[] = {"v", "nonce", "ciphertext", NULL};
    if (len > MAX_SEALED_MANIFEST_BYTES)
        return fail(err, FAIL_INPUT_MANIFEST_FORMAT,
                    "the sealed input manifest is larger than %d bytes",
                    MAX_SEALED_MANIFEST_BYTES);
    struct json_doc *doc;
    const struct json_value *root =
        json_parse_document(sealed, len, keys, keys, "the sealed input manifest",
                            FAIL_INPUT_MANIFEST_FORMAT, &doc, err);
    bool ok = false;
    if (root == NULL)
        goto out;
    const struct json_value *v = json_get(root, "v");
    if (v->type != JSON_INT || v->integer != 1) {
        format_fail(err, "unsupported sealed manifest version (expected 1)");
        goto out;
    }
    uint8_t *n;
    size_t nlen;
    if (!b64_member(root, "nonce", &n, &nlen, err))
        goto out;
    if (nlen != 12) {
        format_fail(err, "the sealed manifest nonce is not 12 bytes");
        goto out;
    }
    memcpy(nonce, n, 12);
    if (!b64_member(root, "ciphertext", ciphertext, ciphertext_len, err))
        goto out;
    ok = true;
out:
    json_free(doc);
    return ok;
}

bool manifest_open(char *sealed, size_t len, const uint8_t enclave_priv[32],
                   const struct transcript *t, struct manifest *m, struct failure *err)
{
    memset(m, 0, sizeof *m);
    uint8_t nonce[12], *ct;
    size_t ct_len;
    if (!manifest_parse_sealed(sealed, len, nonce, &ct, &ct_len, err)) {
        free(sealed);
        return false;
    }
    uint8_t th[32], shared[32], key[32];
    transcript_digest(t, MANIFEST_LABEL, th);
    if (!x25519(shared, enclave_priv, t->requestor_key)) {
        free(sealed);
        return fail(err, FAIL_INPUT_MANIFEST_AUTH,
                    "the requestor key is a low-order X25519 point: no manifest can open");
    }
    hkdf_sha256_32(key, shared, sizeof shared, th, sizeof th, (const uint8_t *)MANIFEST_KEY_INFO,
                   strlen(MANIFEST_KEY_INFO));
    sodium_memzero(shared, sizeof shared);
    unsigned long long plain_len = 0;
    /* In place: libsodium decrypts after it has checked the tag over the ciphertext. */
    int opened = ct_len < crypto_aead_chacha20poly1305_ietf_ABYTES
                     ? -1
                     : crypto_aead_chacha20poly1305_ietf_decrypt(ct, &plain_len, NULL, ct, ct_len,
                                                                 th, sizeof th, nonce, key);
    sodium_memzero(key, sizeof key);
    if (opened != 0) {
        free(sealed);
        return fail(err, FAIL_INPUT_MANIFEST_AUTH,
                    "the input manifest does not authenticate: altered, for another task, or "
                    "not written by the requestor");
    }
    /* The plaintext starts at ct inside `sealed`: move it to the front and keep the buffer. */
    memmove(sealed, ct, (size_t)plain_len);
    return manifest_parse(sealed, (size_t)plain_len, t->task_id, m, err);
}

/* --- the manifest ----------------------------------------------------------------------------- */

static bool no_nul(const struct json_value *v)
{
    return v->type == JSON_STRING && strlen(v->string) == v->string_len;
}

static int env_order(const void *a, const void *b)
{
    const struct env_entry *x = a, *y = b;
    return json_utf16_compare(x->name, strlen(x->name), y->name, strlen(y->name));
}

static bool parse_inputs(struct manifest *m, const struct json_value *v, struct failure *err)
{
    static const char *const keys[] = {"name", "size", "ciphertext_size", "ciphertext_sha256",
                                       NULL};
    char why[128];
    if (v->type != JSON_ARRAY)
        return format_fail(err, "\"inputs\" must be an array");
    if (v->count > MAX_TASK_FILES)
        return format_fail(err, "more than 4096 inputs");
    m->inputs = calloc(v->count ? v->count : 1, sizeof *m->inputs);
    if (m->inputs == NULL)
        return fail(err, FAIL_INTERNAL, "out of memory");
    for (size_t i = 0; i < v->count; i++) {
        const struct json_value *in = v->items[i];
        if (in->type != JSON_OBJECT)
            return format_fail(err, "each input is an object");
        if (!json_check_keys(in, keys, keys, why, sizeof why))
            return fail(err, FAIL_INPUT_MANIFEST_FORMAT, "input manifest: input %zu: %s", i,
                        why);
        struct manifest_input *e = &m->inputs[i];
        const struct json_value *name = json_get(in, "name");
        if (name->type != JSON_STRING || !name_valid(name->string, name->string_len))
            return fail(err, FAIL_INPUT_MANIFEST_FORMAT,
                        "input manifest: input %zu: the name breaks the file-name rule", i);
        e->name = name->string;
        for (size_t j = 0; j < i; j++)
            if (strcmp(m->inputs[j].name, e->name) == 0)
                return fail(err, FAIL_INPUT_MANIFEST_FORMAT,
                            "input manifest: input \"%s\" appears twice", e->name);
        const struct json_value *size = json_get(in, "size");
        const struct json_value *csize = json_get(in, "ciphertext_size");
        const struct json_value *digest = json_get(in, "ciphertext_sha256");
        if (size->type != JSON_INT || size->integer < 0 || csize->type != JSON_INT ||
            csize->integer < 0)
            return fail(err, FAIL_INPUT_MANIFEST_FORMAT,
                        "input manifest: input \"%s\": sizes are integers >= 0", e->name);
        e->size = size->integer;
        e->ciphertext_size = csize->integer;
        if (digest->type != JSON_STRING ||
            !hex_decode_lower(digest->string, digest->string_len, e->ciphertext_sha256, 32))
            return fail(err, FAIL_INPUT_MANIFEST_FORMAT,
                        "input manifest: input \"%s\": ciphertext_sha256 is 64 lowercase hex "
                        "characters", e->name);
        m->ninputs++;
    }
    return true;
}

/* The canonical JSON of the parsed manifest, defaults included (what the requestor hashes). */
static bool digest(struct manifest *m, struct failure *err, const uint8_t task_id[16])
{
    struct buf b;
    buf_init(&b, 2 * MAX_SEALED_MANIFEST_BYTES);
    buf_puts(&b, "{\"args\":[");
    for (size_t i = 0; i < m->nargs; i++) {
        if (i)
            buf_putc(&b, ',');
        canon_cstring(&b, m->args[i]);
    }
    buf_puts(&b, "],\"env\":{");
    for (size_t i = 0; i < m->nenv; i++) {
        if (i)
            buf_putc(&b, ',');
        canon_cstring(&b, m->env[i].name);
        buf_putc(&b, ':');
        canon_cstring(&b, m->env[i].value);
    }
    buf_puts(&b, "},\"inputs\":[");
    for (size_t i = 0; i < m->ninputs; i++) {
        const struct manifest_input *e = &m->inputs[i];
        if (i)
            buf_putc(&b, ',');
        buf_puts(&b, "{\"ciphertext_sha256\":");
        canon_hex(&b, e->ciphertext_sha256, 32);
        buf_puts(&b, ",\"ciphertext_size\":");
        canon_int(&b, e->ciphertext_size);
        buf_puts(&b, ",\"name\":");
        canon_cstring(&b, e->name);
        buf_puts(&b, ",\"size\":");
        canon_int(&b, e->size);
        buf_putc(&b, '}');
    }
    buf_puts(&b, "],\"protocol\":\"" PROTOCOL_NAME "\",\"task_id\":");
    canon_hex(&b, task_id, 16);
    buf_putc(&b, '}');
    if (b.failed) {
        buf_free(&b);
        return fail(err, FAIL_INTERNAL, "out of memory for the manifest digest");
    }
    sha256_once(b.data, b.len, m->digest);
    buf_free(&b);
    return true;
}

bool manifest_parse(char *text, size_t len, const uint8_t task_id[16], struct manifest *m,
                    struct failure *err)
{
    static const char *const keys[] = {"protocol", "task_id", "args", "env", "inputs", NULL};
    static const char *const required[] = {"task_id", NULL};
    memset(m, 0, sizeof *m);
    m->plaintext = text;
    const struct json_value *root =
        json_parse_document(text, len, keys, required, "the input manifest",
                            FAIL_INPUT_MANIFEST_FORMAT, &m->doc, err);
    if (root == NULL)
        return false;
    const struct json_value *protocol = json_get(root, "protocol");
    if (protocol && (protocol->type != JSON_STRING ||
                     strcmp(protocol->string, PROTOCOL_NAME) != 0 ||
                     protocol->string_len != strlen(PROTOCOL_NAME)))
        return format_fail(err, "\"protocol\" must be \"" PROTOCOL_NAME "\"");
    const struct json_value *tid = json_get(root, "task_id");
    uint8_t found[16];
    if (tid->type != JSON_STRING || !hex_decode_lower(tid->string, tid->string_len, found, 16))
        return format_fail(err, "\"task_id\" is 32 lowercase hex characters");
    uint64_t bytes = 0;
    const struct json_value *args = json_get(root, "args");
    if (args) {
        if (args->type != JSON_ARRAY)
            return format_fail(err, "\"args\" must be an array of strings");
        if (args->count > MAX_TASK_ARGS)
            return format_fail(err, "more than 4096 args");
        m->args = calloc(args->count + 1, sizeof *m->args);
        if (m->args == NULL)
            return fail(err, FAIL_INTERNAL, "out of memory");
        for (size_t i = 0; i < args->count; i++) {
            if (!no_nul(args->items[i]))
                return format_fail(err, "args are strings without NUL");
            m->args[m->nargs++] = args->items[i]->string;
            bytes += args->items[i]->string_len + 1;
        }
    }
    const struct json_value *env = json_get(root, "env");
    if (env) {
        if (env->type != JSON_OBJECT)
            return format_fail(err, "\"env\" must be an object of strings");
        if (env->count > MAX_TASK_ENV)
            return format_fail(err, "more than 1024 environment variables");
        m->env = calloc(env->count ? env->count : 1, sizeof *m->env);
        if (m->env == NULL)
            return fail(err, FAIL_INTERNAL, "out of memory");
        for (size_t i = 0; i < env->count; i++) {
            const struct json_member *e = &env->members[i];
            if (e->key_len == 0 || strlen(e->key) != e->key_len || strchr(e->key, '='))
                return format_fail(err, "environment names are non-empty, without '=' or NUL");
            if (!no_nul(e->value))
                return format_fail(err, "environment values are strings without NUL");
            m->env[m->nenv++] = (struct env_entry){e->key, e->value->string};
            bytes += e->key_len + e->value->string_len + 2;
        }
        qsort(m->env, m->nenv, sizeof *m->env, env_order);
    }
    if (bytes > MAX_TASK_ARGV_ENV_BYTES)
        return format_fail(err, "args and env exceed 1 MiB");
    const struct json_value *inputs = json_get(root, "inputs");
    if (inputs && !parse_inputs(m, inputs, err))
        return false;
    if (memcmp(found, task_id, 16) != 0)
        return format_fail(err, "the manifest names another task");
    return digest(m, err, task_id);
}
