/* The age v1 header (C2SP age): strict parsing, the recipient stanza rules, unwrapping the file
 * key with X25519 identities, the header MAC, and encoding a header for sealing.
 *
 * Parsing is strict so that one header has exactly one encoding (the MAC covers the bytes as
 * read), and the checks run in the order of the Python requestor's decryptor
 * (golem_graphene/sealing/_internal/header.py and stanzas.py), so both classify every file the
 * same way: grammar (header) -> unwrapping (header / no match / unsupported) -> MAC (hmac). */
#ifndef AGENT_AGE_HEADER_H
#define AGENT_AGE_HEADER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "age_source.h"
#include "fail.h"

#define AGE_FILE_KEY_SIZE 16

struct age_stanza {
    const uint8_t *argline; /* the arguments after "-> ", space separated (type first) */
    size_t argline_len;
    size_t nargs;
    const uint8_t *body; /* decoded */
    size_t body_len;
};

struct age_header {
    uint8_t *bytes; /* the whole header, version line through MAC line */
    size_t len;
    size_t mac_input_len; /* bytes the MAC covers: through "---" */
    uint8_t mac[32];
    struct age_stanza *stanzas;
    size_t nstanzas;
    uint8_t *bodies; /* storage of the decoded bodies */
};

/* Read header lines from the source up to and including the MAC line, with the size bounds,
 * then parse them. */
bool age_header_read(struct age_source *src, struct age_header *h, struct failure *err);
/* Parse complete header bytes (copied). */
bool age_header_parse(const uint8_t *data, size_t len, struct age_header *h, struct failure *err);
void age_header_free(struct age_header *h);

/* The file key from the first X25519 stanza one of the identities (32-byte X25519 private keys)
 * opens, in identity-major order; refusals as the requestor's unwrap_file_key. */
bool age_unwrap(const struct age_header *h, const uint8_t (*identities)[32], size_t nidentities,
                uint8_t file_key[AGE_FILE_KEY_SIZE], struct failure *err);
/* Check the header MAC with the unwrapped file key (hmac failure otherwise). */
bool age_verify_mac(const struct age_header *h, const uint8_t file_key[AGE_FILE_KEY_SIZE],
                    struct failure *err);

/* The header of a file sealed to one X25519 recipient, with a fresh ephemeral key: the only
 * header the agent writes. At most AGE_SEAL_HEADER_MAX bytes; returns its length, or 0 when the
 * recipient is a low-order point. */
#define AGE_SEAL_HEADER_MAX 256
size_t age_header_seal(const uint8_t recipient[32], const uint8_t file_key[AGE_FILE_KEY_SIZE],
                       uint8_t out[AGE_SEAL_HEADER_MAX]);

#endif
