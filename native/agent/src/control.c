#include "control.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "fileio.h"

void control_init(struct control *c, int in_fd, int out_fd)
{
    c->in_fd = in_fd;
    c->out_fd = out_fd;
    c->have = 0;
    c->broken = false;
}

/* --- commands ----------------------------------------------------------------------------- */

static const char *command_name(enum command cmd)
{
    return cmd == CMD_ATTEST ? "attest" : "run";
}

static bool bad(struct failure *err, const char *what)
{
    return fail(err, FAIL_CONTROL_MESSAGE, "control frame refused: %s", what);
}

static bool string_field(const struct json_value *obj, const char *key, const char **value,
                         size_t *len, struct failure *err)
{
    const struct json_value *v = json_get(obj, key);
    if (v == NULL || v->type != JSON_STRING)
        return fail(err, FAIL_CONTROL_MESSAGE, "control frame refused: \"%s\" must be a string",
                    key);
    *value = v->string;
    *len = v->string_len;
    return true;
}

bool control_parse_command(char *text, size_t len, enum command expected,
                           struct attest_command *attest, struct failure *err)
{
    static const struct json_options frame = {
        .ascii_frame = true, .max_depth = 1, .max_values = MAX_FRAME_VALUES};
    char why[160];
    struct json_doc *doc = json_parse(text, len, &frame, why, sizeof why);
    if (doc == NULL)
        return bad(err, why);
    const struct json_value *root = json_root(doc);
    bool ok = false;
    const char *name = NULL;
    size_t name_len = 0;
    const struct json_value *cmd = json_get(root, "cmd");
    if (cmd == NULL) {
        bad(err, "a command has a \"cmd\" key");
        goto out;
    }
    if (!string_field(root, "cmd", &name, &name_len, err))
        goto out;
    if (!((name_len == 6 && memcmp(name, "attest", 6) == 0) ||
          (name_len == 3 && memcmp(name, "run", 3) == 0))) {
        bad(err, "unknown command");
        goto out;
    }
    if (strlen(command_name(expected)) != name_len ||
        memcmp(name, command_name(expected), name_len) != 0) {
        fail(err, FAIL_CONTROL_MESSAGE, "control frame refused: command \"%s\" out of order "
             "(expected \"%s\")", name_len == 3 ? "run" : "attest", command_name(expected));
        goto out;
    }
    if (expected == CMD_RUN) {
        static const char *const keys[] = {"cmd", NULL};
        if (!json_check_keys(root, keys, keys, why, sizeof why)) {
            bad(err, why);
            goto out;
        }
        ok = true;
        goto out;
    }
    static const char *const keys[] = {"cmd", "task_id", "nonce", "requestor_key", NULL};
    if (!json_check_keys(root, keys, keys, why, sizeof why)) {
        bad(err, why);
        goto out;
    }
    const char *v = NULL;
    size_t n = 0;
    if (!string_field(root, "task_id", &v, &n, err))
        goto out;
    if (!hex_decode_lower(v, n, attest->task_id, sizeof attest->task_id)) {
        bad(err, "\"task_id\" must be 32 lowercase hex characters");
        goto out;
    }
    if (!string_field(root, "nonce", &v, &n, err))
        goto out;
    if (!hex_decode_lower(v, n, attest->nonce, sizeof attest->nonce)) {
        bad(err, "\"nonce\" must be 64 lowercase hex characters");
        goto out;
    }
    if (!string_field(root, "requestor_key", &v, &n, err))
        goto out;
    if (!age_recipient_decode(v, n, attest->requestor_key)) {
        bad(err, "\"requestor_key\" must be an X25519 age recipient (age1..., lowercase Bech32)");
        goto out;
    }
    memcpy(attest->requestor_text, v, n);
    attest->requestor_text[n] = '\0';
    ok = true;
out:
    json_free(doc);
    return ok;
}

bool control_expect(struct control *c, enum command expected, struct attest_command *attest,
                    struct failure *err)
{
    size_t scanned = 0;
    while (true) {
        char *lf = memchr(c->line + scanned, '\n', c->have - scanned);
        if (lf != NULL) {
            size_t len = (size_t)(lf - c->line);
            bool ok = control_parse_command(c->line, len, expected, attest, err);
            /* Keep what followed the frame for the next command. */
            c->have -= len + 1;
            memmove(c->line, lf + 1, c->have);
            return ok;
        }
        scanned = c->have;
        if (c->have == sizeof c->line)
            return fail(err, FAIL_CONTROL_MESSAGE,
                        "control frame refused: longer than %d bytes", MAX_FRAME_BYTES);
        ssize_t n = read(c->in_fd, c->line + c->have, sizeof c->line - c->have);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return fail(err, FAIL_CONTROL_CLOSED, "cannot read standard input: %s",
                        strerror(errno));
        }
        if (n == 0)
            return fail(err, FAIL_CONTROL_CLOSED,
                        c->have ? "standard input ended inside a frame (the host is gone)"
                                : "standard input ended where the \"%s\" command was expected "
                                  "(the host is gone)",
                        command_name(expected));
        c->have += (size_t)n;
    }
}

