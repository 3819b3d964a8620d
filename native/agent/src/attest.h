/* Gramine's /dev/attestation dance (protocol section 4, evidence): one write of the 64-byte
 * report data to user_report_data, then the quote read whole from quote. */
#ifndef AGENT_ATTEST_H
#define AGENT_ATTEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "fail.h"

struct evidence {
    const char *runner; /* "sim", "gramine-sgx" or "gramine-direct" */
    bool simulated;
    uint8_t *quote; /* NULL for gramine-direct */
    size_t quote_len;
    uint8_t mrenclave[32]; /* quote bytes 112..144, or zeros without a quote */
};

/* The folder is /dev/attestation; only a test build lets a test point it elsewhere (the host is
 * untrusted, so the production binary reads no setting for it). */
const char *attestation_dir(void);

bool attest(const uint8_t report_data[64], struct evidence *ev, struct failure *err);
void evidence_free(struct evidence *ev);

#endif
