/* A growable byte buffer with a hard cap: documents the agent writes (frames, the receipt)
 * grow in it, and the cap turns a runaway into a typed failure instead of unbounded memory. */
#ifndef AGENT_BUF_H
#define AGENT_BUF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct buf {
    uint8_t *data;
    size_t len;
    size_t cap;
    size_t max; /* the cap; appends beyond it fail */
    bool failed; /* sticky: set by the first append that did not fit */
};

void buf_init(struct buf *b, size_t max);
void buf_free(struct buf *b);
/* Appends; false (and b->failed) when the cap or memory runs out. */
bool buf_put(struct buf *b, const void *data, size_t len);
bool buf_puts(struct buf *b, const char *s);
bool buf_putc(struct buf *b, char c);
bool buf_printf(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
