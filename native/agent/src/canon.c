#include "canon.h"

#include <string.h>

#include "encoding.h"

bool canon_string(struct buf *b, const char *s, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    buf_putc(b, '"');
    size_t start = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c != '"' && c != '\\')
            continue;
        buf_put(b, s + start, i - start);
        start = i + 1;
        switch (c) {
        case '"':
            buf_puts(b, "\\\"");
            break;
        case '\\':
            buf_puts(b, "\\\\");
            break;
        case '\b':
            buf_puts(b, "\\b");
            break;
        case '\t':
            buf_puts(b, "\\t");
            break;
        case '\n':
            buf_puts(b, "\\n");
            break;
        case '\f':
            buf_puts(b, "\\f");
            break;
        case '\r':
            buf_puts(b, "\\r");
            break;
        default: {
            char esc[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
            buf_put(b, esc, sizeof esc);
        }
        }
    }
    buf_put(b, s + start, len - start);
    return buf_putc(b, '"');
}

bool canon_cstring(struct buf *b, const char *s)
{
    return canon_string(b, s, strlen(s));
}

bool canon_int(struct buf *b, int64_t v)
{
    return buf_printf(b, "%lld", (long long)v);
}

bool canon_hex(struct buf *b, const uint8_t *data, size_t n)
{
    char text[2 * 64 + 1];
    buf_putc(b, '"');
    while (n) {
        size_t take = n > 64 ? 64 : n;
        hex_encode(data, take, text);
        buf_put(b, text, 2 * take);
        data += take;
        n -= take;
    }
    return buf_putc(b, '"');
}
