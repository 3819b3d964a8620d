#include "age_header.h"

#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "crypto.h"
#include "encoding.h"
#include "limits.h"

static const char VERSION_LINE[] = "age-encryption.org/v1\n";
static const char VERSION_PREFIX[] = "age-encryption.org/";
static const char X25519_INFO[] = "age-encryption.org/v1/X25519";
#define COLUMNS 64
#define MAC_B64_LEN 43
#define WRAPPED_KEY_SIZE (AGE_FILE_KEY_SIZE + 16)

static bool starts_with(const uint8_t *s, size_t len, const char *prefix)
{
    size_t n = strlen(prefix);
    return len >= n && memcmp(s, prefix, n) == 0;
}

static bool header_fail(struct failure *err, const char *what)
{
    return fail_age(err, AGE_CLASS_HEADER, "age header: %s", what);
}

void age_header_free(struct age_header *h)
{
    free(h->bytes);
    free(h->stanzas);
    free(h->bodies);
    memset(h, 0, sizeof *h);
}

/* --- collecting ----------------------------------------------------------------------------- */

bool age_header_read(struct age_source *src, struct age_header *h, struct failure *err)
{
    memset(h, 0, sizeof *h);
    uint8_t *data = NULL;
    size_t len = 0, cap = 0;
    bool first = true;
    while (true) {
        const uint8_t *line;
        size_t n;
        if (!age_source_readline(src, MAX_AGE_HEADER_LINE + 1, &line, &n, err))
            goto fail;
        if (first && !starts_with(line, n, VERSION_PREFIX)) {
            if (n < strlen(VERSION_PREFIX) && memcmp(VERSION_PREFIX, line, n) == 0)
                header_fail(err, "the file ends before the age version line");
            else
                header_fail(err, "not an age file: the first line is not an age version line");
            goto fail;
        }
        first = false;
        if (n == 0 || line[n - 1] != '\n') {
            header_fail(err, n > MAX_AGE_HEADER_LINE ? "header line too long"
                                                      : "the file ends inside the header");
            goto fail;
        }
        if (n > MAX_AGE_HEADER_BYTES - len) {
            header_fail(err, "header larger than 1 MiB");
            goto fail;
        }
        if (len + n > cap) {
            size_t next = cap ? cap * 2 : 1024;
            while (next < len + n)
                next *= 2;
            uint8_t *grown = realloc(data, next);
            if (grown == NULL) {
                fail(err, FAIL_INTERNAL, "out of memory");
                goto fail;
            }
            data = grown;
            cap = next;
        }
        memcpy(data + len, line, n);
        len += n;
        if (starts_with(line, n, "---"))
            break;
    }
    bool ok = age_header_parse(data, len, h, err);
    free(data);
    return ok;
fail:
    free(data);
    return false;
}

/* --- parsing -------------------------------------------------------------------------------- */

static const uint8_t *next_line(const uint8_t *p, const uint8_t *end, size_t *len)
{
    const uint8_t *lf = memchr(p, '\n', (size_t)(end - p));
    *len = (size_t)((lf ? lf : end) - p);
    return p;
}

static bool parse_args(const uint8_t *args, size_t len, size_t *nargs, struct failure *err,
                       size_t lineno)
{
    size_t count = 0, start = 0;
    for (size_t i = 0; i <= len; i++) {
        if (i < len && args[i] != ' ') {
            if (args[i] < 0x21 || args[i] > 0x7E)
                return fail_age(err, AGE_CLASS_HEADER,
                                "age header line %zu: stanza argument has non-VCHAR bytes",
                                lineno);
            continue;
        }
        if (i == start)
            return fail_age(err, AGE_CLASS_HEADER, "age header line %zu: empty stanza argument",
                            lineno);
        count++;
        start = i + 1;
    }
    *nargs = count;
    return true;
}

