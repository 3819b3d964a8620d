#include "age_armor.h"

#include <string.h>

#include "encoding.h"
#include "limits.h"

static const char BEGIN[] = "-----BEGIN AGE ENCRYPTED FILE-----";
static const char END[] = "-----END AGE ENCRYPTED FILE-----";

enum { BEFORE, DATA, EXPECT_END, AFTER };

static bool whitespace(uint8_t c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\v' || c == '\f';
}

bool armor_detect(const uint8_t *prefix, size_t len)
{
    size_t i = 0;
    while (i < len && whitespace(prefix[i]))
        i++;
    return len - i >= 5 && memcmp(prefix + i, "-----", 5) == 0;
}

void armor_init(struct armor *a)
{
    memset(a, 0, sizeof *a);
    a->state = BEFORE;
}

static bool all_whitespace(const uint8_t *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!whitespace(s[i]))
            return false;
    return true;
}

/* One complete line (without its LF; `raw_len` counts a trailing CR). */
static bool line(struct armor *a, const uint8_t *raw, size_t raw_len, uint8_t *out,
                 size_t *out_len, struct failure *err)
{
    a->lineno++;
    size_t len = raw_len && raw[raw_len - 1] == '\r' ? raw_len - 1 : raw_len;
    if (a->state == BEFORE) {
        if (all_whitespace(raw, len)) {
            a->whitespace += raw_len + 1;
            if (a->whitespace > MAX_AGE_ARMOR_WHITESPACE)
                return fail_age(err, AGE_CLASS_ARMOR, "too much whitespace before the armor");
            return true;
        }
        if (len != sizeof BEGIN - 1 || memcmp(raw, BEGIN, len) != 0)
            return fail_age(err, AGE_CLASS_ARMOR, "armor line %zu: expected the BEGIN line",
                            a->lineno);
        a->state = DATA;
        a->whitespace = 0;
        return true;
    }
    if (len == sizeof END - 1 && memcmp(raw, END, len) == 0) {
        a->state = AFTER;
        return true;
    }
    if (a->state == EXPECT_END)
        return fail_age(err, AGE_CLASS_ARMOR,
                        "armor line %zu: expected the END line after a short line", a->lineno);
    if (len == 0 || len > 64)
        return fail_age(err, AGE_CLASS_ARMOR, "armor line %zu: data lines have 1 to 64 columns",
                        a->lineno);
    size_t n;
    if (!b64_decode_padded(raw, len, out + *out_len, &n))
        return fail_age(err, AGE_CLASS_ARMOR, "armor line %zu: not canonical base64", a->lineno);
    *out_len += n;
    if (n < 48)
        a->state = EXPECT_END; /* the short (padded) line is the last one */
    return true;
}

bool armor_feed(struct armor *a, const uint8_t *data, size_t len, uint8_t *out, size_t *out_len,
                struct failure *err)
{
    *out_len = 0;
    for (size_t i = 0; i < len; i++) {
        uint8_t c = data[i];
        if (a->state == AFTER) {
            if (!whitespace(c))
                return fail_age(err, AGE_CLASS_ARMOR, "data after the END line of the armor");
            if (++a->whitespace > MAX_AGE_ARMOR_WHITESPACE)
                return fail_age(err, AGE_CLASS_ARMOR, "too much whitespace after the armor");
            continue;
        }
        if (c == '\n') {
            if (a->long_blank) {
                a->whitespace += a->line_len + 1;
                a->long_blank = false;
                a->line_len = 0;
                a->lineno++;
                if (a->whitespace > MAX_AGE_ARMOR_WHITESPACE)
                    return fail_age(err, AGE_CLASS_ARMOR, "too much whitespace before the armor");
                continue;
            }
            if (!line(a, a->line, a->line_len, out, out_len, err))
                return false;
            a->line_len = 0;
            continue;
        }
        if (a->long_blank) {
            if (!whitespace(c))
                return fail_age(err, AGE_CLASS_ARMOR, "armor line %zu is too long", a->lineno + 1);
            a->line_len++;
            continue;
        }
        if (a->line_len == ARMOR_MAX_LINE) {
            /* No armor line is that long; a blank line before BEGIN may be (it only counts
             * towards the whitespace bound). */
            if (a->state == BEFORE && whitespace(c) && all_whitespace(a->line, a->line_len)) {
                a->long_blank = true;
                a->line_len++;
                continue;
            }
            return fail_age(err, AGE_CLASS_ARMOR, "armor line %zu is too long", a->lineno + 1);
        }
        a->line[a->line_len++] = c;
    }
    return true;
}

bool armor_finish(struct armor *a, uint8_t *out, size_t *out_len, struct failure *err)
{
    *out_len = 0;
    if (a->state != AFTER && a->long_blank) {
        a->whitespace += a->line_len;
        if (a->whitespace > MAX_AGE_ARMOR_WHITESPACE)
            return fail_age(err, AGE_CLASS_ARMOR, "too much whitespace before the armor");
    } else if (a->state != AFTER && a->line_len) {
        if (!line(a, a->line, a->line_len, out, out_len, err))
            return false;
    }
    a->line_len = 0;
    if (a->state != AFTER)
        return fail_age(err, AGE_CLASS_ARMOR, "the armored file ends without the END line");
    return true;
}
