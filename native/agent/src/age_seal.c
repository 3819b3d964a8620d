#include "age_seal.h"

#include <errno.h>
#include <pthread.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "age_header.h"
#include "age_payload.h"
#include "fileio.h"
#include "sha256.h"

#define BLOCK_CHUNKS 8
#define BLOCK (BLOCK_CHUNKS * AGE_CHUNK)
#define SEALED_BLOCK (BLOCK_CHUNKS * AGE_SEALED_CHUNK)
#define SLOTS 4

/* A slot moves through the stages in order and back to FREE. Two stages of about equal cost
 * (read + encrypt, hash both streams + write) keep two cores busy; large blocks keep system
 * calls and wake-ups few (each is an enclave exit under SGX). */
enum slot_state { SLOT_FREE, SLOT_SEALED };
#define STAGES 2

struct slot {
    enum slot_state state;
    uint64_t seq;
    size_t len;        /* plaintext bytes */
    size_t sealed_len; /* ciphertext bytes */
    bool last;
    uint8_t *plain;
    uint8_t *sealed;
};

struct pipeline;

struct stage {
    enum slot_state from, to;
    bool (*work)(struct pipeline *p, struct slot *s, struct failure *err);
    bool done;           /* finished its last slot, or stopped */
    struct failure err;  /* why it stopped */
};

struct pipeline {
    const struct seal_io *io;
    uint8_t key[32];
    struct slot slots[SLOTS];
    struct stage stages[STAGES];
    struct sha256 plain_hash, sealed_hash;
    uint64_t read_total;    /* plaintext bytes read (the reader's) */
    uint64_t plain_written; /* plaintext bytes whose ciphertext is written (the writer's) */
    uint64_t written_total; /* age file bytes written (the writer's) */
    pthread_mutex_t lock;
    pthread_cond_t ready[STAGES]; /* a slot entered stage i's input state, or a stop */
    bool stop; /* a stage failed: everyone winds down */
};

/* --- the stages: read, seal, hash, write; each sequential, on one slot at a time ----------- */

/* Read the next block; the file must end exactly where it ended when it was opened. */
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
    return true;
}

static void seal_block(struct pipeline *p, struct slot *s)
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

static bool stage_read_seal(struct pipeline *p, struct slot *s, struct failure *err)
{
    if (!stage_read(p, s, err))
        return false;
    seal_block(p, s);
    return true;
}

/* Both digests in one pass (the two streams interleave on the SHA unit), then the write. */
static bool stage_hash_write(struct pipeline *p, struct slot *s, struct failure *err)
{
    sha256_update2(&p->plain_hash, s->plain, s->len, &p->sealed_hash, s->sealed, s->sealed_len);
    if (!write_all(p->io->out_fd, s->sealed, s->sealed_len))
        return fail(err, FAIL_SEALING, "cannot write the sealed output: %s", strerror(errno));
    p->written_total += s->sealed_len;
    p->plain_written += s->len;
    const struct seal_io *io = p->io;
    return io->progress == NULL || io->progress(io->ctx, p->plain_written, err);
}

/* --- threads ---------------------------------------------------------------------------------- */

struct worker {
    struct pipeline *p;
    size_t index;
};

/* Run one stage over every slot in sequence order until the last one (or a stop). */
static bool run_stage(struct pipeline *p, size_t index)
{
    struct stage *st = &p->stages[index];
    const struct stage *up = index ? &p->stages[index - 1] : NULL;
    bool ok = true;
    pthread_mutex_lock(&p->lock);
    for (uint64_t seq = 0;; seq++) {
        struct slot *s = &p->slots[seq % SLOTS];
        /* The slot is ours when it reached our input state for this sequence number (a free
         * slot is any sequence's). Upstream done without it means upstream stopped. */
        while (!p->stop && !(s->state == st->from && (st->from == SLOT_FREE || s->seq == seq))) {
            if (up && up->done) {
                ok = false;
                break;
            }
            pthread_cond_wait(&p->ready[index], &p->lock);
        }
        if (p->stop || !ok) {
            ok = false;
            break;
        }
        pthread_mutex_unlock(&p->lock);
        if (st->from == SLOT_FREE)
            s->seq = seq;
        bool worked = st->work(p, s, &st->err);
        pthread_mutex_lock(&p->lock);
        if (!worked) {
            ok = false;
            p->stop = true;
            break;
        }
        bool last = s->last;
        s->state = st->to;
        /* Only the stage that takes the slot next can be waiting for it. */
        pthread_cond_signal(&p->ready[(index + 1) % STAGES]);
        if (last)
            break;
    }
    st->done = true;
    for (size_t i = 0; i < STAGES; i++)
        pthread_cond_broadcast(&p->ready[i]);
    pthread_mutex_unlock(&p->lock);
    return ok;
}