bool age_header_parse(const uint8_t *data, size_t len, struct age_header *h, struct failure *err)
{
    memset(h, 0, sizeof *h);
    if (len == 0 || data[len - 1] != '\n')
        return header_fail(err, "the file ends inside the header (no MAC line)");
    h->bytes = malloc(len);
    h->bodies = malloc(len);
    if (h->bytes == NULL || h->bodies == NULL)
        return fail(err, FAIL_INTERNAL, "out of memory");
    memcpy(h->bytes, data, len);
    h->len = len;
    const uint8_t *p = h->bytes, *end = h->bytes + len - 1; /* lines are split on LF */
    size_t n;
    next_line(p, end, &n);
    if (n + 1 != strlen(VERSION_LINE) || memcmp(p, VERSION_LINE, n + 1) != 0) {
        if (starts_with(p, n, VERSION_PREFIX))
            return header_fail(err, "unsupported age version (expected age-encryption.org/v1)");
        return header_fail(err, "not an age file: the first line is not an age version line");
    }
    p += n + 1;
    size_t lineno = 1, body_used = 0, cap = 0;
    while (p <= end) {
        const uint8_t *line = next_line(p, end, &n);
        lineno++;
        if (starts_with(line, n, "---")) {
            if (line + n != end)
                return fail_age(err, AGE_CLASS_HEADER,
                                "age header line %zu: data after the MAC line", lineno);
            if (h->nstanzas == 0)
                return header_fail(err, "no recipient stanza");
            if (!starts_with(line, n, "--- ") || n != 4 + MAC_B64_LEN)
                return fail_age(err, AGE_CLASS_HEADER, "age header line %zu: malformed MAC line",
                                lineno);
            size_t mac_len;
            uint8_t mac[33];
            if (!b64_decode_unpadded(line + 4, MAC_B64_LEN, mac, &mac_len) || mac_len != 32)
                return fail_age(err, AGE_CLASS_HEADER,
                                "age header line %zu: the MAC is not canonical base64", lineno);
            memcpy(h->mac, mac, 32);
            h->mac_input_len = (size_t)(line - h->bytes) + 3;
            return true;
        }
        if (!starts_with(line, n, "-> "))
            return fail_age(err, AGE_CLASS_HEADER,
                            "age header line %zu: expected a stanza or the MAC line", lineno);
        if (h->nstanzas >= MAX_AGE_STANZAS)
            return header_fail(err, "too many recipient stanzas");
        struct age_stanza st = {.argline = line + 3, .argline_len = n - 3};
        if (!parse_args(st.argline, st.argline_len, &st.nargs, err, lineno))
            return false;
        size_t stanza_line = lineno;
        p = line + n + 1;
        /* Body lines: full 64-column lines, then one shorter final line (possibly empty). The
         * text is gathered into `bodies` and decoded in place there. */
        size_t text_start = body_used;
        while (true) {
            if (p > end)
                return fail_age(err, AGE_CLASS_HEADER,
                                "age header line %zu: stanza has no short final body line",
                                stanza_line);
            const uint8_t *body_line = next_line(p, end, &n);
            lineno++;
            if (starts_with(body_line, n, "---"))
                return fail_age(err, AGE_CLASS_HEADER,
                                "age header line %zu: stanza has no short final body line",
                                stanza_line);
            if (n > COLUMNS)
                return fail_age(err, AGE_CLASS_HEADER,
                                "age header line %zu: stanza body line longer than 64 columns",
                                lineno);
            if (!b64_is_alphabet(body_line, n))
                return fail_age(err, AGE_CLASS_HEADER,
                                "age header line %zu: stanza body is not base64", lineno);
            memcpy(h->bodies + body_used, body_line, n);
            body_used += n;
            p = body_line + n + 1;
            if (n < COLUMNS)
                break;
        }
        size_t decoded;
        if (!b64_decode_unpadded(h->bodies + text_start, body_used - text_start,
                                 h->bodies + text_start, &decoded))
            return fail_age(err, AGE_CLASS_HEADER,
                            "age header line %zu: stanza body is not canonical base64",
                            stanza_line);
        st.body = h->bodies + text_start;
        st.body_len = decoded;
        body_used = text_start + decoded;
        if (h->nstanzas == cap) {
            size_t next = cap ? cap * 2 : 4;
            struct age_stanza *grown = realloc(h->stanzas, next * sizeof *grown);
            if (grown == NULL)
                return fail(err, FAIL_INTERNAL, "out of memory");
            h->stanzas = grown;
            cap = next;
        }
        h->stanzas[h->nstanzas++] = st;
    }
    return header_fail(err, "the file ends inside the header (no MAC line)");
}

