#include "attest.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fileio.h"
#include "limits.h"

static const uint8_t INTEL_QE_VENDOR_ID[16] = {0x93, 0x9a, 0x72, 0x33, 0xf7, 0x9c, 0x4c, 0xa9,
                                               0x94, 0x0a, 0x0d, 0xb3, 0x95, 0x7f, 0x06, 0x07};

const char *attestation_dir(void)
{
#ifdef AGENT_TEST_BUILD
    const char *dir = getenv("GG_AGENT_TEST_ATTESTATION_DIR");
    if (dir != NULL && dir[0] != '\0')
        return dir;
#endif
    return "/dev/attestation";
}

void evidence_free(struct evidence *ev)
{
    free(ev->quote);
    ev->quote = NULL;
}

bool attest(const uint8_t report_data[64], struct evidence *ev, struct failure *err)
{
    char quote_path[512], urd_path[512];
    memset(ev, 0, sizeof *ev);
    (void)snprintf(quote_path, sizeof quote_path, "%s/quote", attestation_dir());
    (void)snprintf(urd_path, sizeof urd_path, "%s/user_report_data", attestation_dir());
    struct stat st;
    if (stat(quote_path, &st) != 0) {
        if (errno != ENOENT)
            return fail(err, FAIL_ATTESTATION, "cannot look up /dev/attestation/quote: %s",
                        strerror(errno));
        /* No quote file: the runner gives no attestation (gramine-direct). */
        ev->runner = "gramine-direct";
        ev->simulated = true;
        return true;
    }
    int fd = open(urd_path, O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        return fail(err, FAIL_ATTESTATION, "cannot open /dev/attestation/user_report_data: %s",
                    strerror(errno));
    /* One write: Gramine applies each write to the pseudo-file as a whole. */
    ssize_t n;
    do
        n = write(fd, report_data, 64);
    while (n < 0 && errno == EINTR);
    int e = errno;
    close(fd);
    if (n != 64)
        return fail(err, FAIL_ATTESTATION, "cannot write the report data: %s",
                    n < 0 ? strerror(e) : "short write");
    fd = open(quote_path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return fail(err, FAIL_ATTESTATION, "cannot open /dev/attestation/quote: %s",
                    strerror(errno));
    ev->quote = malloc(MAX_QUOTE_BYTES + 1);
    if (ev->quote == NULL) {
        close(fd);
        return fail(err, FAIL_INTERNAL, "out of memory");
    }
    n = read_full(fd, ev->quote, MAX_QUOTE_BYTES + 1);
    e = errno;
    close(fd);
    if (n < 0)
        return fail(err, FAIL_ATTESTATION, "cannot read the quote: %s", strerror(e));
    if (n > MAX_QUOTE_BYTES)
        return fail(err, FAIL_ATTESTATION, "the quote is larger than %d bytes", MAX_QUOTE_BYTES);
    if (n < MIN_QUOTE_BYTES)
        return fail(err, FAIL_ATTESTATION,
                    "the quote is shorter than a quote header and report body (%zd bytes)", n);
    ev->quote_len = (size_t)n;
    memcpy(ev->mrenclave, ev->quote + 112, 32);
    if (memcmp(ev->quote + 12, INTEL_QE_VENDOR_ID, 16) == 0) {
        ev->runner = "gramine-sgx";
        ev->simulated = false;
    } else {
        ev->runner = "sim";
        ev->simulated = true;
    }
    return true;
}
