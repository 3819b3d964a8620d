/* ASCII armor for age files (C2SP age, "ASCII armor"; RFC 7468 strict), decoded as a stream,
 * with the Python requestor's rules (golem_graphene/sealing/_internal/armor.py):
 *   - only whitespace-only lines before "-----BEGIN AGE ENCRYPTED FILE-----" and only whitespace
 *     after "-----END AGE ENCRYPTED FILE-----" (at most 1 KiB each);
 *   - no PEM headers; lines end in LF or CRLF;
 *   - data lines have 64 columns except the last, which has 1..64 and carries the padding; the
 *     base64 is canonical.
 * Every violation is an armor failure. Inputs reach the agent as binary age (the requestor
 * uploads binary), but the decoder accepts what `golem-graphene open` accepts. */
#ifndef AGENT_AGE_ARMOR_H
#define AGENT_AGE_ARMOR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "fail.h"

#define ARMOR_MAX_LINE 66 /* the longest line kept: max(len(BEGIN), 64) + CR + 1 */

struct armor {
    int state;
    size_t lineno;
    size_t whitespace;  /* whitespace bytes before BEGIN, then after END */
    bool long_blank;    /* the current line is past ARMOR_MAX_LINE and all whitespace so far */
    size_t line_len;
    uint8_t line[ARMOR_MAX_LINE + 1];
};

/* True when the first bytes of a file (after whitespace) start a PEM block. */
bool armor_detect(const uint8_t *prefix, size_t len);

void armor_init(struct armor *a);
/* Decode `len` raw bytes into out, which must hold len + ARMOR_MAX_LINE bytes (a line begun
 * in an earlier call may complete in this one). */
bool armor_feed(struct armor *a, const uint8_t *data, size_t len, uint8_t *out, size_t *out_len,
                struct failure *err);
/* End of input: the last line may lack its line feed; the END line must have been seen. out
 * must hold ARMOR_MAX_LINE bytes. */
bool armor_finish(struct armor *a, uint8_t *out, size_t *out_len, struct failure *err);

#endif
