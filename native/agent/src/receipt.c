#include "receipt.h"

#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "canon.h"
#include "fileio.h"
#include "limits.h"
#include "sha256.h"

#define SIGNATURE_DOMAIN PROTOCOL_NAME "/receipt\n"
/* Up to MAX_TASK_FILES + 2 output entries of ~300 bytes each, and the rest. */
#define MAX_RECEIPT_BYTES (4 * 1024 * 1024)

void receipt_time(int64_t us, char out[64])
{
    time_t secs = (time_t)(us / 1000000);
    long frac = (long)(us % 1000000);
    if (frac < 0) {
        frac += 1000000;
        secs--;
    }
    struct tm tm;
    gmtime_r(&secs, &tm);
    (void)snprintf(out, 64, "%04d-%02d-%02dT%02d:%02d:%02d.%06ldZ", tm.tm_year + 1900,
                   tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, frac);
}

static void output_entry(struct buf *b, const struct output *o)
{
    /* Keys in JCS order. */
    buf_puts(b, "{\"ciphertext_sha256\":");
    canon_hex(b, o->sealed.ciphertext_sha256, 32);
    buf_puts(b, ",\"ciphertext_size\":");
    canon_int(b, (int64_t)o->sealed.ciphertext_size);
    buf_puts(b, ",\"name\":");
    canon_cstring(b, o->name);
    buf_puts(b, ",\"plaintext_sha256\":");
    canon_hex(b, o->sealed.plaintext_sha256, 32);
    buf_puts(b, ",\"size\":");
    canon_int(b, (int64_t)o->sealed.size);
    buf_putc(b, '}');
}

bool receipt_canonical(const struct receipt_input *in, struct buf *b)
{
    const struct transcript *t = in->transcript;
    char started[64], finished[64];
    receipt_time(in->run->started_us, started);
    receipt_time(in->run->finished_us, finished);
    buf_puts(b, "{\"enclave_key\":");
    canon_hex(b, t->enclave_key, 32);
    buf_puts(b, ",\"exit_status\":");
    canon_int(b, in->run->exit_status);
    buf_puts(b, ",\"input_manifest_sha256\":");
    canon_hex(b, in->manifest_sha256, 32);
    buf_puts(b, ",\"measurement\":{\"mrenclave\":");
    canon_hex(b, in->evidence->mrenclave, 32);
    buf_puts(b, ",\"runner\":");
    canon_cstring(b, in->evidence->runner);
    buf_puts(b, ",\"simulated\":");
    buf_puts(b, in->evidence->simulated ? "true" : "false");
    buf_puts(b, "},\"nonce\":");
    canon_hex(b, t->nonce, 32);
    buf_puts(b, ",\"outputs\":[");
    for (size_t i = 0; i < in->outputs->count; i++) {
        if (i)
            buf_putc(b, ',');
        output_entry(b, &in->outputs->items[i]);
    }
    buf_puts(b, "],\"protocol\":\"" PROTOCOL_NAME "\",\"requestor_key\":");
    canon_cstring(b, in->requestor_text);
    buf_puts(b, ",\"signing_key\":");
    canon_hex(b, t->signing_key, 32);
    buf_puts(b, ",\"task_id\":");
    canon_hex(b, t->task_id, 16);
    buf_puts(b, ",\"termination\":");
    canon_cstring(b, in->run->termination);
    buf_puts(b, ",\"timings\":{\"duration_ms\":");
    canon_int(b, in->run->duration_ms);
    buf_puts(b, ",\"finished_at\":");
    canon_cstring(b, finished);
    buf_puts(b, ",\"started_at\":");
    canon_cstring(b, started);
    return buf_puts(b, "}}");
}

bool receipt_write(const struct receipt_input *in, const uint8_t signing_secret[64],
                   int outputs_dir, uint8_t sha256_out[32], struct failure *err)
{
    struct buf receipt, signed_doc;
    buf_init(&receipt, MAX_RECEIPT_BYTES);
    buf_init(&signed_doc, MAX_RECEIPT_BYTES + 512);
    bool ok = false;
    /* The signed message: the domain prefix, then the canonical receipt. */
    buf_puts(&receipt, SIGNATURE_DOMAIN);
    size_t prefix = receipt.len;
    if (!receipt_canonical(in, &receipt)) {
        fail(err, FAIL_INTERNAL, "the receipt is larger than %d bytes", MAX_RECEIPT_BYTES);
        goto out;
    }
    uint8_t signature[64];
    crypto_sign_detached(signature, NULL, receipt.data, receipt.len, signing_secret);
    /* {"receipt":RECEIPT,"signature":HEX128,"signing_key":HEX64}, itself canonical. */
    buf_puts(&signed_doc, "{\"receipt\":");
    buf_put(&signed_doc, receipt.data + prefix, receipt.len - prefix);
    buf_puts(&signed_doc, ",\"signature\":");
    canon_hex(&signed_doc, signature, 64);
    buf_puts(&signed_doc, ",\"signing_key\":");
    canon_hex(&signed_doc, in->transcript->signing_key, 32);
    buf_putc(&signed_doc, '}');
    if (signed_doc.failed) {
        fail(err, FAIL_INTERNAL, "out of memory for the receipt");
        goto out;
    }
    static const char tmp[] = ".receipt.json.tmp";
    (void)unlinkat(outputs_dir, tmp, 0);
    int fd = openat(outputs_dir, tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
    if (fd < 0) {
        fail(err, FAIL_SEALING, "cannot create receipt.json: %s", strerror(errno));
        goto out;
    }
    bool written = write_all(fd, signed_doc.data, signed_doc.len);
    int e = errno;
    if (close(fd) != 0 && written) {
        written = false;
        e = errno;
    }
    if (!written || renameat(outputs_dir, tmp, outputs_dir, "receipt.json") != 0) {
        fail(err, FAIL_SEALING, "cannot write receipt.json: %s", strerror(written ? errno : e));
        (void)unlinkat(outputs_dir, tmp, 0);
        goto out;
    }
    sha256_once(signed_doc.data, signed_doc.len, sha256_out);
    ok = true;
out:
    buf_free(&receipt);
    buf_free(&signed_doc);
    return ok;
}
