#include "inputs.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "age_decrypt.h"
#include "fileio.h"
#include "limits.h"
#include "sha256.h"

#define HASH_READ (1024 * 1024)

bool inputs_check_declared(const struct workload *w, const struct manifest *m,
                           struct failure *err)
{
    for (size_t i = 0; i < m->ninputs; i++) {
        const struct manifest_input *e = &m->inputs[i];
        const struct input_decl *d = workload_input(w, e->name);
        if (d == NULL)
            return fail(err, FAIL_INPUT_UNDECLARED,
                        "input \"%s\" is not declared by the task spec", e->name);
        if (e->size > d->max_size)
            return fail(err, FAIL_INPUT_TOO_LARGE,
                        "input \"%s\" exceeds its size limit (%lld bytes > max_size %lld)",
                        e->name, (long long)e->size, (long long)d->max_size);
    }
    for (size_t i = 0; i < w->ninputs; i++) {
        if (!w->inputs[i].required)
            continue;
        bool present = false;
        for (size_t j = 0; j < m->ninputs && !present; j++)
            present = strcmp(m->inputs[j].name, w->inputs[i].name) == 0;
        if (!present)
            return fail(err, FAIL_INPUT_REQUIRED,
                        "the required input \"%s\" is missing from the manifest",
                        w->inputs[i].name);
    }
    return true;
}

/* --- step 2 ---------------------------------------------------------------------------------- */

struct expected {
    char file[MAX_NAME_LEN + 5]; /* <name>.age */
    const struct manifest_input *entry;
};

static int by_file(const void *a, const void *b)
{
    return strcmp(((const struct expected *)a)->file, ((const struct expected *)b)->file);
}

/* A host-chosen file name is echoed only when it is short printable ASCII. */
static const char *printable(const char *name)
{
    size_t n = strlen(name);
    if (n == 0 || n > 200)
        return NULL;
    for (size_t i = 0; i < n; i++)
        if (name[i] < 0x21 || name[i] > 0x7E || name[i] == '"' || name[i] == '\\')
            return NULL;
    return name;
}

static bool hash_input(int dir_fd, const struct expected *x, uint8_t *buffer,
                       struct failure *err)
{
    const struct manifest_input *e = x->entry;
    struct stat st;
    if (fstatat(dir_fd, x->file, &st, AT_SYMLINK_NOFOLLOW) != 0) {
        if (errno == ENOENT)
            return fail(err, FAIL_INPUT_MISSING, "input \"%s\": %s is missing", e->name, x->file);
        return fail(err, FAIL_INPUT_READ, "input \"%s\": cannot stat %s: %s", e->name, x->file,
                    strerror(errno));
    }
    if (!S_ISREG(st.st_mode))
        return fail(err, FAIL_INPUT_NOT_REGULAR,
                    "input \"%s\": %s is not a regular file (link, folder, FIFO or device)",
                    e->name, x->file);
    if (st.st_size != e->ciphertext_size)
        return fail(err, FAIL_INPUT_SIZE,
                    "input \"%s\": the ciphertext size differs from the manifest (%lld, "
                    "expected %lld)", e->name, (long long)st.st_size,
                    (long long)e->ciphertext_size);
    enum open_result why;
    int error_number;
    int fd = open_regular_at(dir_fd, x->file, &st, &why, &error_number);
    if (fd < 0) {
        if (why == OPEN_MISSING)
            return fail(err, FAIL_INPUT_MISSING, "input \"%s\": %s is missing", e->name, x->file);
        if (why == OPEN_ERROR)
            return fail(err, FAIL_INPUT_READ, "input \"%s\": cannot open %s: %s", e->name,
                        x->file, strerror(error_number));
        return fail(err, FAIL_INPUT_NOT_REGULAR, "input \"%s\": %s is not a regular file",
                    e->name, x->file);
    }
    struct sha256 h;
    sha256_init(&h);
    uint64_t total = 0;
    bool ok = true;
    while (true) {
        ssize_t n = read_full(fd, buffer, HASH_READ);
        if (n < 0) {
            ok = fail(err, FAIL_INPUT_READ, "input \"%s\": cannot read %s: %s", e->name, x->file,
                      strerror(errno));
            break;
        }
        if (n == 0)
            break;
        sha256_update(&h, buffer, (size_t)n);
        total += (uint64_t)n;
        if (total > (uint64_t)e->ciphertext_size) {
            ok = fail(err, FAIL_INPUT_SIZE, "input \"%s\": %s changed while it was read",
                      e->name, x->file);
            break;
        }
    }
    close(fd);
    uint8_t digest[32];
    sha256_final(&h, digest);
    if (!ok)
        return false;
    if (total != (uint64_t)e->ciphertext_size)
        return fail(err, FAIL_INPUT_SIZE, "input \"%s\": %s changed while it was read", e->name,
                    x->file);
    if (sodium_memcmp(digest, e->ciphertext_sha256, 32) != 0)
        return fail(err, FAIL_INPUT_SHA256,
                    "input \"%s\": the ciphertext SHA-256 differs from the manifest", e->name);
    return true;
}

