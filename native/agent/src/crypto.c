#include "crypto.h"

#include <sodium.h>

void hkdf_sha256_32(uint8_t out[32], const uint8_t *ikm, size_t ikm_len, const uint8_t *salt,
                    size_t salt_len, const uint8_t *info, size_t info_len)
{
    static const uint8_t zero_salt[32];
    uint8_t prk[32];
    crypto_auth_hmacsha256_state st;
    if (salt_len == 0) {
        salt = zero_salt;
        salt_len = sizeof zero_salt;
    }
    crypto_auth_hmacsha256_init(&st, salt, salt_len);
    crypto_auth_hmacsha256_update(&st, ikm, ikm_len);
    crypto_auth_hmacsha256_final(&st, prk);
    /* One block of expansion: T(1) = HMAC(PRK, info || 0x01). */
    static const uint8_t one = 1;
    crypto_auth_hmacsha256_init(&st, prk, sizeof prk);
    crypto_auth_hmacsha256_update(&st, info, info_len);
    crypto_auth_hmacsha256_update(&st, &one, 1);
    crypto_auth_hmacsha256_final(&st, out);
    sodium_memzero(prk, sizeof prk);
    sodium_memzero(&st, sizeof st);
}

bool x25519(uint8_t shared[32], const uint8_t priv[32], const uint8_t peer[32])
{
    /* libsodium clamps the scalar and returns -1 for an all-zero result. */
    return crypto_scalarmult(shared, priv, peer) == 0;
}

bool x25519_is_low_order(const uint8_t peer[32])
{
    /* A clamped scalar is a multiple of the cofactor, so every clamped scalar sends exactly the
     * low-order points to zero: one fixed scalar tells them apart. */
    static const uint8_t probe[32] = {9};
    uint8_t shared[32];
    bool low = crypto_scalarmult(shared, probe, peer) != 0;
    sodium_memzero(shared, sizeof shared);
    return low;
}
