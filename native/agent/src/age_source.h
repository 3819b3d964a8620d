/* The bytes of an age file as the decryptor reads them: header lines first, then the payload in
 * large reads, with ASCII armor detected from the first bytes and removed transparently (as the
 * Python requestor's SyncSource does). The raw file bytes can be hashed as they are read, so the
 * agent can check that it decrypted exactly the ciphertext the manifest names. */
#ifndef AGENT_AGE_SOURCE_H
#define AGENT_AGE_SOURCE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "age_armor.h"
#include "fail.h"
#include "sha256.h"

struct age_source {
    int fd;
    bool raw_eof;
    bool armored;
    struct armor armor;
    uint8_t *buf; /* decoded bytes [start, end) */
    size_t start, end, cap;
    uint8_t *raw; /* armored reads land here before decoding */
    struct sha256 *hash; /* optional: SHA-256 of every raw byte read */
    uint64_t raw_total;
    uint64_t raw_limit; /* reading more raw bytes than this fails (input_size): the file grew */
};

bool age_source_init(struct age_source *s, int fd, struct sha256 *hash, uint64_t raw_limit,
                     struct failure *err);
void age_source_free(struct age_source *s);

/* Look at the first bytes and switch to armor decoding if they start a PEM block. */
bool age_source_sniff(struct age_source *s, struct failure *err);

/* The next line with its LF, at most `limit` bytes (shorter only at end of input). The bytes
 * stay valid until the next call. */
bool age_source_readline(struct age_source *s, size_t limit, const uint8_t **line, size_t *len,
                         struct failure *err);

/* Fill `len` bytes of dst unless the input ends first; *got is the number stored. */
bool age_source_read(struct age_source *s, uint8_t *dst, size_t len, size_t *got,
                     struct failure *err);

#endif
