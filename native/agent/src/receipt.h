/* The signed receipt (golem_graphene/sealing/receipt_document.py, module docstring): RFC 8785
 * canonical JSON of what the enclave did, signed with S as Ed25519 over
 * "golem-graphene/v1/receipt\n" || canonical_json(receipt), written with its signature and
 * S.pub to IO_DIR/outputs/receipt.json. */
#ifndef AGENT_RECEIPT_H
#define AGENT_RECEIPT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "attest.h"
#include "buf.h"
#include "fail.h"
#include "outputs.h"
#include "runner.h"
#include "transcript.h"

struct receipt_input {
    const struct transcript *transcript;
    const char *requestor_text; /* the canonical age1... text of R */
    const struct evidence *evidence;
    const uint8_t *manifest_sha256;
    const struct run *run;
    const struct output_list *outputs; /* declared outputs, then stdout and stderr */
};

/* The canonical JSON of the receipt. */
bool receipt_canonical(const struct receipt_input *in, struct buf *out);

/* Sign, write IO_DIR/outputs/receipt.json (through a temporary name) and return the SHA-256 of
 * its bytes. */
bool receipt_write(const struct receipt_input *in, const uint8_t signing_secret[64],
                   int outputs_dir, uint8_t sha256_out[32], struct failure *err);

/* "YYYY-MM-DDTHH:MM:SS.ffffffZ" for UTC microseconds since the epoch. */
void receipt_time(int64_t us, char out[64]);

#endif
