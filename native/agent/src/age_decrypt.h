/* Opening an age file with X25519 identities, streaming: the header is parsed and checked, then
 * each 64 KiB chunk is authenticated before its plaintext is handed to the sink. */
#ifndef AGENT_AGE_DECRYPT_H
#define AGENT_AGE_DECRYPT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "fail.h"
#include "sha256.h"

struct age_decrypt_io {
    /* Where authenticated plaintext goes; false stops (its failure is recorded by it). */
    bool (*write)(void *ctx, const uint8_t *data, size_t len, struct failure *err);
    void *ctx;
    /* Optional: called with the plaintext bytes so far, after each chunk. */
    bool (*progress)(void *ctx, uint64_t done, struct failure *err);
    /* Optional: SHA-256 of the raw file bytes read; reading more than raw_limit fails. */
    struct sha256 *raw_hash;
    uint64_t raw_limit;
    /* More plaintext than this fails with input_size (the manifest's size bounds it). */
    uint64_t max_plaintext;
};

/* Open the age file on `fd` (binary or armored) with the identities. The sink sees each chunk
 * as it authenticates: when a later chunk fails, a verified prefix was already written and the
 * caller must discard it (the agent removes the file). *size is the plaintext size. */
bool age_decrypt(int fd, const uint8_t (*identities)[32], size_t nidentities,
                 const struct age_decrypt_io *io, uint64_t *size, struct failure *err);

#endif
