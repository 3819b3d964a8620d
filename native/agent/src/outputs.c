#include "outputs.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fileio.h"
#include "names.h"

void output_list_free(struct output_list *list)
{
    free(list->items);
    list->items = NULL;
    list->count = 0;
}

static bool declared(const struct workload *w, const char *name)
{
    /* Patterns match names only: anything else the workload left is not an output. */
    return name_valid(name, strlen(name)) && workload_declares_output(w, name);
}

static int by_name(const void *a, const void *b)
{
    return strcmp(((const struct output *)a)->name, ((const struct output *)b)->name);
}

static bool reserved(const char *name)
{
    return strcmp(name, "stdout") == 0 || strcmp(name, "stderr") == 0 ||
           strcmp(name, "receipt.json") == 0;
}

bool outputs_collect(const struct workload *w, int workspace_fd, struct output_list *out,
                     struct failure *err)
{
    out->items = NULL;
    out->count = 0;
    /* The receipt holds at most MAX_TASK_FILES declared outputs whatever the spec allows. */
    size_t limit = w->max_outputs < MAX_TASK_FILES ? (size_t)w->max_outputs : MAX_TASK_FILES;
    int dir_fd = openat(workspace_fd, "outputs", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (dir_fd < 0 && errno == ENOENT)
        return true; /* the workload removed the folder: it left no outputs */
    if (dir_fd < 0)
        return fail(err, FAIL_OUTPUT_READ,
                    "the workspace's outputs folder cannot be opened (replaced by a link?): %s",
                    strerror(errno));
    DIR *dir = fdopendir(dir_fd);
    if (dir == NULL) {
        close(dir_fd);
        return fail(err, FAIL_OUTPUT_READ, "cannot list the outputs folder: %s",
                    strerror(errno));
    }
    bool ok = false;
    size_t allocated = 0;
    /* Pass 1 counts (no memory grows with what the workload left), pass 2 collects. */
    for (int pass = 1; pass <= 2; pass++) {
        size_t count = 0;
        rewinddir(dir);
        while (true) {
            errno = 0;
            struct dirent *d = readdir(dir);
            if (d == NULL) {
                if (errno) {
                    fail(err, FAIL_OUTPUT_READ, "cannot list the outputs folder: %s",
                         strerror(errno));
                    goto out;
                }
                break;
            }
            if (!declared(w, d->d_name))
                continue;
            if (++count > limit) {
                fail(err, FAIL_TOO_MANY_OUTPUTS,
                     "the workload left more declared outputs than max_outputs (%zu)", limit);
                goto out;
            }
            if (pass == 2 && out->count == allocated) {
                fail(err, FAIL_OUTPUT_READ, "the outputs folder changed while it was listed");
                goto out;
            }
            if (pass == 2) /* a valid name: at most MAX_NAME_LEN bytes */
                memcpy(out->items[out->count++].name, d->d_name, strlen(d->d_name) + 1);
        }
        if (pass == 1) {
            allocated = count;
            out->items = calloc(count ? count : 1, sizeof *out->items);
            if (out->items == NULL) {
                fail(err, FAIL_INTERNAL, "out of memory");
                goto out;
            }
        }
    }
    qsort(out->items, out->count, sizeof *out->items, by_name);
    uint64_t total = 0;
    for (size_t i = 0; i < out->count; i++) {
        const char *name = out->items[i].name;
        struct stat st;
        if (fstatat(dir_fd, name, &st, AT_SYMLINK_NOFOLLOW) != 0) {
            fail(err, FAIL_OUTPUT_READ, "output \"%s\": cannot stat: %s", name, strerror(errno));
            goto out;
        }
        if (S_ISLNK(st.st_mode)) {
            fail(err, FAIL_OUTPUT_SYMLINK,
                 "output \"%s\" is a symbolic link; outputs must be regular files", name);
            goto out;
        }
        if (!S_ISREG(st.st_mode)) {
            fail(err, FAIL_OUTPUT_NOT_REGULAR,
                 "output \"%s\" is not a regular file (folder, FIFO or device)", name);
            goto out;
        }
        if (st.st_nlink != 1) {
            fail(err, FAIL_OUTPUT_HARD_LINK,
                 "output \"%s\" has more than one link; outputs must be regular files", name);
            goto out;
        }
        if (reserved(name)) {
            fail(err, FAIL_OUTPUT_RESERVED, "output name \"%s\" is reserved", name);
            goto out;
        }
        total += (uint64_t)st.st_size;
        if (total > (uint64_t)w->output_size) {
            fail(err, FAIL_OUTPUT_TOO_LARGE,
                 "output \"%s\" takes the outputs over the spec's output_size (%lld bytes)",
                 name, (long long)w->output_size);
            goto out;
        }
    }
    ok = true;
out:
    closedir(dir);
    if (!ok)
        output_list_free(out);
    return ok;
}

int outputs_dir_open(int io_fd, struct failure *err)
{
    if (mkdirat(io_fd, "outputs", 0755) != 0 && errno != EEXIST) {
        fail(err, FAIL_SEALING, "cannot create the outputs folder: %s", strerror(errno));
        return -1;
    }
    int fd = openat(io_fd, "outputs", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        fail(err, FAIL_SEALING, "the outputs folder is not a folder: %s", strerror(errno));
    return fd;
}

struct sealing {
    struct control *control;
    const char *name;
    uint64_t total;
    uint64_t next_report;
};

static bool seal_progress(void *ctx, uint64_t done, struct failure *err)
{
    struct sealing *s = ctx;
    if (done < s->next_report || done == s->total)
        return true;
    s->next_report = done + PROGRESS_STEP_BYTES;
    struct event e;
    event_begin(&e, "progress");
    event_string(&e, "phase", "sealing");
    event_string(&e, "name", s->name);
    event_int(&e, "bytes_done", (int64_t)done);
    event_int(&e, "bytes_total", (int64_t)s->total);
    if (!event_send(s->control, &e))
        return fail(err, FAIL_CONTROL_CLOSED, "standard output is closed (the host is gone)");
    return true;
}

bool output_seal_fd(int outputs_dir, int fd, uint64_t size, const char *name,
                    const uint8_t recipient[32], struct control *c, struct output *o,
                    struct failure *err)
{
    char final_name[MAX_NAME_LEN + 8], tmp_name[MAX_NAME_LEN + 16];
    (void)snprintf(final_name, sizeof final_name, "%s.age", name);
    (void)snprintf(tmp_name, sizeof tmp_name, ".%s.age.tmp", name);
    if (name != o->name)
        (void)snprintf(o->name, sizeof o->name, "%s", name);
    (void)unlinkat(outputs_dir, tmp_name, 0);
    int out = openat(outputs_dir, tmp_name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
                     0644);
    if (out < 0)
        return fail(err, FAIL_SEALING, "cannot create %s: %s", final_name, strerror(errno));
    struct sealing s = {.control = c, .name = name, .total = size,
                        .next_report = PROGRESS_STEP_BYTES};
    struct seal_io io = {.in_fd = fd, .in_size = size, .out_fd = out, .recipient = recipient,
                         .progress = seal_progress, .ctx = &s, .threads = true};
    bool ok = age_seal(&io, &o->sealed, err);
    if (close(out) != 0 && ok)
        ok = fail(err, FAIL_SEALING, "cannot write %s: %s", final_name, strerror(errno));
    if (ok && renameat(outputs_dir, tmp_name, outputs_dir, final_name) != 0)
        ok = fail(err, FAIL_SEALING, "cannot move %s into place: %s", final_name,
                  strerror(errno));
    if (!ok) {
        (void)unlinkat(outputs_dir, tmp_name, 0);
        return false;
    }
    struct event e;
    event_begin(&e, "progress");
    event_string(&e, "phase", "sealing");
    event_string(&e, "name", name);
    event_int(&e, "bytes_done", (int64_t)o->sealed.size);
    event_int(&e, "bytes_total", (int64_t)size);
    if (!event_send(c, &e))
        return fail(err, FAIL_CONTROL_CLOSED, "standard output is closed (the host is gone)");
    return true;
}

bool outputs_seal(int workspace_fd, int outputs_dir, struct output_list *list,
                  const uint8_t recipient[32], struct control *c, struct failure *err)
{
    if (list->count == 0)
        return true;
    int dir_fd = openat(workspace_fd, "outputs", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (dir_fd < 0)
        return fail(err, FAIL_OUTPUT_READ, "cannot open the workspace's outputs folder: %s",
                    strerror(errno));
    bool ok = true;
    for (size_t i = 0; ok && i < list->count; i++) {
        struct output *o = &list->items[i];
        struct stat st;
        enum open_result why;
        int error_number;
        int fd = open_regular_at(dir_fd, o->name, &st, &why, &error_number);
        if (fd < 0) {
            if (why == OPEN_LINK)
                ok = fail(err, FAIL_OUTPUT_SYMLINK, "output \"%s\" is a symbolic link", o->name);
            else if (why == OPEN_NOT_REGULAR)
                ok = fail(err, FAIL_OUTPUT_NOT_REGULAR, "output \"%s\" is not a regular file",
                          o->name);
            else
                ok = fail(err, FAIL_OUTPUT_READ, "output \"%s\": cannot open: %s", o->name,
                          why == OPEN_MISSING ? "it vanished" : strerror(error_number));
            break;
        }
        if (st.st_nlink != 1) {
            close(fd);
            ok = fail(err, FAIL_OUTPUT_HARD_LINK, "output \"%s\" has more than one link",
                      o->name);
            break;
        }
        ok = output_seal_fd(outputs_dir, fd, (uint64_t)st.st_size, o->name, recipient, c, o, err);
        close(fd);
    }
    close(dir_fd);
    return ok;
}
