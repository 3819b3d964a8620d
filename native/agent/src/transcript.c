#include "transcript.h"

#include <sodium.h>
#include <string.h>

void transcript_encode(const struct transcript *t, uint8_t out[TRANSCRIPT_SIZE])
{
    memcpy(out, t->task_id, 16);
    memcpy(out + 16, t->nonce, 32);
    memcpy(out + 48, t->enclave_key, 32);
    memcpy(out + 80, t->signing_key, 32);
    memcpy(out + 112, t->requestor_key, 32);
}

void transcript_report_data(const struct transcript *t, uint8_t out[64])
{
    static const char label[] = PROTOCOL_NAME "/report-data";
    uint8_t enc[TRANSCRIPT_SIZE];
    transcript_encode(t, enc);
    crypto_hash_sha512_state st;
    crypto_hash_sha512_init(&st);
    crypto_hash_sha512_update(&st, (const uint8_t *)label, sizeof label - 1);
    crypto_hash_sha512_update(&st, enc, sizeof enc);
    crypto_hash_sha512_final(&st, out);
}

void transcript_digest(const struct transcript *t, const char *label, uint8_t out[32])
{
    uint8_t enc[TRANSCRIPT_SIZE];
    transcript_encode(t, enc);
    crypto_hash_sha256_state st;
    crypto_hash_sha256_init(&st);
    crypto_hash_sha256_update(&st, (const uint8_t *)label, strlen(label));
    crypto_hash_sha256_update(&st, enc, sizeof enc);
    crypto_hash_sha256_final(&st, out);
}
