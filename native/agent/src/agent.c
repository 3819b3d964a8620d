#include "agent.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "attest.h"
#include "control.h"
#include "encoding.h"
#include "fileio.h"
#include "inputs.h"
#include "limits.h"
#include "manifest.h"
#include "outputs.h"
#include "receipt.h"
#include "runner.h"
#include "transcript.h"
#include "workload.h"

/* Everything one conversation holds, released in one place whatever step failed. */
struct session {
    struct control control;
    struct failure err;
    struct workload workload;
    struct attest_command task;
    uint8_t enclave_priv[32];
    uint8_t signing_secret[64];
    struct transcript transcript;
    struct evidence evidence;
    struct manifest manifest;
    struct run run;
    struct output_list outputs;
    int io_fd, workspace_fd, outputs_fd;
};

static bool send_or_gone(struct session *s, struct event *e)
{
    if (!event_send(&s->control, e))
        return fail(&s->err, FAIL_CONTROL_CLOSED, "standard output is closed (the host is gone)");
    return true;
}

static bool send_ready(struct session *s)
{
    struct event e;
    event_begin(&e, "ready");
    event_int(&e, "protocol", 1);
    event_string(&e, "agent", AGENT_NAME);
    return send_or_gone(s, &e);
}

/* attest: keys from the enclave's own randomness, made only now that the task is known. */
static bool do_attest(struct session *s)
{
    if (!control_expect(&s->control, CMD_ATTEST, &s->task, &s->err))
        return false;
    struct transcript *t = &s->transcript;
    memcpy(t->task_id, s->task.task_id, 16);
    memcpy(t->nonce, s->task.nonce, 32);
    memcpy(t->requestor_key, s->task.requestor_key, 32);
    randombytes_buf(s->enclave_priv, sizeof s->enclave_priv);
    crypto_scalarmult_base(t->enclave_key, s->enclave_priv);
    crypto_sign_keypair(t->signing_key, s->signing_secret);
    uint8_t report_data[64];
    transcript_report_data(t, report_data);
    if (!attest(report_data, &s->evidence, &s->err))
        return false;
    char enclave_hex[65], signing_hex[65];
    hex_encode(t->enclave_key, 32, enclave_hex);
    hex_encode(t->signing_key, 32, signing_hex);
    struct event e;
    event_begin(&e, "evidence");
    event_string(&e, "runner", s->evidence.runner);
    event_bool(&e, "simulated", s->evidence.simulated);
    if (s->evidence.quote) {
        char *hex = malloc(2 * s->evidence.quote_len + 1);
        if (hex == NULL) {
            buf_free(&e.out);
            return fail(&s->err, FAIL_INTERNAL, "out of memory");
        }
        hex_encode(s->evidence.quote, s->evidence.quote_len, hex);
        event_string(&e, "quote", hex);
        free(hex);
    } else {
        event_null(&e, "quote");
    }
    event_string(&e, "enclave_key", enclave_hex);
    event_string(&e, "signing_key", signing_hex);
    return send_or_gone(s, &e);
}

static bool open_dir(const char *path, int *fd, const char *what, struct failure *err)
{
    *fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (*fd < 0)
        return fail(err, FAIL_INTERNAL, "cannot open the %s: %s", what, strerror(errno));
    return true;
}

/* Step 1: the sealed manifest, read bounded and without following a link. */
static bool open_manifest(struct session *s)
{
    struct stat st;
    enum open_result why;
    int error_number;
    int fd = open_regular_at(s->io_fd, "manifest.sealed", &st, &why, &error_number);
    if (fd < 0)
        return fail(&s->err, FAIL_INPUT_MANIFEST_FORMAT, "manifest.sealed %s",
                    why == OPEN_MISSING     ? "is missing"
                    : why == OPEN_ERROR     ? "cannot be opened"
                                            : "is not a regular file");
    if (st.st_size > MAX_SEALED_MANIFEST_BYTES) {
        close(fd);
        return fail(&s->err, FAIL_INPUT_MANIFEST_FORMAT,
                    "the sealed input manifest is larger than %d bytes",
                    MAX_SEALED_MANIFEST_BYTES);
    }
    char *sealed = malloc(MAX_SEALED_MANIFEST_BYTES + 1);
    if (sealed == NULL) {
        close(fd);
        return fail(&s->err, FAIL_INTERNAL, "out of memory");
    }
    ssize_t n = read_full(fd, sealed, MAX_SEALED_MANIFEST_BYTES + 1);
    close(fd);
    if (n < 0 || n > MAX_SEALED_MANIFEST_BYTES) {
        free(sealed);
        return fail(&s->err, FAIL_INPUT_MANIFEST_FORMAT,
                    n < 0 ? "manifest.sealed cannot be read"
                          : "the sealed input manifest grew past 4 MiB while it was read");
    }
    return manifest_open(sealed, (size_t)n, s->enclave_priv, &s->transcript, &s->manifest,
                         &s->err);
}

static bool send_inputs_opened(struct session *s, uint64_t bytes)
{
    struct event e;
    event_begin(&e, "inputs_opened");
    event_int(&e, "inputs", (int64_t)s->manifest.ninputs);
    event_int(&e, "bytes", (int64_t)bytes);
    return send_or_gone(s, &e);
}

static bool seal_stream(struct session *s, int fd, const char *name, struct output *o)
{
    struct stat st;
    if (fstat(fd, &st) != 0)
        return fail(&s->err, FAIL_OUTPUT_READ, "cannot stat %s: %s", name, strerror(errno));
    return output_seal_fd(s->outputs_fd, fd, (uint64_t)st.st_size, name,
                          s->transcript.requestor_key, &s->control, o, &s->err);
}

