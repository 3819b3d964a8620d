/* The few constructions on top of libsodium that age and the protocol share. */
#ifndef AGENT_CRYPTO_H
#define AGENT_CRYPTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* HKDF-SHA-256 (RFC 5869) with a 32-byte output, the only length age and the manifest use.
 * An empty salt is HashLen zero bytes, as the RFC says. */
void hkdf_sha256_32(uint8_t out[32], const uint8_t *ikm, size_t ikm_len, const uint8_t *salt,
                    size_t salt_len, const uint8_t *info, size_t info_len);

/* X25519 of a private scalar and a peer's public key; false when the result is all zeros (a
 * low-order peer key), which age and the manifest key schedule both refuse. */
bool x25519(uint8_t shared[32], const uint8_t priv[32], const uint8_t peer[32]);

/* True when `peer` is a low-order point: X25519 with any (clamped) scalar gives all zeros. */
bool x25519_is_low_order(const uint8_t peer[32]);

#endif
