/* SHA-256 for the bulk digests (every input's and output's ciphertext, every output's
 * plaintext): the x86 SHA extensions when the CPU has them (several times libsodium's portable
 * C), else libsodium's. Both give the same digests; the test build checks one against the
 * other. */
#ifndef AGENT_SHA256_H
#define AGENT_SHA256_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <sodium.h>

struct sha256 {
    bool fast;
    uint32_t h[8];
    uint64_t total;
    uint8_t block[64];
    size_t buffered;
    crypto_hash_sha256_state portable;
};

/* Whether the SHA extensions are used (decided once, from cpuid). */
bool sha256_fast_available(void);
/* Force the portable path (tests: both paths must agree). */
void sha256_force_portable(bool portable);

void sha256_init(struct sha256 *s);
void sha256_update(struct sha256 *s, const void *data, size_t len);
/* Two streams in one call (faster than two calls: see compress_shani_x2). */
void sha256_update2(struct sha256 *a, const void *data_a, size_t len_a, struct sha256 *b,
                    const void *data_b, size_t len_b);
void sha256_final(struct sha256 *s, uint8_t out[32]);
void sha256_once(const void *data, size_t len, uint8_t out[32]);

#endif