/* --- stanzas -------------------------------------------------------------------------------- */

/* The index-th argument (0 is the type) of a stanza. */
static const uint8_t *stanza_arg(const struct age_stanza *st, size_t index, size_t *len)
{
    const uint8_t *p = st->argline, *end = st->argline + st->argline_len;
    for (size_t i = 0;; i++) {
        const uint8_t *sp = memchr(p, ' ', (size_t)(end - p));
        const uint8_t *stop = sp ? sp : end;
        if (i == index) {
            *len = (size_t)(stop - p);
            return p;
        }
        p = stop + 1;
    }
}

static bool stanza_is(const struct age_stanza *st, const char *type)
{
    size_t len;
    const uint8_t *t = stanza_arg(st, 0, &len);
    return len == strlen(type) && memcmp(t, type, len) == 0;
}

/* Canonical unpadded base64 of exactly `size` bytes. */
static bool b64_exact(const uint8_t *text, size_t len, uint8_t *out, size_t size)
{
    uint8_t scratch[2048];
    size_t got;
    if (len > sizeof scratch || b64_unpadded_len(size) != len)
        return false;
    if (!b64_decode_unpadded(text, len, scratch, &got) || got != size)
        return false;
    if (out)
        memcpy(out, scratch, size);
    return true;
}

static bool x25519_shape(const struct age_stanza *st, size_t index, uint8_t share[32],
                         struct failure *err)
{
    if (st->nargs != 2)
        return fail_age(err, AGE_CLASS_HEADER,
                        "age stanza %zu: an X25519 stanza has one argument after its type", index);
    size_t len;
    const uint8_t *arg = stanza_arg(st, 1, &len);
    if (!b64_exact(arg, len, share, 32))
        return fail_age(err, AGE_CLASS_HEADER,
                        "age stanza %zu: the X25519 share is not the canonical base64 of 32 bytes",
                        index);
    if (st->body_len != WRAPPED_KEY_SIZE)
        return fail_age(err, AGE_CLASS_HEADER, "age stanza %zu: the X25519 body has the wrong "
                        "length", index);
    return true;
}

struct foreign_type {
    const char *type;
    const char *label;
    size_t nargs;
    size_t sizes[2]; /* decoded size of each argument; 0: scrypt's work factor */
};

static const struct foreign_type FOREIGN[] = {
    {"mlkem768x25519", "post-quantum mlkem768x25519", 1, {1120, 0}},
    {"scrypt", "passphrase (scrypt)", 2, {16, 0}},
    {"p256tag", "hardware-key p256tag", 2, {4, 65}},
    {"mlkem768p256tag", "hardware-key mlkem768p256tag", 2, {4, 1153}},
};

static bool work_factor_ok(const uint8_t *arg, size_t len)
{
    /* [1-9][0-9]* and at most MAX_AGE_SCRYPT_WORK_FACTOR */
    if (len == 0 || len > 2 || arg[0] < '1' || arg[0] > '9')
        return false;
    unsigned v = 0;
    for (size_t i = 0; i < len; i++) {
        if (arg[i] < '0' || arg[i] > '9')
            return false;
        v = v * 10 + (unsigned)(arg[i] - '0');
    }
    return v <= MAX_AGE_SCRYPT_WORK_FACTOR;
}

