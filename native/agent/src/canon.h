/* Writers for the RFC 8785 (JCS) canonical JSON the agent hashes and signs: the input manifest
 * (its digest goes into the receipt) and the receipt. Callers emit object members in JCS order
 * (keys sorted by UTF-16 code units); these functions get the scalars byte-exact. */
#ifndef AGENT_CANON_H
#define AGENT_CANON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"

/* A string of valid UTF-8, escaped as ECMAScript's JSON.stringify does: \" \\ \b \t \n \f \r,
 * \u00xx (lowercase) for other controls, every other character as itself. */
bool canon_string(struct buf *b, const char *s, size_t len);
bool canon_cstring(struct buf *b, const char *s);
bool canon_int(struct buf *b, int64_t v);
/* Bytes as a lowercase hex string. */
bool canon_hex(struct buf *b, const uint8_t *data, size_t n);

#endif