/* Steps 1-7 after `run`. */
static bool do_run(struct session *s, const char *io_dir, const char *workspace)
{
    if (!control_expect(&s->control, CMD_RUN, NULL, &s->err))
        return false;
    if (!open_dir(io_dir, &s->io_fd, "task folder", &s->err) ||
        !open_dir(workspace, &s->workspace_fd, "workspace", &s->err))
        return false;
    uint64_t bytes;
    if (!open_manifest(s) || !inputs_check_declared(&s->workload, &s->manifest, &s->err) ||
        !inputs_check_files(s->io_fd, &s->manifest, &s->err) ||
        !inputs_open(s->io_fd, s->workspace_fd, &s->manifest, s->enclave_priv, &s->control,
                     &bytes, &s->err) ||
        !send_inputs_opened(s, bytes))
        return false;
    if (!runner_start(&s->workload, &s->manifest, workspace, s->workspace_fd, &s->run, &s->err))
        return false;
    struct event e;
    event_begin(&e, "running");
    if (!send_or_gone(s, &e)) {
        (void)kill(-s->run.pid, SIGKILL);
        struct failure ignored = {0};
        (void)runner_wait(&s->workload, &s->run, &ignored);
        return false;
    }
    if (!runner_wait(&s->workload, &s->run, &s->err))
        return false;
    event_begin(&e, "sealing");
    event_int(&e, "exit_status", s->run.exit_status);
    event_string(&e, "termination", s->run.termination);
    if (!send_or_gone(s, &e))
        return false;
    s->outputs_fd = outputs_dir_open(s->io_fd, &s->err);
    if (s->outputs_fd < 0 ||
        !outputs_collect(&s->workload, s->workspace_fd, &s->outputs, &s->err) ||
        !outputs_seal(s->workspace_fd, s->outputs_fd, &s->outputs, s->transcript.requestor_key,
                      &s->control, &s->err))
        return false;
    /* The standard streams follow the declared outputs; the list has room reserved below. */
    struct output *grown = realloc(s->outputs.items, (s->outputs.count + 2) * sizeof *grown);
    if (grown == NULL)
        return fail(&s->err, FAIL_INTERNAL, "out of memory");
    s->outputs.items = grown;
    if (!seal_stream(s, s->run.stdout_fd, "stdout", &s->outputs.items[s->outputs.count]))
        return false;
    s->outputs.count++;
    if (!seal_stream(s, s->run.stderr_fd, "stderr", &s->outputs.items[s->outputs.count]))
        return false;
    s->outputs.count++;
    struct receipt_input in = {.transcript = &s->transcript,
                               .requestor_text = s->task.requestor_text,
                               .evidence = &s->evidence,
                               .manifest_sha256 = s->manifest.digest,
                               .run = &s->run,
                               .outputs = &s->outputs};
    uint8_t receipt_sha[32];
    if (!receipt_write(&in, s->signing_secret, s->outputs_fd, receipt_sha, &s->err))
        return false;
    char receipt_hex[65];
    hex_encode(receipt_sha, 32, receipt_hex);
    event_begin(&e, "outputs_sealed");
    event_int(&e, "exit_status", s->run.exit_status);
    event_string(&e, "termination", s->run.termination);
    event_int(&e, "outputs", (int64_t)s->outputs.count);
    event_string(&e, "receipt_sha256", receipt_hex);
    return send_or_gone(s, &e);
}

static void session_free(struct session *s)
{
    sodium_memzero(s->enclave_priv, sizeof s->enclave_priv);
    sodium_memzero(s->signing_secret, sizeof s->signing_secret);
    workload_free(&s->workload);
    evidence_free(&s->evidence);
    manifest_free(&s->manifest);
    output_list_free(&s->outputs);
    if (s->run.stdout_fd >= 0)
        close(s->run.stdout_fd);
    if (s->run.stderr_fd >= 0)
        close(s->run.stderr_fd);
    if (s->io_fd >= 0)
        close(s->io_fd);
    if (s->workspace_fd >= 0)
        close(s->workspace_fd);
    if (s->outputs_fd >= 0)
        close(s->outputs_fd);
}

int agent_main(int argc, char **argv)
{
    /* The host may vanish: a write to a closed pipe is an error to handle, not a signal that
     * kills us (the workload gets the default back). SIGCHLD ignored by whoever started us
     * would make the kernel reap the workload unseen: its end must be ours to read. */
    signal(SIGPIPE, SIG_IGN);
    signal(SIGCHLD, SIG_DFL);
    struct session *s = calloc(1, sizeof *s);
    if (s == NULL)
        return 1;
    s->io_fd = s->workspace_fd = s->outputs_fd = -1;
    s->run.stdout_fd = s->run.stderr_fd = -1;
    control_init(&s->control, 0, 1);
    bool ok = false;
    if (sodium_init() < 0) {
        fail(&s->err, FAIL_INTERNAL, "libsodium could not initialise");
    } else if (argc != 4 || argv[1][0] != '/' || argv[2][0] != '/' || argv[3][0] != '/') {
        fail(&s->err, FAIL_WORKLOAD_FORMAT,
             "usage: agent WORKLOAD_JSON IO_DIR WORKSPACE_DIR (three absolute paths)");
    } else if (workload_load(&s->workload, argv[1], &s->err) && send_ready(s) && do_attest(s)) {
        ok = do_run(s, argv[2], argv[3]);
    }
    if (!ok && !s->control.broken)
        (void)control_send_failed(&s->control, &s->err);
    session_free(s);
    free(s);
    return ok ? 0 : 1;
}
