/* libFuzzer target: the input manifest's parsers — the sealed form (strict JSON, exact keys,
 * canonical base64) and the authenticated plaintext (schema, names, bounds, the canonical
 * re-serialisation for its digest). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "manifest.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const uint8_t task_id[16] = {0};
    static int ready;
    if (!ready) {
        if (sodium_init() < 0)
            abort();
        ready = 1;
    }
    char *copy = malloc(size + 1);
    if (copy == NULL)
        abort();
    memcpy(copy, data, size);
    uint8_t nonce[12], *ciphertext;
    size_t ciphertext_len;
    struct failure err = {0};
    if (!manifest_parse_sealed(copy, size, nonce, &ciphertext, &ciphertext_len, &err) &&
        err.code != FAIL_INPUT_MANIFEST_FORMAT)
        abort();
    memcpy(copy, data, size);
    struct manifest m;
    struct failure parse_err = {0};
    /* manifest_parse takes the buffer over. */
    if (!manifest_parse(copy, size, task_id, &m, &parse_err) && parse_err.code == FAIL_NONE)
        abort();
    manifest_free(&m);
    return 0;
}