static bool foreign_shape(const struct age_stanza *st, const struct foreign_type *ft, size_t index,
                          struct failure *err)
{
    if (st->nargs != 1 + ft->nargs)
        return fail_age(err, AGE_CLASS_HEADER,
                        "age stanza %zu: the %s stanza has the wrong number of arguments", index,
                        ft->type);
    uint8_t first[1153];
    for (size_t i = 0; i < ft->nargs; i++) {
        size_t len;
        const uint8_t *arg = stanza_arg(st, 1 + i, &len);
        if (strcmp(ft->type, "scrypt") == 0 && i == 1) {
            if (!work_factor_ok(arg, len))
                return fail_age(err, AGE_CLASS_HEADER,
                                "age stanza %zu: the scrypt work factor is not a decimal in 1..%d",
                                index, MAX_AGE_SCRYPT_WORK_FACTOR);
            continue;
        }
        if (!b64_exact(arg, len, i == 0 ? first : NULL, ft->sizes[i]))
            return fail_age(err, AGE_CLASS_HEADER,
                            "age stanza %zu: a %s argument is not the canonical base64 of %zu "
                            "bytes", index, ft->type, ft->sizes[i]);
    }
    if (st->body_len != WRAPPED_KEY_SIZE)
        return fail_age(err, AGE_CLASS_HEADER, "age stanza %zu: the %s body has the wrong length",
                        index, ft->type);
    /* Every identity must abort on the all-zero X25519 secret such a share gives, so no key can
     * open this stanza: the file is malformed whoever holds the post-quantum key. */
    if (strcmp(ft->type, "mlkem768x25519") == 0 && x25519_is_low_order(first + 1120 - 32))
        return fail_age(err, AGE_CLASS_HEADER, "age stanza %zu: the X25519 part of the "
                        "mlkem768x25519 share is a low-order point", index);
    return true;
}

