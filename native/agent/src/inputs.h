/* The requestor's inputs (protocol section 6, steps 1-3): checked against the authenticated
 * manifest and the workload's declarations, then decrypted into the private workspace. */
#ifndef AGENT_INPUTS_H
#define AGENT_INPUTS_H

#include <stdbool.h>
#include <stdint.h>

#include "control.h"
#include "fail.h"
#include "manifest.h"
#include "workload.h"

/* Step 1 (second half): every manifest input is declared and within its max_size, every
 * required input is present. */
bool inputs_check_declared(const struct workload *w, const struct manifest *m,
                           struct failure *err);

/* Step 2: IO_DIR/inputs holds exactly one regular file <name>.age per manifest input, each with
 * the manifest's ciphertext size and SHA-256 (first failure in file-name order). */
bool inputs_check_files(int io_fd, const struct manifest *m, struct failure *err);

/* Step 3: decrypt each input, in manifest order, into WORKSPACE_DIR/inputs/<name>, reporting
 * progress. The ciphertext is hashed again as it is decrypted: what is opened is what was
 * checked, even if the host rewrote the file after step 2. */
bool inputs_open(int io_fd, int workspace_fd, const struct manifest *m,
                 const uint8_t enclave_priv[32], struct control *c, uint64_t *total,
                 struct failure *err);

#endif
