/* The control channel (protocol sections 2-4): commands in on standard input, events out on
 * standard output, one flat ASCII JSON object per line. */
#ifndef AGENT_CONTROL_H
#define AGENT_CONTROL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "encoding.h"
#include "fail.h"
#include "json.h"
#include "limits.h"

struct control {
    int in_fd, out_fd;
    size_t have; /* bytes buffered in `line` (a frame and possibly the start of the next) */
    bool broken; /* an event could not be written: the host is gone, say nothing more */
    char line[MAX_FRAME_BYTES];
};

void control_init(struct control *c, int in_fd, int out_fd);

/* --- commands ----------------------------------------------------------------------------- */

enum command { CMD_ATTEST, CMD_RUN };

struct attest_command {
    uint8_t task_id[16];
    uint8_t nonce[32];
    uint8_t requestor_key[32];
    char requestor_text[AGE_RECIPIENT_LEN + 1];
};

/* Read the next frame and check that it is the `expected` command with exactly its keys and
 * well-formed values (`attest` filled for CMD_ATTEST). Fails with control_closed at end of input
 * and control_message for any framing, order or value error. */
bool control_expect(struct control *c, enum command expected, struct attest_command *attest,
                    struct failure *err);

/* Parse one frame (without its line feed) as a command: the parser the fuzzer drives. `text` is
 * modified in place. */
bool control_parse_command(char *text, size_t len, enum command expected,
                           struct attest_command *attest, struct failure *err);

/* --- events ----------------------------------------------------------------------------------- */

struct event {
    struct buf out;
    size_t members;
};

void event_begin(struct event *e, const char *name);
void event_string(struct event *e, const char *key, const char *value);
void event_int(struct event *e, const char *key, int64_t value);
void event_bool(struct event *e, const char *key, bool value);
void event_null(struct event *e, const char *key);
/* Close the object, write the frame; false when the host is gone (c->broken is set). */
bool event_send(struct control *c, struct event *e);

/* The terminal `failed` event for `err` (message truncated to the protocol's limit). */
bool control_send_failed(struct control *c, const struct failure *err);

/* JSON string with every byte outside 0x20..0x7E escaped (UTF-8 decoded to \uXXXX, invalid
 * bytes as U+FFFD), at most `max_chars` characters: the frame-safe form of free text. */
void json_ascii_string(struct buf *b, const char *s, size_t len, size_t max_chars);

#endif