bool age_unwrap(const struct age_header *h, const uint8_t (*identities)[32], size_t nidentities,
                uint8_t file_key[AGE_FILE_KEY_SIZE], struct failure *err)
{
    for (size_t i = 0; i < h->nstanzas; i++)
        if (stanza_is(&h->stanzas[i], "scrypt") && h->nstanzas != 1)
            return header_fail(err, "an scrypt stanza must be the only stanza");
    /* Every X25519 stanza is checked for shape before any is tried (no partitioning oracle). */
    size_t nx = 0;
    uint8_t (*shares)[32] = malloc((h->nstanzas ? h->nstanzas : 1) * sizeof *shares);
    size_t *index = malloc((h->nstanzas ? h->nstanzas : 1) * sizeof *index);
    bool ok = false;
    if (shares == NULL || index == NULL) {
        fail(err, FAIL_INTERNAL, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < h->nstanzas; i++) {
        if (!stanza_is(&h->stanzas[i], "X25519"))
            continue;
        if (!x25519_shape(&h->stanzas[i], i + 1, shares[nx], err))
            goto out;
        index[nx++] = i;
    }
    for (size_t k = 0; k < nidentities; k++) {
        uint8_t pub[32];
        crypto_scalarmult_base(pub, identities[k]);
        for (size_t j = 0; j < nx; j++) {
            uint8_t shared[32], salt[64], key[32];
            if (!x25519(shared, identities[k], shares[j])) {
                fail_age(err, AGE_CLASS_HEADER,
                         "age stanza %zu: the X25519 share is a low-order point", index[j] + 1);
                goto out;
            }
            memcpy(salt, shares[j], 32);
            memcpy(salt + 32, pub, 32);
            hkdf_sha256_32(key, shared, 32, salt, 64, (const uint8_t *)X25519_INFO,
                           strlen(X25519_INFO));
            static const uint8_t zero_nonce[12];
            const struct age_stanza *st = &h->stanzas[index[j]];
            int opened = crypto_aead_chacha20poly1305_ietf_decrypt(
                file_key, NULL, NULL, st->body, st->body_len, NULL, 0, zero_nonce, key);
            sodium_memzero(shared, sizeof shared);
            sodium_memzero(key, sizeof key);
            if (opened == 0) {
                ok = true;
                goto out;
            }
        }
    }
    /* Nothing opened: a malformed foreign native stanza is a malformed file; a well-formed one
     * may open with a key we do not implement. */
    const char *foreign = NULL;
    for (size_t i = 0; i < h->nstanzas; i++)
        for (size_t f = 0; f < sizeof FOREIGN / sizeof FOREIGN[0]; f++)
            if (stanza_is(&h->stanzas[i], FOREIGN[f].type)) {
                if (!foreign_shape(&h->stanzas[i], &FOREIGN[f], i + 1, err))
                    goto out;
                foreign = FOREIGN[f].label;
            }
    if (foreign)
        fail_age(err, AGE_CLASS_UNSUPPORTED,
                 "%sthe age file is sealed to %s recipients, which only X25519 identities "
                 "cannot open", nx ? "no X25519 stanza opens with the enclave key and " : "",
                 foreign);
    else
        fail_age(err, AGE_CLASS_NO_MATCH,
                 "no X25519 stanza of the age file opens with the enclave key (%zu tried)", nx);
out:
    free(shares);
    free(index);
    return ok;
}

static void header_mac(const uint8_t *data, size_t len, const uint8_t file_key[16],
                       uint8_t mac[32])
{
    uint8_t key[32];
    hkdf_sha256_32(key, file_key, AGE_FILE_KEY_SIZE, NULL, 0, (const uint8_t *)"header", 6);
    crypto_auth_hmacsha256_state st;
    crypto_auth_hmacsha256_init(&st, key, sizeof key);
    crypto_auth_hmacsha256_update(&st, data, len);
    crypto_auth_hmacsha256_final(&st, mac);
    sodium_memzero(key, sizeof key);
}

bool age_verify_mac(const struct age_header *h, const uint8_t file_key[AGE_FILE_KEY_SIZE],
                    struct failure *err)
{
    uint8_t mac[32];
    header_mac(h->bytes, h->mac_input_len, file_key, mac);
    if (sodium_memcmp(mac, h->mac, 32) != 0)
        return fail_age(err, AGE_CLASS_HMAC,
                        "the age header MAC does not verify (the header was altered or spliced)");
    return true;
}

size_t age_header_seal(const uint8_t recipient[32], const uint8_t file_key[AGE_FILE_KEY_SIZE],
                       uint8_t out[AGE_SEAL_HEADER_MAX])
{
    uint8_t eph[32], share[32], shared[32], salt[64], key[32], body[WRAPPED_KEY_SIZE];
    randombytes_buf(eph, sizeof eph);
    crypto_scalarmult_base(share, eph);
    bool ok = x25519(shared, eph, recipient);
    sodium_memzero(eph, sizeof eph);
    if (!ok)
        return 0;
    memcpy(salt, share, 32);
    memcpy(salt + 32, recipient, 32);
    hkdf_sha256_32(key, shared, 32, salt, 64, (const uint8_t *)X25519_INFO, strlen(X25519_INFO));
    static const uint8_t zero_nonce[12];
    crypto_aead_chacha20poly1305_ietf_encrypt(body, NULL, file_key, AGE_FILE_KEY_SIZE, NULL, 0,
                                              NULL, zero_nonce, key);
    sodium_memzero(shared, sizeof shared);
    sodium_memzero(key, sizeof key);
    size_t n = 0;
    memcpy(out, VERSION_LINE, strlen(VERSION_LINE));
    n += strlen(VERSION_LINE);
    memcpy(out + n, "-> X25519 ", 10);
    n += 10;
    n += b64_encode_unpadded(share, 32, (char *)out + n);
    out[n++] = '\n';
    n += b64_encode_unpadded(body, sizeof body, (char *)out + n); /* 43 columns: one line */
    out[n++] = '\n';
    memcpy(out + n, "---", 3);
    n += 3;
    uint8_t mac[32];
    header_mac(out, n, file_key, mac);
    out[n++] = ' ';
    n += b64_encode_unpadded(mac, 32, (char *)out + n);
    out[n++] = '\n';
    return n;
}
