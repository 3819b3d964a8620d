/* Text encodings of keys and digests, all strict so that one value has exactly one encoding:
 * lowercase hex (protocol fields), age's unpadded base64 (header), standard padded base64 (the
 * sealed input manifest) and Bech32 (age1... recipients). */
#ifndef AGENT_ENCODING_H
#define AGENT_ENCODING_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Lowercase hex of n bytes into out (2n characters and a NUL). */
void hex_encode(const uint8_t *in, size_t n, char *out);
/* Exactly 2n lowercase hex characters into n bytes; false for anything else. */
bool hex_decode_lower(const char *text, size_t text_len, uint8_t *out, size_t n);

/* True when every byte is in the base64 alphabet (no padding, no whitespace). */
bool b64_is_alphabet(const uint8_t *text, size_t len);
/* Unpadded base64 (age): characters written, no NUL. out must hold b64_unpadded_len(n). */
size_t b64_encode_unpadded(const uint8_t *in, size_t n, char *out);
size_t b64_unpadded_len(size_t n);
/* Canonical unpadded base64 (age's rule): alphabet only, no padding, zero unused bits.
 * out may alias text (the decoded form is shorter). Returns false for anything else. */
bool b64_decode_unpadded(const uint8_t *text, size_t len, uint8_t *out, size_t *out_len);
/* Canonical standard base64 with '=' padding (RFC 4648 section 4, strict). out may alias. */
bool b64_decode_padded(const uint8_t *text, size_t len, uint8_t *out, size_t *out_len);
size_t b64_encode_padded(const uint8_t *in, size_t n, char *out);

/* An age X25519 recipient: "age1" + Bech32 of 32 bytes, lowercase only (protocol section 4).
 * Returns false for another human-readable part, case, length, checksum or padding. */
bool age_recipient_decode(const char *text, size_t len, uint8_t key[32]);
/* The canonical lowercase "age1..." text of a key: 62 characters and a NUL. */
#define AGE_RECIPIENT_LEN 62
void age_recipient_encode(const uint8_t key[32], char out[AGE_RECIPIENT_LEN + 1]);

#endif