static void *stage_thread(void *arg)
{
    struct worker *w = arg;
    (void)run_stage(w->p, w->index);
    return NULL;
}

static bool start_thread(pthread_t *t, struct worker *w)
{
#ifdef AGENT_TEST_BUILD
    /* Test build only: refuse the Nth thread, as an enclave without free thread slots does. */
    static int started;
    const char *refuse = getenv("GG_AGENT_TEST_REFUSE_THREAD");
    if (refuse != NULL && ++started == atoi(refuse))
        return false;
#endif
    pthread_attr_t attr;
    if (pthread_attr_init(&attr) != 0)
        return false;
    (void)pthread_attr_setstacksize(&attr, 128 * 1024);
    bool ok = pthread_create(t, &attr, stage_thread, w) == 0;
    pthread_attr_destroy(&attr);
    return ok;
}

static void stop_all(struct pipeline *p)
{
    pthread_mutex_lock(&p->lock);
    p->stop = true;
    for (size_t i = 0; i < STAGES; i++)
        pthread_cond_broadcast(&p->ready[i]);
    pthread_mutex_unlock(&p->lock);
}

/* Every stage but the last on its own thread, the last (hash + write) on the calling thread.
 * Threads start from the last stage backwards: until the reader runs nothing is consumed, so if
 * a thread cannot be started the caller can still run the stages inline. */
static bool run_threaded(struct pipeline *p, bool *started, struct failure *err)
{
    pthread_t threads[STAGES - 1];
    struct worker workers[STAGES - 1];
    size_t running = 0;
    *started = false;
    for (size_t i = STAGES - 1; i-- > 0;) {
        workers[i] = (struct worker){p, i};
        if (!start_thread(&threads[i], &workers[i])) {
            stop_all(p);
            for (size_t j = i + 1; j < STAGES - 1; j++)
                pthread_join(threads[j], NULL);
            p->stop = false;
            for (size_t j = 0; j < STAGES; j++)
                p->stages[j].done = false;
            return true;
        }
        running++;
    }
    *started = true;
    bool ok = run_stage(p, STAGES - 1);
    if (!ok)
        stop_all(p);
    for (size_t i = 0; i < running; i++)
        pthread_join(threads[i], NULL);
    if (!ok) {
        /* The first failure in pipeline order: a read error explains a stopped writer. */
        for (size_t i = 0; i < STAGES; i++)
            if (p->stages[i].err.code != FAIL_NONE)
                return fail(err, p->stages[i].err.code, "%s", p->stages[i].err.message);
        return fail(err, FAIL_INTERNAL, "the sealing pipeline stopped without a reason");
    }
    return true;
}

static bool run_inline(struct pipeline *p, struct failure *err)
{
    struct slot *s = &p->slots[0];
    for (uint64_t seq = 0;; seq++) {
        s->seq = seq;
        for (size_t i = 0; i < STAGES; i++)
            if (!p->stages[i].work(p, s, err))
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
    p->stages[0] = (struct stage){.from = SLOT_FREE, .to = SLOT_SEALED, .work = stage_read_seal};
    p->stages[1] = (struct stage){.from = SLOT_SEALED, .to = SLOT_FREE, .work = stage_hash_write};
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
        for (size_t i = 0; i < STAGES; i++)
            pthread_cond_init(&p->ready[i], NULL);
        bool done = run_threaded(p, &threaded, err);
        for (size_t i = 0; i < STAGES; i++)
            pthread_cond_destroy(&p->ready[i]);
        pthread_mutex_destroy(&p->lock);
        if (threaded && !done)
            goto out;
        if (!threaded) /* for the operator's log: slower, and why */
            fprintf(stderr, "golem-graphene-agent: sealing on one thread (no thread could be "
                            "started)\n");
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
