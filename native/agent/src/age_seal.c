#include "age_seal.h"

#include <errno.h>
#include <pthread.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "age_header.h"
#include "age_payload.h"
#include "fileio.h"
#include "sha256.h"

#define BLOCK_CHUNKS 4
#define BLOCK (BLOCK_CHUNKS * AGE_CHUNK)
#define SEALED_BLOCK (BLOCK_CHUNKS * AGE_SEALED_CHUNK)
#define SLOTS 4

enum slot_state { SLOT_FREE, SLOT_READ, SLOT_SEALED };

struct slot {
    enum slot_state state;
    uint64_t seq;
    size_t len;        /* plaintext bytes */
    size_t sealed_len; /* ciphertext bytes */
    bool last;
    uint8_t *plain;
    uint8_t *sealed;
};

struct pipeline {
    const struct seal_io *io;
    uint8_t key[32];
    struct slot slots[SLOTS];
    struct sha256 plain_hash, sealed_hash;
    uint64_t read_total;    /* plaintext bytes read (the reader's) */
    uint64_t plain_written; /* plaintext bytes whose ciphertext is written (the writer's) */
    uint64_t written_total; /* age file bytes written */
    pthread_mutex_t lock;
    pthread_cond_t changed;
    bool stop; /* a stage failed: everyone winds down */
    struct failure read_err, seal_err;
    bool read_done, seal_done;
};

/* --- the stages: each works on one slot, in sequence order --------------------------------- */

/* Read the next block; sets slot->last when the file ends with it. */
static bool stage_read(struct pipeline *p, struct slot *s, struct failure *err)
{
    const struct seal_io *io = p->io;
    uint64_t offset = p->read_total;
    uint64_t left = io->in_size - offset;
    size_t want = left < BLOCK ? (size_t)left : BLOCK;
    ssize_t n = want ? pread_full(io->in_fd, s->plain, want, (off_t)offset) : 0;
    if (n < 0)
        return fail(err, FAIL_OUTPUT_READ, "cannot read the output: %s", strerror(errno));
    if ((size_t)n != want)
        return fail(err, FAIL_OUTPUT_READ, "the output shrank while it was sealed");
    s->len = (size_t)n;
    p->read_total += (uint64_t)n;
    s->last = p->read_total == io->in_size;
    if (s->last) {
        uint8_t probe;
        ssize_t more = pread_full(io->in_fd, &probe, 1, (off_t)p->read_total);
        if (more != 0)
            return fail(err, FAIL_OUTPUT_READ, more < 0 ? "cannot read the output"
                                                        : "the output grew while it was sealed");
    }
    sha256_update(&p->plain_hash, s->plain, s->len);
    return true;
}

static void stage_seal(struct pipeline *p, struct slot *s)
{
    size_t out = 0;
    uint64_t counter = s->seq * BLOCK_CHUNKS;
    size_t pos = 0;
    do {
        size_t take = s->len - pos < AGE_CHUNK ? s->len - pos : AGE_CHUNK;
        bool last = s->last && pos + take == s->len;
        age_seal_chunk(p->key, counter++, last, s->plain + pos, take, s->sealed + out);
        out += take + AGE_TAG;
        pos += take;
    } while (pos < s->len);
    s->sealed_len = out;
}

static bool stage_write(struct pipeline *p, struct slot *s, struct failure *err)
{
    sha256_update(&p->sealed_hash, s->sealed, s->sealed_len);
    if (!write_all(p->io->out_fd, s->sealed, s->sealed_len))
        return fail(err, FAIL_SEALING, "cannot write the sealed output: %s", strerror(errno));
    p->written_total += s->sealed_len;
    p->plain_written += s->len;
    const struct seal_io *io = p->io;
    return io->progress == NULL || io->progress(io->ctx, p->plain_written, err);
}

/* --- threads ---------------------------------------------------------------------------------- */

static struct slot *wait_slot(struct pipeline *p, uint64_t seq, enum slot_state want,
                              const bool *upstream_done)
{
    struct slot *s = &p->slots[seq % SLOTS];
    while (!p->stop && !(s->state == want && (want == SLOT_FREE || s->seq == seq))) {
        if (upstream_done && *upstream_done && !(s->state == want && s->seq == seq))
            return NULL;
        pthread_cond_wait(&p->changed, &p->lock);
    }
    return p->stop ? NULL : s;
}

static void *reader(void *arg)
{
    struct pipeline *p = arg;
    pthread_mutex_lock(&p->lock);
    for (uint64_t seq = 0;; seq++) {
        struct slot *s = wait_slot(p, seq, SLOT_FREE, NULL);
        if (s == NULL)
            break;
        pthread_mutex_unlock(&p->lock);
        s->seq = seq;
        bool ok = stage_read(p, s, &p->read_err);
        pthread_mutex_lock(&p->lock);
        if (!ok) {
            p->stop = true;
            break;
        }
        s->state = SLOT_READ;
        pthread_cond_broadcast(&p->changed);
        if (s->last)
            break;
    }
    p->read_done = true;
    pthread_cond_broadcast(&p->changed);
    pthread_mutex_unlock(&p->lock);
    return NULL;
}

static void *sealer(void *arg)
{
    struct pipeline *p = arg;
    pthread_mutex_lock(&p->lock);
    for (uint64_t seq = 0;; seq++) {
        struct slot *s = wait_slot(p, seq, SLOT_READ, &p->read_done);
        if (s == NULL)
            break;
        pthread_mutex_unlock(&p->lock);
        stage_seal(p, s);
        pthread_mutex_lock(&p->lock);
        s->state = SLOT_SEALED;
        pthread_cond_broadcast(&p->changed);
        if (s->last)
            break;
    }
    p->seal_done = true;
    pthread_cond_broadcast(&p->changed);
    pthread_mutex_unlock(&p->lock);
    return NULL;
}

