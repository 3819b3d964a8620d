#include "testhooks.h"

#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "age_decrypt.h"
#include "age_seal.h"
#include "encoding.h"
#include "fileio.h"
#include "manifest.h"
#include "sha256.h"

static int usage(void)
{
    fprintf(stderr, "see testhooks.h for the test entry points\n");
    return 2;
}

static bool to_stdout(void *ctx, const uint8_t *data, size_t len, struct failure *err)
{
    (void)ctx;
    if (!write_all(1, data, len))
        return fail_age(err, AGE_CLASS_WRITE, "cannot write stdout: %s", strerror(errno));
    return true;
}

static int age_decrypt_main(int argc, char **argv)
{
    if (argc < 3 || argc > 4)
        return usage();
    FILE *keys = fopen(argv[2], "r");
    if (keys == NULL)
        return usage();
    uint8_t (*ids)[32] = NULL;
    size_t n = 0;
    char line[256];
    while (fgets(line, sizeof line, keys)) {
        size_t len = strcspn(line, "\r\n");
        if (len == 0)
            continue;
        uint8_t (*grown)[32] = realloc(ids, (n + 1) * sizeof *ids);
        if (grown == NULL || !hex_decode_lower(line, len, grown[n], 32)) {
            free(grown ? grown : ids);
            fclose(keys);
            return usage();
        }
        ids = grown;
        n++;
    }
    fclose(keys);
    int fd = argc == 4 ? open(argv[3], O_RDONLY | O_CLOEXEC) : 0;
    if (fd < 0) {
        free(ids);
        return usage();
    }
    struct failure err = {0};
    struct age_decrypt_io io = {.write = to_stdout, .raw_limit = UINT64_MAX,
                                .max_plaintext = UINT64_MAX};
    uint64_t size;
    bool ok = age_decrypt(fd, (const uint8_t(*)[32])ids, n, &io, &size, &err);
    free(ids);
    if (fd != 0)
        close(fd);
    if (!ok) {
        fprintf(stderr, "age-fail %s %s: %s\n", age_class_name(err.age),
                fail_code_name(err.code), err.message);
        return 1;
    }
    return 0;
}

static int seal_main(int argc, char **argv)
{
    if (argc < 5 || argc > 6)
        return usage();
    uint8_t recipient[32];
    if (!age_recipient_decode(argv[2], strlen(argv[2]), recipient))
        return usage();
    struct stat st;
    int in = open(argv[3], O_RDONLY | O_CLOEXEC);
    int out = open(argv[4], O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (in < 0 || out < 0 || fstat(in, &st) != 0)
        return usage();
    struct seal_io io = {.in_fd = in, .in_size = (uint64_t)st.st_size, .out_fd = out,
                         .recipient = recipient,
                         .threads = !(argc == 6 && strcmp(argv[5], "--no-threads") == 0)};
    struct seal_result r;
    struct failure err = {0};
    bool ok = age_seal(&io, &r, &err);
    close(in);
    close(out);
    if (!ok) {
        fprintf(stderr, "seal-fail %s: %s\n", fail_code_name(err.code), err.message);
        return 1;
    }
    char pt[65], ct[65];
    hex_encode(r.plaintext_sha256, 32, pt);
    hex_encode(r.ciphertext_sha256, 32, ct);
    printf("{\"size\":%llu,\"plaintext_sha256\":\"%s\",\"ciphertext_size\":%llu,"
           "\"ciphertext_sha256\":\"%s\"}\n",
           (unsigned long long)r.size, pt, (unsigned long long)r.ciphertext_size, ct);
    return 0;
}

static int sha256_main(int argc, char **argv)
{
    bool portable = argc == 4 && strcmp(argv[2], "--portable") == 0;
    if (argc != (portable ? 4 : 3))
        return usage();
    int fd = open(argv[argc - 1], O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return usage();
    sha256_force_portable(portable);
    struct sha256 ours;
    crypto_hash_sha256_state theirs;
    sha256_init(&ours);
    crypto_hash_sha256_init(&theirs);
    static uint8_t buf[1 << 20];
    size_t step = 1;
    while (true) {
        /* Odd read sizes, so partial blocks are buffered across updates. */
        ssize_t n = read_full(fd, buf, step);
        if (n <= 0)
            break;
        sha256_update(&ours, buf, (size_t)n);
        crypto_hash_sha256_update(&theirs, buf, (size_t)n);
        step = step * 3 + 7 > sizeof buf ? 1 : step * 3 + 7;
    }
    close(fd);
    uint8_t a[32], b[32];
    char ha[65], hb[65];
    bool fast = ours.fast;
    sha256_final(&ours, a);
    crypto_hash_sha256_final(&theirs, b);
    hex_encode(a, 32, ha);
    hex_encode(b, 32, hb);
    printf("%s %s %s\n", ha, hb, fast ? "sha-ni" : "portable");
    return 0;
}

static int manifest_main(int argc, char **argv)
{
    uint8_t task_id[16];
    if (argc != 4 || !hex_decode_lower(argv[2], strlen(argv[2]), task_id, 16))
        return usage();
    int fd = open(argv[3], O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return usage();
    char *text = malloc(8 * 1024 * 1024);
    ssize_t n = text ? read_full(fd, text, 8 * 1024 * 1024) : -1;
    close(fd);
    if (n < 0) {
        free(text);
        return usage();
    }
    struct manifest m;
    struct failure err = {0};
    bool ok = manifest_parse(text, (size_t)n, task_id, &m, &err);
    if (ok) {
        char hex[65];
        hex_encode(m.digest, 32, hex);
        printf("%s\n", hex);
    } else {
        printf("manifest-fail %s: %s\n", fail_code_name(err.code), err.message);
    }
    manifest_free(&m);
    return ok ? 0 : 1;
}

int testhooks_main(int argc, char **argv)
{
    if (sodium_init() < 0)
        return 1;
    if (strcmp(argv[1], "--test-age-decrypt") == 0)
        return age_decrypt_main(argc, argv);
    if (strcmp(argv[1], "--test-seal") == 0)
        return seal_main(argc, argv);
    if (strcmp(argv[1], "--test-sha256") == 0)
        return sha256_main(argc, argv);
    if (strcmp(argv[1], "--test-manifest") == 0)
        return manifest_main(argc, argv);
    return usage();
}