bool inputs_check_files(int io_fd, const struct manifest *m, struct failure *err)
{
    int dir_fd = openat(io_fd, "inputs", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (dir_fd < 0)
        return fail(err, FAIL_INPUT_READ, "cannot open the inputs folder: %s", strerror(errno));
    struct expected *want = calloc(m->ninputs ? m->ninputs : 1, sizeof *want);
    uint8_t *buffer = malloc(HASH_READ);
    DIR *dir = NULL;
    bool ok = false;
    if (want == NULL || buffer == NULL) {
        fail(err, FAIL_INTERNAL, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < m->ninputs; i++) {
        (void)snprintf(want[i].file, sizeof want[i].file, "%s.age", m->inputs[i].name);
        want[i].entry = &m->inputs[i];
    }
    qsort(want, m->ninputs, sizeof *want, by_file);
    /* Every entry must be expected. The first extra one in name order is reported, found with
     * one name of memory whatever the host put there. */
    int list_fd = dup(dir_fd);
    dir = list_fd >= 0 ? fdopendir(list_fd) : NULL;
    if (dir == NULL) {
        if (list_fd >= 0)
            close(list_fd);
        fail(err, FAIL_INPUT_READ, "cannot list the inputs folder: %s", strerror(errno));
        goto out;
    }
    char extra[256] = "";
    bool have_extra = false;
    while (true) {
        errno = 0;
        struct dirent *d = readdir(dir);
        if (d == NULL) {
            if (errno != 0) {
                fail(err, FAIL_INPUT_READ, "cannot list the inputs folder: %s", strerror(errno));
                goto out;
            }
            break;
        }
        if (strcmp(d->d_name, ".") == 0 || strcmp(d->d_name, "..") == 0)
            continue;
        struct expected key;
        size_t len = strlen(d->d_name);
        if (len < sizeof key.file) {
            memcpy(key.file, d->d_name, len + 1);
            if (bsearch(&key, want, m->ninputs, sizeof *want, by_file) != NULL)
                continue;
        }
        if (!have_extra || strcmp(d->d_name, extra) < 0) {
            (void)snprintf(extra, sizeof extra, "%s", d->d_name);
            have_extra = true;
        }
    }
    if (have_extra) {
        const char *shown = printable(extra);
        fail(err, FAIL_INPUT_EXTRA, "inputs/%s%s%s is not an input the manifest lists",
             shown ? "\"" : "(a file with an unprintable name)", shown ? shown : "",
             shown ? "\"" : "");
        goto out;
    }
    for (size_t i = 0; i < m->ninputs; i++)
        if (!hash_input(dir_fd, &want[i], buffer, err))
            goto out;
    ok = true;
out:
    if (dir)
        closedir(dir);
    close(dir_fd);
    free(want);
    free(buffer);
    return ok;
}

/* --- step 3 ---------------------------------------------------------------------------------- */

struct opening {
    struct control *control;
    const char *name;
    int out_fd;
    uint64_t total;
    uint64_t next_report;
};

static bool write_plain(void *ctx, const uint8_t *data, size_t len, struct failure *err)
{
    struct opening *o = ctx;
    if (!write_all(o->out_fd, data, len))
        return fail_age(err, AGE_CLASS_WRITE, "cannot write input \"%s\" to the workspace: %s",
                        o->name, strerror(errno));
    return true;
}

static bool progress(struct control *c, const char *phase, const char *name, uint64_t done,
                     uint64_t total, struct failure *err)
{
    struct event e;
    event_begin(&e, "progress");
    event_string(&e, "phase", phase);
    event_string(&e, "name", name);
    event_int(&e, "bytes_done", (int64_t)done);
    event_int(&e, "bytes_total", (int64_t)total);
    if (!event_send(c, &e))
        return fail(err, FAIL_CONTROL_CLOSED, "standard output is closed (the host is gone)");
    return true;
}

static bool input_progress(void *ctx, uint64_t done, struct failure *err)
{
    struct opening *o = ctx;
    if (done < o->next_report || done == o->total)
        return true; /* the final report comes once the input is complete */
    o->next_report = done + PROGRESS_STEP_BYTES;
    return progress(o->control, "inputs", o->name, done, o->total, err);
}

static bool open_one(int in_dir, int out_dir, const struct manifest_input *e,
                     const uint8_t enclave_priv[32], struct control *c, struct failure *err)
{
    char file[MAX_NAME_LEN + 5];
    (void)snprintf(file, sizeof file, "%s.age", e->name);
    struct stat st;
    enum open_result why;
    int error_number;
    int fd = open_regular_at(in_dir, file, &st, &why, &error_number);
    if (fd < 0) {
        if (why == OPEN_MISSING)
            return fail(err, FAIL_INPUT_MISSING, "input \"%s\": %s is missing", e->name, file);
        if (why == OPEN_ERROR)
            return fail(err, FAIL_INPUT_READ, "input \"%s\": cannot open %s: %s", e->name, file,
                        strerror(error_number));
        return fail(err, FAIL_INPUT_NOT_REGULAR, "input \"%s\": %s is not a regular file",
                    e->name, file);
    }
    int out = openat(out_dir, e->name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
                     0600);
    if (out < 0) {
        close(fd);
        return fail(err, FAIL_INTERNAL, "cannot create input \"%s\" in the workspace: %s",
                    e->name, strerror(errno));
    }
    struct opening o = {.control = c, .name = e->name, .out_fd = out,
                        .total = (uint64_t)e->size, .next_report = PROGRESS_STEP_BYTES};
    struct sha256 raw;
    sha256_init(&raw);
    struct age_decrypt_io io = {.write = write_plain, .ctx = &o, .progress = input_progress,
                                .raw_hash = &raw, .raw_limit = (uint64_t)e->ciphertext_size,
                                .max_plaintext = (uint64_t)e->size};
    uint8_t identity[1][32];
    memcpy(identity[0], enclave_priv, 32);
    uint64_t size;
    bool ok = age_decrypt(fd, (const uint8_t(*)[32])identity, 1, &io, &size, err);
    sodium_memzero(identity, sizeof identity);
    close(fd);
    uint8_t digest[32];
    sha256_final(&raw, digest);
    if (ok && size != (uint64_t)e->size)
        ok = fail(err, FAIL_INPUT_SIZE,
                  "input \"%s\": the decrypted size differs from the manifest (%llu, expected "
                  "%lld)", e->name, (unsigned long long)size, (long long)e->size);
    if (ok && sodium_memcmp(digest, e->ciphertext_sha256, 32) != 0)
        ok = fail(err, FAIL_INPUT_SHA256,
                  "input \"%s\": the ciphertext changed after it was checked", e->name);
    if (close(out) != 0 && ok)
        ok = fail(err, FAIL_INTERNAL, "cannot write input \"%s\" to the workspace: %s", e->name,
                  strerror(errno));
    if (!ok) {
        (void)unlinkat(out_dir, e->name, 0);
        return false;
    }
    return progress(c, "inputs", e->name, size, size, err);
}

bool inputs_open(int io_fd, int workspace_fd, const struct manifest *m,
                 const uint8_t enclave_priv[32], struct control *c, uint64_t *total,
                 struct failure *err)
{
    *total = 0;
    if (mkdirat(workspace_fd, "inputs", 0700) != 0 && errno != EEXIST)
        return fail(err, FAIL_INTERNAL, "cannot create the workspace's inputs folder: %s",
                    strerror(errno));
    int in_dir = openat(io_fd, "inputs", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (in_dir < 0)
        return fail(err, FAIL_INPUT_READ, "cannot open the inputs folder: %s", strerror(errno));
    int out_dir = openat(workspace_fd, "inputs", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (out_dir < 0) {
        close(in_dir);
        return fail(err, FAIL_INTERNAL, "cannot open the workspace's inputs folder: %s",
                    strerror(errno));
    }
    bool ok = true;
    for (size_t i = 0; i < m->ninputs && ok; i++) {
        ok = open_one(in_dir, out_dir, &m->inputs[i], enclave_priv, c, err);
        if (ok)
            *total += (uint64_t)m->inputs[i].size;
    }
    close(in_dir);
    close(out_dir);
    return ok;
}
