#include "age_decrypt.h"

#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "age_header.h"
#include "age_payload.h"
#include "age_source.h"

static bool payload_fail(struct failure *err, const char *what, uint64_t counter)
{
    return fail_age(err, AGE_CLASS_PAYLOAD, "age payload: chunk %llu %s",
                    (unsigned long long)counter, what);
}

static bool emit(const struct age_decrypt_io *io, const uint8_t *data, size_t len,
                 uint64_t *total, struct failure *err)
{
    if (len > io->max_plaintext - *total)
        return fail(err, FAIL_INPUT_SIZE,
                    "the decrypted input is larger than the manifest states (%llu bytes)",
                    (unsigned long long)io->max_plaintext);
    *total += len;
    return len == 0 || io->write(io->ctx, data, len, err);
}

/* One chunk, with the requestor's rules (StreamOpener.open). A full chunk that authenticates
 * only with the other flag is authentic plaintext in the wrong place (cut at a chunk boundary,
 * or data appended): like age, release it and then fail, so the released prefix is the same. */
static bool open_one(const uint8_t key[32], uint64_t counter, bool last, const uint8_t *in,
                     size_t len, uint8_t *out, const struct age_decrypt_io *io, uint64_t *total,
                     struct failure *err)
{
    if (len < AGE_TAG)
        return payload_fail(err, "is truncated (shorter than its tag)", counter);
    if (last && len == AGE_TAG && counter > 0)
        return payload_fail(err, "is an empty final chunk after a full chunk", counter);
    if (age_open_chunk(key, counter, last, in, len, out))
        return emit(io, out, len - AGE_TAG, total, err);
    if (len == AGE_SEALED_CHUNK && age_open_chunk(key, counter, !last, in, len, out)) {
        if (!emit(io, out, len - AGE_TAG, total, err))
            return false;
        return payload_fail(err, last ? "is not final: the payload was truncated"
                                      : "was final: data follows the end of the payload",
                            counter);
    }
    return payload_fail(err, last ? "does not authenticate as the final chunk"
                                  : "does not authenticate (tampered or reordered)",
                        counter);
}

bool age_decrypt(int fd, const uint8_t (*identities)[32], size_t nidentities,
                 const struct age_decrypt_io *io, uint64_t *size, struct failure *err)
{
    struct age_source src;
    struct age_header header = {0};
    uint8_t file_key[AGE_FILE_KEY_SIZE], key[32];
    uint8_t *cur = NULL, *next = NULL, *plain = NULL;
    bool ok = false;
    uint64_t total = 0;
    *size = 0;
    if (!age_source_init(&src, fd, io->raw_hash, io->raw_limit, err))
        return false;
    if (!age_source_sniff(&src, err) || !age_header_read(&src, &header, err) ||
        !age_unwrap(&header, identities, nidentities, file_key, err) ||
        !age_verify_mac(&header, file_key, err))
        goto out;
    uint8_t nonce[AGE_NONCE_SIZE];
    size_t got;
    if (!age_source_read(&src, nonce, sizeof nonce, &got, err))
        goto out;
    if (got != sizeof nonce) {
        fail_age(err, AGE_CLASS_HEADER, "the age file ends before the payload nonce");
        goto out;
    }
    age_payload_key(key, file_key, nonce);
    cur = malloc(AGE_SEALED_CHUNK);
    next = malloc(AGE_SEALED_CHUNK);
    plain = malloc(AGE_CHUNK);
    if (cur == NULL || next == NULL || plain == NULL) {
        fail(err, FAIL_INTERNAL, "out of memory");
        goto out;
    }
    size_t cur_len;
    if (!age_source_read(&src, cur, AGE_SEALED_CHUNK, &cur_len, err))
        goto out;
    if (cur_len == 0) {
        fail_age(err, AGE_CLASS_PAYLOAD, "age payload: no chunks (truncated after the nonce)");
        goto out;
    }
    for (uint64_t counter = 0;; counter++) {
        /* A chunk is final exactly when no byte follows it: read one chunk ahead. */
        size_t next_len = 0;
        if (cur_len == AGE_SEALED_CHUNK &&
            !age_source_read(&src, next, AGE_SEALED_CHUNK, &next_len, err))
            goto out;
        bool last = next_len == 0;
        if (!open_one(key, counter, last, cur, cur_len, plain, io, &total, err))
            goto out;
        if (io->progress && !io->progress(io->ctx, total, err))
            goto out;
        if (last)
            break;
        uint8_t *swap = cur;
        cur = next;
        next = swap;
        cur_len = next_len;
    }
    ok = true;
out:
    *size = total;
    sodium_memzero(file_key, sizeof file_key);
    sodium_memzero(key, sizeof key);
    free(cur);
    free(next);
    if (plain)
        sodium_memzero(plain, AGE_CHUNK);
    free(plain);
    age_header_free(&header);
    age_source_free(&src);
    return ok;
}
