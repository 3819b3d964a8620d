#include "age_source.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "limits.h"

#define SOURCE_BUF (80 * 1024)
#define RAW_PIECE (16 * 1024)
#define SNIFF_PIECE 64

bool age_source_init(struct age_source *s, int fd, struct sha256 *hash, uint64_t raw_limit,
                     struct failure *err)
{
    memset(s, 0, sizeof *s);
    s->fd = fd;
    s->hash = hash;
    s->raw_limit = raw_limit;
    s->cap = SOURCE_BUF;
    s->buf = malloc(SOURCE_BUF);
    if (s->buf == NULL)
        return fail(err, FAIL_INTERNAL, "out of memory");
    return true;
}

void age_source_free(struct age_source *s)
{
    free(s->buf);
    free(s->raw);
    s->buf = s->raw = NULL;
}

/* One read(2) of raw file bytes, hashed and counted; 0 at end of file. */
static bool raw_read(struct age_source *s, uint8_t *dst, size_t len, size_t *got,
                     struct failure *err)
{
    *got = 0;
    if (s->raw_eof || len == 0)
        return true;
    ssize_t n;
    do
        n = read(s->fd, dst, len);
    while (n < 0 && errno == EINTR);
    if (n < 0)
        return fail_age(err, AGE_CLASS_READ, "cannot read the age file: %s", strerror(errno));
    if (n == 0) {
        s->raw_eof = true;
        return true;
    }
    s->raw_total += (uint64_t)n;
    if (s->raw_total > s->raw_limit)
        return fail(err, FAIL_INPUT_SIZE, "the file grew after it was checked (%llu bytes "
                    "expected)", (unsigned long long)s->raw_limit);
    if (s->hash)
        sha256_update(s->hash, dst, (size_t)n);
    *got = (size_t)n;
    return true;
}

bool age_source_sniff(struct age_source *s, struct failure *err)
{
    /* The same probe as the requestor's: 64-byte reads until five non-whitespace bytes or more
     * than the armor's whitespace allowance have been seen. */
    uint8_t sniff[MAX_AGE_ARMOR_WHITESPACE + 2 * SNIFF_PIECE];
    size_t len = 0;
    while (len <= MAX_AGE_ARMOR_WHITESPACE) {
        size_t lead = 0;
        while (lead < len && (sniff[lead] == ' ' || (sniff[lead] >= '\t' && sniff[lead] <= '\r')))
            lead++;
        if (len - lead >= 5)
            break;
        size_t got;
        if (!raw_read(s, sniff + len, SNIFF_PIECE, &got, err))
            return false;
        if (got == 0)
            break;
        len += got;
    }
    if (armor_detect(sniff, len)) {
        s->armored = true;
        armor_init(&s->armor);
        s->raw = malloc(RAW_PIECE);
        if (s->raw == NULL)
            return fail(err, FAIL_INTERNAL, "out of memory");
        size_t out;
        if (!armor_feed(&s->armor, sniff, len, s->buf, &out, err))
            return false;
        s->end = out;
        if (s->raw_eof) {
            size_t more;
            if (!armor_finish(&s->armor, s->buf + s->end, &more, err))
                return false;
            s->end += more;
        }
        return true;
    }
    memcpy(s->buf, sniff, len);
    s->end = len;
    return true;
}

/* Append more decoded bytes to the buffer; *added is 0 only at end of input. */
static bool fill(struct age_source *s, size_t *added, struct failure *err)
{
    *added = 0;
    if (s->start > 0 && s->start == s->end)
        s->start = s->end = 0;
    if (s->cap - s->end < RAW_PIECE + ARMOR_MAX_LINE + 1) {
        memmove(s->buf, s->buf + s->start, s->end - s->start);
        s->end -= s->start;
        s->start = 0;
    }
    while (*added == 0 && !s->raw_eof) {
        size_t room = s->cap - s->end;
        size_t got;
        if (!s->armored) {
            if (!raw_read(s, s->buf + s->end, room, &got, err))
                return false;
            s->end += got;
            *added = got;
            continue;
        }
        if (!raw_read(s, s->raw, RAW_PIECE, &got, err))
            return false;
        size_t out = 0;
        if (got) {
            if (!armor_feed(&s->armor, s->raw, got, s->buf + s->end, &out, err))
                return false;
        } else if (!armor_finish(&s->armor, s->buf + s->end, &out, err)) {
            return false;
        }
        s->end += out;
        *added = out;
    }
    return true;
}

bool age_source_readline(struct age_source *s, size_t limit, const uint8_t **line, size_t *len,
                         struct failure *err)
{
    size_t scanned = 0;
    while (true) {
        size_t avail = s->end - s->start;
        size_t window = avail < limit ? avail : limit;
        const uint8_t *lf = memchr(s->buf + s->start + scanned, '\n', window - scanned);
        size_t take = 0;
        if (lf != NULL)
            take = (size_t)(lf - (s->buf + s->start)) + 1;
        else if (avail >= limit)
            take = limit;
        if (take) {
            *line = s->buf + s->start;
            *len = take;
            s->start += take;
            return true;
        }
        scanned = window;
        size_t added;
        if (!fill(s, &added, err))
            return false;
        if (added == 0) {
            *line = s->buf + s->start;
            *len = s->end - s->start;
            s->start = s->end;
            return true;
        }
    }
}

bool age_source_read(struct age_source *s, uint8_t *dst, size_t len, size_t *got,
                     struct failure *err)
{
    size_t filled = 0;
    while (filled < len) {
        size_t avail = s->end - s->start;
        if (avail) {
            size_t take = avail < len - filled ? avail : len - filled;
            memcpy(dst + filled, s->buf + s->start, take);
            s->start += take;
            filled += take;
            continue;
        }
        if (s->raw_eof)
            break;
        if (!s->armored) {
            /* Binary payload: straight into the caller's buffer, no copy. */
            size_t n;
            if (!raw_read(s, dst + filled, len - filled, &n, err))
                return false;
            filled += n;
            continue;
        }
        size_t added;
        if (!fill(s, &added, err))
            return false;
        if (added == 0)
            break;
    }
    *got = filled;
    return true;
}
