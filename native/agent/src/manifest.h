/* The sealed input manifest (golem_graphene/sealing/input_manifest.py, module docstring):
 *   th  = SHA-256("golem-graphene/v1/input-manifest" || transcript)
 *   ikm = X25519(E.priv, R.pub)
 *   key = HKDF-SHA-256(ikm, salt = th, info = "golem-graphene/v1/input-manifest-key")
 *   sealed = canonical JSON {"ciphertext": b64, "nonce": b64, "v": 1}, the ciphertext being
 *            ChaCha20-Poly1305(key, nonce, canonical_json(manifest), aad = th)
 * The manifest inside says what to run (args, env) on which inputs (name, plaintext size,
 * ciphertext size and SHA-256). Only the requestor can have sealed it. */
#ifndef AGENT_MANIFEST_H
#define AGENT_MANIFEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "fail.h"
#include "json.h"
#include "transcript.h"
#include "workload.h"

struct manifest_input {
    const char *name;
    int64_t size;
    int64_t ciphertext_size;
    uint8_t ciphertext_sha256[32];
};

struct manifest {
    const char **args;
    size_t nargs;
    struct env_entry *env; /* sorted by UTF-16 code units (the canonical order) */
    size_t nenv;
    struct manifest_input *inputs; /* in manifest order */
    size_t ninputs;
    uint8_t digest[32]; /* SHA-256 of the canonical JSON: the receipt's input_manifest_sha256 */
    /* storage */
    char *plaintext;
    struct json_doc *doc;
};

/* Authenticate, decrypt and parse a sealed manifest. `sealed` (len bytes, malloc'd) is taken
 * over and freed. Fails with input_manifest_format or input_manifest_auth. */
bool manifest_open(char *sealed, size_t len, const uint8_t enclave_priv[32],
                   const struct transcript *t, struct manifest *m, struct failure *err);

/* Parse the sealed form only: the nonce (12 bytes) and the ciphertext, decoded in place in
 * `sealed` (*ciphertext points into it). */
bool manifest_parse_sealed(char *sealed, size_t len, uint8_t nonce[12], uint8_t **ciphertext,
                           size_t *ciphertext_len, struct failure *err);

/* Parse and check a manifest plaintext for task `task_id`; `text` (malloc'd) is taken over. */
bool manifest_parse(char *text, size_t len, const uint8_t task_id[16], struct manifest *m,
                    struct failure *err);

void manifest_free(struct manifest *m);

#endif
