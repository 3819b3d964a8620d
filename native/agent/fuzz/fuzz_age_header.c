/* libFuzzer target: the age reader as the agent runs it on an input file — armor detection, the
 * header collector and parser, stanza rules, unwrapping with a fixed identity, the MAC, and the
 * payload — on a memory file. Also the header parser alone on the raw bytes. */
#include <stdint.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#include <sodium.h>

#include "age_decrypt.h"
#include "age_header.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static bool discard(void *ctx, const uint8_t *p, size_t len, struct failure *err)
{
    (void)ctx;
    (void)p;
    (void)len;
    (void)err;
    return true;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int fd = -1;
    static const uint8_t identity[1][32] = {{1, 2, 3}};
    if (fd < 0) {
        if (sodium_init() < 0)
            abort();
        fd = memfd_create("fuzz-age", 0);
        if (fd < 0)
            abort();
    }
    struct failure err = {0};
    struct age_header h;
    if (age_header_parse(data, size, &h, &err)) {
        uint8_t file_key[AGE_FILE_KEY_SIZE];
        struct failure unwrap_err = {0};
        if (age_unwrap(&h, identity, 1, file_key, &unwrap_err))
            (void)age_verify_mac(&h, file_key, &unwrap_err);
    }
    age_header_free(&h);

    if (ftruncate(fd, 0) != 0 || pwrite(fd, data, size, 0) != (ssize_t)size ||
        lseek(fd, 0, SEEK_SET) != 0)
        abort();
    struct age_decrypt_io io = {.write = discard, .raw_limit = UINT64_MAX,
                                .max_plaintext = UINT64_MAX};
    uint64_t plain;
    struct failure decrypt_err = {0};
    bool ok = age_decrypt(fd, identity, 1, &io, &plain, &decrypt_err);
    /* Every refusal is typed. */
    if (!ok && decrypt_err.code == FAIL_NONE)
        abort();
    return 0;
}
