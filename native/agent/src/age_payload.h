/* The age payload: ChaCha20-Poly1305 STREAM over 64 KiB chunks.
 *   payload key = HKDF-SHA-256(ikm = file key, salt = 16-byte nonce, info = "payload")
 *   chunk i is sealed with nonce = i (11 bytes, big endian) || 0x01 if final else 0x00.
 * The counter stops reordering and dropping, the final flag stops truncation and appending. */
#ifndef AGENT_AGE_PAYLOAD_H
#define AGENT_AGE_PAYLOAD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "age_header.h"

#define AGE_CHUNK 65536
#define AGE_TAG 16
#define AGE_SEALED_CHUNK (AGE_CHUNK + AGE_TAG)
#define AGE_NONCE_SIZE 16

void age_payload_key(uint8_t key[32], const uint8_t file_key[AGE_FILE_KEY_SIZE],
                     const uint8_t nonce[AGE_NONCE_SIZE]);

/* Seal one chunk (len <= AGE_CHUNK) into out (len + AGE_TAG bytes). */
void age_seal_chunk(const uint8_t key[32], uint64_t counter, bool last, const uint8_t *in,
                    size_t len, uint8_t *out);
/* Open one sealed chunk (AGE_TAG <= len <= AGE_SEALED_CHUNK); false if it does not
 * authenticate at this position with this flag. */
bool age_open_chunk(const uint8_t key[32], uint64_t counter, bool last, const uint8_t *in,
                    size_t len, uint8_t *out);

/* The age file size for a plaintext of `size` bytes after a header of `header_len` bytes. */
uint64_t age_sealed_size(uint64_t header_len, uint64_t size);

#endif
