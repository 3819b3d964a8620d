#include "age_seal.h"

#include <errno.h>
#include <pthread.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "age_header.h"
#include "age_payload.h"
#include "fileio.h"
#include "sha256.h"

#define BLOCK_CHUNKS 8
#define BLOCK (BLOCK_CHUNKS * AGE_CHUNK)
#define SEALED_BLOCK (BLOCK_CHUNKS * AGE_SEALED_CHUNK)
/* One worker per online CPU, at most this many: past it the serial hashing (both digests) is the
 * bound, near 1.5 GB/s of plaintext with the SHA extensions. */
#define MAX_WORKERS 4

/* Workers take blocks in turn: each reads and encrypts its block on its own, then waits for its
 * block's turn to feed both digests (SHA-256 is sequential, so blocks are hashed in order),
 * passes the turn on and writes its block at its offset. Everything but the hashing runs in
 * parallel, and the hashing of one block overlaps the others' reading, encrypting and writing. */
struct pipeline {
    const struct seal_io *io;
    uint8_t key[32];
    uint64_t header_len;
    uint64_t blocks; /* at least one: an empty file has one empty final chunk */
    pthread_mutex_t lock;
    pthread_cond_t turn_changed;
    uint64_t next_block;    /* the next block a worker takes */
    uint64_t turn;          /* the block whose digests are due */
    bool stop;              /* a worker failed: the others wind down */
    struct failure err;     /* the first failure */
    struct sha256 plain_hash, sealed_hash; /* fed by the turn's holder only */
    uint64_t plain_done, sealed_done;      /* likewise */
};

struct worker {
    struct pipeline *p;
    uint8_t *plain;  /* plain_cap bytes */
    uint8_t *sealed; /* sealed_cap bytes */
};

/* Read block `seq`; the file must end exactly where it ended when it was opened. */
static bool read_block(struct pipeline *p, uint64_t seq, uint8_t *plain, size_t *len,
                       struct failure *err)
{
    const struct seal_io *io = p->io;
    uint64_t offset = seq * BLOCK;
    uint64_t left = io->in_size - offset;
    size_t want = left < BLOCK ? (size_t)left : BLOCK;
    ssize_t n = want ? pread_full(io->in_fd, plain, want, (off_t)offset) : 0;
    if (n < 0)
        return fail(err, FAIL_OUTPUT_READ, "cannot read the output: %s", strerror(errno));
    if ((size_t)n != want)
        return fail(err, FAIL_OUTPUT_READ, "the output shrank while it was sealed");
    if (seq + 1 == p->blocks) {
        uint8_t probe;
        ssize_t more = pread_full(io->in_fd, &probe, 1, (off_t)io->in_size);
        if (more != 0)
            return fail(err, FAIL_OUTPUT_READ, more < 0 ? "cannot read the output"
                                                        : "the output grew while it was sealed");
    }
    *len = (size_t)n;
    return true;
}

static size_t seal_block(const struct pipeline *p, uint64_t seq, const uint8_t *plain, size_t len,
                         uint8_t *sealed)
{
    bool final_block = seq + 1 == p->blocks;
    uint64_t counter = seq * BLOCK_CHUNKS;
    size_t out = 0, pos = 0;
    do {
        size_t take = len - pos < AGE_CHUNK ? len - pos : AGE_CHUNK;
        bool last = final_block && pos + take == len;
        age_seal_chunk(p->key, counter++, last, plain + pos, take, sealed + out);
        out += take + AGE_TAG;
        pos += take;
    } while (pos < len);
    return out;
}

static void stop_with(struct pipeline *p, const struct failure *f)
{
    pthread_mutex_lock(&p->lock);
    if (!p->stop) {
        p->stop = true;
        p->err = *f;
    }
    pthread_cond_broadcast(&p->turn_changed);
    pthread_mutex_unlock(&p->lock);
}

static void *work(void *arg)
{
    struct worker *w = arg;
    struct pipeline *p = w->p;
    const struct seal_io *io = p->io;
    struct failure err = {0};
    while (true) {
        pthread_mutex_lock(&p->lock);
        uint64_t seq = p->next_block++;
        bool stop = p->stop;
        pthread_mutex_unlock(&p->lock);
        if (stop || seq >= p->blocks)
            return NULL;
        size_t len = 0;
        if (!read_block(p, seq, w->plain, &len, &err)) {
            stop_with(p, &err);
            return NULL;
        }
        size_t sealed_len = seal_block(p, seq, w->plain, len, w->sealed);
        pthread_mutex_lock(&p->lock);
        while (p->turn != seq && !p->stop)
            pthread_cond_wait(&p->turn_changed, &p->lock);
        stop = p->stop;
        pthread_mutex_unlock(&p->lock);
        if (stop)
            return NULL;
        /* Our turn: the digests see the blocks in file order; progress is reported in order. */
        sha256_update2(&p->plain_hash, w->plain, len, &p->sealed_hash, w->sealed, sealed_len);
        p->plain_done += len;
        p->sealed_done += sealed_len;
        bool reported = io->progress == NULL || io->progress(io->ctx, p->plain_done, &err);
        pthread_mutex_lock(&p->lock);
        p->turn++;
        pthread_cond_broadcast(&p->turn_changed);
        pthread_mutex_unlock(&p->lock);
        if (!reported) {
            stop_with(p, &err);
            return NULL;
        }
        /* Every block but the last is full, so each has a fixed place in the file. */
        off_t at = (off_t)(p->header_len + seq * SEALED_BLOCK);
        if (!pwrite_all(io->out_fd, w->sealed, sealed_len, at)) {
            fail(&err, FAIL_SEALING, "cannot write the sealed output: %s", strerror(errno));
            stop_with(p, &err);
            return NULL;
        }
    }
}