static bool start_thread(pthread_t *t, void *(*fn)(void *), void *arg)
{
    pthread_attr_t attr;
    if (pthread_attr_init(&attr) != 0)
        return false;
    (void)pthread_attr_setstacksize(&attr, 128 * 1024);
    bool ok = pthread_create(t, &attr, fn, arg) == 0;
    pthread_attr_destroy(&attr);
    return ok;
}

/* The writer stage on the calling thread, with the other two on their own threads. */
static bool run_threaded(struct pipeline *p, bool *started, struct failure *err)
{
    pthread_t tr, ts;
    *started = false;
    /* The sealer first: until the reader runs it only waits, so if the reader cannot start
     * nothing has been consumed and the caller can run the stages itself. */
    if (!start_thread(&ts, sealer, p))
        return true;
    if (!start_thread(&tr, reader, p)) {
        pthread_mutex_lock(&p->lock);
        p->stop = true;
        pthread_cond_broadcast(&p->changed);
        pthread_mutex_unlock(&p->lock);
        pthread_join(ts, NULL);
        p->stop = false;
        return true;
    }
    *started = true;
    bool ok = true;
    pthread_mutex_lock(&p->lock);
    for (uint64_t seq = 0;; seq++) {
        struct slot *s = wait_slot(p, seq, SLOT_SEALED, &p->seal_done);
        if (s == NULL) {
            ok = false;
            break;
        }
        pthread_mutex_unlock(&p->lock);
        bool wrote = stage_write(p, s, &p->seal_err);
        pthread_mutex_lock(&p->lock);
        if (!wrote) {
            ok = false;
            p->stop = true;
            pthread_cond_broadcast(&p->changed);
            break;
        }
        bool last = s->last;
        s->state = SLOT_FREE;
        pthread_cond_broadcast(&p->changed);
        if (last)
            break;
    }
    pthread_mutex_unlock(&p->lock);
    pthread_join(tr, NULL);
    pthread_join(ts, NULL);
    if (!ok) {
        /* The first failure in pipeline order: a read error explains a stopped writer. */
        const struct failure *f = p->read_err.code ? &p->read_err : &p->seal_err;
        if (f->code == FAIL_NONE)
            return fail(err, FAIL_INTERNAL, "the sealing pipeline stopped without a reason");
        return fail(err, f->code, "%s", f->message);
    }
    return true;
}

static bool run_inline(struct pipeline *p, struct failure *err)
{
    struct slot *s = &p->slots[0];
    for (uint64_t seq = 0;; seq++) {
        s->seq = seq;
        if (!stage_read(p, s, err))
            return false;
        stage_seal(p, s);
        if (!stage_write(p, s, err))
            return false;
        if (s->last)
            return true;
    }
}

bool age_seal(const struct seal_io *io, struct seal_result *res, struct failure *err)
{
    struct pipeline *p = calloc(1, sizeof *p);
    if (p == NULL)
        return fail(err, FAIL_INTERNAL, "out of memory");
    bool ok = false;
    p->io = io;
    size_t slots = io->threads ? SLOTS : 1;
    for (size_t i = 0; i < slots; i++) {
        p->slots[i].plain = malloc(BLOCK);
        p->slots[i].sealed = malloc(SEALED_BLOCK);
        if (p->slots[i].plain == NULL || p->slots[i].sealed == NULL) {
            fail(err, FAIL_INTERNAL, "out of memory");
            goto out;
        }
    }
    uint8_t file_key[AGE_FILE_KEY_SIZE], header[AGE_SEAL_HEADER_MAX + AGE_NONCE_SIZE];
    randombytes_buf(file_key, sizeof file_key);
    size_t hlen = age_header_seal(io->recipient, file_key, header);
    if (hlen == 0) {
        fail(err, FAIL_SEALING, "the requestor key is a low-order X25519 point");
        goto out;
    }
    randombytes_buf(header + hlen, AGE_NONCE_SIZE);
    age_payload_key(p->key, file_key, header + hlen);
    sodium_memzero(file_key, sizeof file_key);
    hlen += AGE_NONCE_SIZE;
    sha256_init(&p->plain_hash);
    sha256_init(&p->sealed_hash);
    sha256_update(&p->sealed_hash, header, hlen);
    if (!write_all(io->out_fd, header, hlen)) {
        fail(err, FAIL_SEALING, "cannot write the sealed output: %s", strerror(errno));
        goto out;
    }
    p->written_total = hlen;
    bool threaded = false;
    if (io->threads) {
        pthread_mutex_init(&p->lock, NULL);
        pthread_cond_init(&p->changed, NULL);
        bool done = run_threaded(p, &threaded, err);
        pthread_cond_destroy(&p->changed);
        pthread_mutex_destroy(&p->lock);
        if (threaded && !done)
            goto out;
    }
    if (!threaded && !run_inline(p, err))
        goto out;
    res->size = p->read_total;
    res->ciphertext_size = p->written_total;
    sha256_final(&p->plain_hash, res->plaintext_sha256);
    sha256_final(&p->sealed_hash, res->ciphertext_sha256);
    ok = true;
out:
    sodium_memzero(p->key, sizeof p->key);
    for (size_t i = 0; i < SLOTS; i++) {
        if (p->slots[i].plain)
            sodium_memzero(p->slots[i].plain, BLOCK);
        free(p->slots[i].plain);
        free(p->slots[i].sealed);
    }
    free(p);
    return ok;
}
