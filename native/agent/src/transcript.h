/* The five fixed-length values one task is bound to (golem_graphene/protocol/binding.py):
 * task_id (16) || nonce (32) || E.pub (32) || S.pub (32) || R.pub (32). */
#ifndef AGENT_TRANSCRIPT_H
#define AGENT_TRANSCRIPT_H

#include <stdint.h>

#define TRANSCRIPT_SIZE 144

struct transcript {
    uint8_t task_id[16];
    uint8_t nonce[32];
    uint8_t enclave_key[32];
    uint8_t signing_key[32];
    uint8_t requestor_key[32];
};

void transcript_encode(const struct transcript *t, uint8_t out[TRANSCRIPT_SIZE]);
/* report_data = SHA-512("golem-graphene/v1/report-data" || transcript) */
void transcript_report_data(const struct transcript *t, uint8_t out[64]);
/* SHA-256(label || transcript): a transcript hash for one purpose. */
void transcript_digest(const struct transcript *t, const char *label, uint8_t out[32]);

#define PROTOCOL_NAME "golem-graphene/v1"

#endif