static bool start_thread(pthread_t *t, struct worker *w)
{
#ifdef AGENT_TEST_BUILD
    /* Test build only: refuse the Nth thread and any later one, as an enclave without free
     * thread slots does. */
    static int started;
    const char *refuse = getenv("GG_AGENT_TEST_REFUSE_THREAD");
    if (refuse != NULL && ++started >= atoi(refuse))
        return false;
#endif
    pthread_attr_t attr;
    if (pthread_attr_init(&attr) != 0)
        return false;
    (void)pthread_attr_setstacksize(&attr, 128 * 1024);
    bool ok = pthread_create(t, &attr, work, w) == 0;
    pthread_attr_destroy(&attr);
    return ok;
}

bool age_seal(const struct seal_io *io, struct seal_result *res, struct failure *err)
{
    struct pipeline *p = calloc(1, sizeof *p);
    struct worker workers[MAX_WORKERS] = {{0}};
    pthread_t threads[MAX_WORKERS];
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    size_t nworkers = 1;
    if (io->threads && cpus > 1)
        nworkers = cpus > MAX_WORKERS ? MAX_WORKERS : (size_t)cpus;
    size_t started = 0;
    bool ok = false;
    if (p == NULL)
        return fail(err, FAIL_INTERNAL, "out of memory");
    p->io = io;
    p->blocks = io->in_size == 0 ? 1 : (io->in_size + BLOCK - 1) / BLOCK;
    /* No more workers than blocks, and a file of one block gets buffers of its size: the
     * standard streams and most outputs of a short task are a few bytes, and a thread started
     * and joined, or a megabyte mapped and zeroed, would cost more than sealing them. */
    if (nworkers > p->blocks)
        nworkers = (size_t)p->blocks;
    size_t plain_cap = BLOCK, sealed_cap = SEALED_BLOCK;
    if (p->blocks == 1) {
        plain_cap = io->in_size ? (size_t)io->in_size : 1;
        sealed_cap = (size_t)io->in_size + (plain_cap + AGE_CHUNK - 1) / AGE_CHUNK * AGE_TAG;
    }
    for (size_t i = 0; i < nworkers; i++) {
        workers[i] = (struct worker){p, malloc(plain_cap), malloc(sealed_cap)};
        if (workers[i].plain == NULL || workers[i].sealed == NULL) {
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
    p->header_len = hlen;
    sha256_init(&p->plain_hash);
    sha256_init(&p->sealed_hash);
    sha256_update(&p->sealed_hash, header, hlen);
    if (!write_all(io->out_fd, header, hlen)) {
        fail(err, FAIL_SEALING, "cannot write the sealed output: %s", strerror(errno));
        goto out;
    }
    pthread_mutex_init(&p->lock, NULL);
    pthread_cond_init(&p->turn_changed, NULL);
    /* The calling thread is worker 0; blocks are taken, not assigned, so fewer threads than
     * planned (an enclave short of thread slots) only make it slower. */
    for (size_t i = 1; i < nworkers; i++)
        if (start_thread(&threads[i], &workers[i]))
            started++;
    if (io->threads && started + 1 < nworkers) /* for the operator's log: slower, and why */
        fprintf(stderr, "golem-graphene-agent: sealing on %zu thread(s) of %zu (no more could "
                        "be started)\n", started + 1, nworkers);
    (void)work(&workers[0]);
    for (size_t i = 1; i <= started; i++)
        pthread_join(threads[i], NULL);
    pthread_cond_destroy(&p->turn_changed);
    pthread_mutex_destroy(&p->lock);
    if (p->stop) {
        fail(err, p->err.code, "%s", p->err.message);
        goto out;
    }
    res->size = p->plain_done;
    res->ciphertext_size = p->header_len + p->sealed_done;
    sha256_final(&p->plain_hash, res->plaintext_sha256);
    sha256_final(&p->sealed_hash, res->ciphertext_sha256);
    ok = true;
out:
    sodium_memzero(p->key, sizeof p->key);
    for (size_t i = 0; i < MAX_WORKERS; i++) {
        if (workers[i].plain)
            sodium_memzero(workers[i].plain, plain_cap);
        free(workers[i].plain);
        free(workers[i].sealed);
    }
    free(p);
    return ok;
}
