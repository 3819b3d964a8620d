#include "age_payload.h"

#include <sodium.h>

#include "crypto.h"

void age_payload_key(uint8_t key[32], const uint8_t file_key[AGE_FILE_KEY_SIZE],
                     const uint8_t nonce[AGE_NONCE_SIZE])
{
    hkdf_sha256_32(key, file_key, AGE_FILE_KEY_SIZE, nonce, AGE_NONCE_SIZE,
                   (const uint8_t *)"payload", 7);
}

static void chunk_nonce(uint8_t nonce[12], uint64_t counter, bool last)
{
    /* An 88-bit counter: files here are far below 2^64 chunks, so the top 3 bytes are zero. */
    nonce[0] = nonce[1] = nonce[2] = 0;
    for (int i = 3; i < 11; i++)
        nonce[i] = (uint8_t)(counter >> (8 * (10 - i)));
    nonce[11] = last ? 1 : 0;
}

void age_seal_chunk(const uint8_t key[32], uint64_t counter, bool last, const uint8_t *in,
                    size_t len, uint8_t *out)
{
    uint8_t nonce[12];
    chunk_nonce(nonce, counter, last);
    crypto_aead_chacha20poly1305_ietf_encrypt(out, NULL, in, len, NULL, 0, NULL, nonce, key);
}

bool age_open_chunk(const uint8_t key[32], uint64_t counter, bool last, const uint8_t *in,
                    size_t len, uint8_t *out)
{
    uint8_t nonce[12];
    chunk_nonce(nonce, counter, last);
    return crypto_aead_chacha20poly1305_ietf_decrypt(out, NULL, NULL, in, len, NULL, 0, nonce,
                                                     key) == 0;
}

uint64_t age_sealed_size(uint64_t header_len, uint64_t size)
{
    uint64_t chunks = size == 0 ? 1 : (size + AGE_CHUNK - 1) / AGE_CHUNK;
    return header_len + AGE_NONCE_SIZE + size + chunks * AGE_TAG;
}