/* --- events ------------------------------------------------------------------------------- */

void json_ascii_string(struct buf *b, const char *s, size_t len, size_t max_chars)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *u = (const unsigned char *)s;
    size_t chars = 0;
    buf_putc(b, '"');
    for (size_t i = 0; i < len && chars < max_chars; chars++) {
        unsigned char c = u[i];
        if (c >= 0x20 && c <= 0x7E) {
            if (c == '"' || c == '\\')
                buf_putc(b, '\\');
            buf_putc(b, (char)c);
            i++;
            continue;
        }
        uint32_t cp = 0xFFFD;
        size_t n = 1;
        if (c >= 0xC2 && c <= 0xF4) {
            size_t want = c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4;
            bool valid = i + want <= len;
            uint32_t v = c & (c < 0xE0 ? 0x1F : c < 0xF0 ? 0x0F : 0x07);
            for (size_t k = 1; valid && k < want; k++) {
                if ((u[i + k] & 0xC0) != 0x80)
                    valid = false;
                else
                    v = v << 6 | (u[i + k] & 0x3F);
            }
            if (valid && !(want == 3 && (v < 0x800 || (v >= 0xD800 && v <= 0xDFFF))) &&
                !(want == 4 && (v < 0x10000 || v > 0x10FFFF))) {
                cp = v;
                n = want;
            }
        } else if (c < 0x80) {
            cp = c; /* a control character or DEL */
        }
        i += n;
        uint32_t units[2] = {cp, 0};
        int count = 1;
        if (cp >= 0x10000) {
            units[0] = 0xD800 + ((cp - 0x10000) >> 10);
            units[1] = 0xDC00 + ((cp - 0x10000) & 0x3FF);
            count = 2;
        }
        for (int k = 0; k < count; k++) {
            char esc[6] = {'\\', 'u', hex[units[k] >> 12 & 15], hex[units[k] >> 8 & 15],
                           hex[units[k] >> 4 & 15], hex[units[k] & 15]};
            buf_put(b, esc, sizeof esc);
        }
    }
    buf_putc(b, '"');
}

void event_begin(struct event *e, const char *name)
{
    buf_init(&e->out, MAX_FRAME_BYTES);
    e->members = 0;
    buf_puts(&e->out, "{\"event\":");
    json_ascii_string(&e->out, name, strlen(name), SIZE_MAX);
    e->members = 1;
}

static void member(struct event *e, const char *key)
{
    buf_putc(&e->out, ',');
    json_ascii_string(&e->out, key, strlen(key), SIZE_MAX);
    buf_putc(&e->out, ':');
    e->members++;
}

void event_string(struct event *e, const char *key, const char *value)
{
    member(e, key);
    json_ascii_string(&e->out, value, strlen(value), SIZE_MAX);
}

void event_int(struct event *e, const char *key, int64_t value)
{
    member(e, key);
    buf_printf(&e->out, "%lld", (long long)value);
}

void event_bool(struct event *e, const char *key, bool value)
{
    member(e, key);
    buf_puts(&e->out, value ? "true" : "false");
}

void event_null(struct event *e, const char *key)
{
    member(e, key);
    buf_puts(&e->out, "null");
}

bool event_send(struct control *c, struct event *e)
{
    buf_puts(&e->out, "}\n");
    bool ok = !e->out.failed && !c->broken && write_all(c->out_fd, e->out.data, e->out.len);
    buf_free(&e->out);
    if (!ok)
        c->broken = true;
    return ok;
}

bool control_send_failed(struct control *c, const struct failure *err)
{
    struct event e;
    event_begin(&e, "failed");
    event_string(&e, "code", fail_code_name(err->code));
    /* Free text: at most the protocol's 1024 characters, whatever it holds. */
    const char *message = err->message[0] ? err->message : fail_code_name(err->code);
    member(&e, "message");
    json_ascii_string(&e.out, message, strlen(message), MAX_EVENT_MESSAGE);
    return event_send(c, &e);
}
