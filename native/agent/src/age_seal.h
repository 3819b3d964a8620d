/* Sealing one file to one X25519 recipient as age, in one pass over the plaintext, taking the
 * SHA-256 of the plaintext read and of the age file written as they stream (the receipt's
 * digests are of exactly the bytes sealed).
 *
 * Workers (one per CPU, up to four) take 512 KiB blocks in turn: each reads and encrypts its
 * block, waits for its block's turn to feed both digests (SHA-256 is sequential), and writes the
 * block at its place in the file. Only the hashing is serial, and it overlaps the other
 * workers' reading, encrypting and writing, so the cores share the work. When no other thread
 * can be started (an enclave with no free thread slot) the calling thread does it all. */
#ifndef AGENT_AGE_SEAL_H
#define AGENT_AGE_SEAL_H

#include <stdbool.h>
#include <stdint.h>

#include "fail.h"

struct seal_result {
    uint64_t size;
    uint8_t plaintext_sha256[32];
    uint64_t ciphertext_size;
    uint8_t ciphertext_sha256[32];
};

struct seal_io {
    int in_fd;          /* read with pread from offset 0: the descriptor's offset is not used */
    uint64_t in_size;   /* the size when opened; the file must still have it when read */
    int out_fd;
    const uint8_t *recipient; /* 32-byte X25519 public key */
    bool (*progress)(void *ctx, uint64_t done, struct failure *err);
    void *ctx;
    bool threads; /* false: run the stages on the calling thread */
};

/* Fails with output_read (the plaintext could not be read, or changed size) or sealing (the
 * recipient is a low-order point, or the age file could not be written). */
bool age_seal(const struct seal_io *io, struct seal_result *res, struct failure *err);

#endif
