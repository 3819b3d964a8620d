#include "encoding.h"

#include <string.h>

static const char HEX[] = "0123456789abcdef";

void hex_encode(const uint8_t *in, size_t n, char *out)
{
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = HEX[in[i] >> 4];
        out[2 * i + 1] = HEX[in[i] & 15];
    }
    out[2 * n] = '\0';
}

static int hex_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1; /* uppercase is refused: the protocol's hex is lowercase */
}

bool hex_decode_lower(const char *text, size_t text_len, uint8_t *out, size_t n)
{
    if (text_len != 2 * n)
        return false;
    for (size_t i = 0; i < n; i++) {
        int hi = hex_value(text[2 * i]);
        int lo = hex_value(text[2 * i + 1]);
        if (hi < 0 || lo < 0)
            return false;
        out[i] = (uint8_t)(hi << 4 | lo);
    }
    return true;
}

/* --- base64 ---------------------------------------------------------------------------------- */

static const char B64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static int b64_value(uint8_t c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+')
        return 62;
    if (c == '/')
        return 63;
    return -1;
}

bool b64_is_alphabet(const uint8_t *text, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if (b64_value(text[i]) < 0)
            return false;
    return true;
}

size_t b64_unpadded_len(size_t n)
{
    return n / 3 * 4 + (n % 3 ? n % 3 + 1 : 0);
}

size_t b64_encode_unpadded(const uint8_t *in, size_t n, char *out)
{
    size_t o = 0, i = 0;
    for (; i + 3 <= n; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
        out[o++] = B64[v >> 18 & 63];
        out[o++] = B64[v >> 12 & 63];
        out[o++] = B64[v >> 6 & 63];
        out[o++] = B64[v & 63];
    }
    if (n - i == 1) {
        uint32_t v = (uint32_t)in[i] << 16;
        out[o++] = B64[v >> 18 & 63];
        out[o++] = B64[v >> 12 & 63];
    } else if (n - i == 2) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8;
        out[o++] = B64[v >> 18 & 63];
        out[o++] = B64[v >> 12 & 63];
        out[o++] = B64[v >> 6 & 63];
    }
    return o;
}

size_t b64_encode_padded(const uint8_t *in, size_t n, char *out)
{
    size_t o = b64_encode_unpadded(in, n, out);
    while (o % 4)
        out[o++] = '=';
    return o;
}

/* Decode len (not 1 mod 4) alphabet characters; the unused low bits of the last character must
 * be zero, or two texts would decode to the same bytes. Writes are behind reads: out may alias. */
static bool decode_groups(const uint8_t *text, size_t len, uint8_t *out, size_t *out_len)
{
    if (len % 4 == 1)
        return false;
    size_t o = 0, i = 0;
    for (; i + 4 <= len; i += 4) {
        int a = b64_value(text[i]), b = b64_value(text[i + 1]);
        int c = b64_value(text[i + 2]), d = b64_value(text[i + 3]);
        if ((a | b | c | d) < 0)
            return false;
        uint32_t v = (uint32_t)a << 18 | (uint32_t)b << 12 | (uint32_t)c << 6 | (uint32_t)d;
        out[o++] = (uint8_t)(v >> 16);
        out[o++] = (uint8_t)(v >> 8);
        out[o++] = (uint8_t)v;
    }
    size_t rest = len - i;
    if (rest == 2) {
        int a = b64_value(text[i]), b = b64_value(text[i + 1]);
        if ((a | b) < 0 || (b & 15) != 0)
            return false;
        out[o++] = (uint8_t)(a << 2 | b >> 4);
    } else if (rest == 3) {
        int a = b64_value(text[i]), b = b64_value(text[i + 1]), c = b64_value(text[i + 2]);
        if ((a | b | c) < 0 || (c & 3) != 0)
            return false;
        out[o++] = (uint8_t)(a << 2 | b >> 4);
        out[o++] = (uint8_t)((b & 15) << 4 | c >> 2);
    }
    *out_len = o;
    return true;
}

bool b64_decode_unpadded(const uint8_t *text, size_t len, uint8_t *out, size_t *out_len)
{
    return decode_groups(text, len, out, out_len);
}

bool b64_decode_padded(const uint8_t *text, size_t len, uint8_t *out, size_t *out_len)
{
    if (len % 4 != 0)
        return false;
    size_t pad = 0;
    if (len >= 1 && text[len - 1] == '=')
        pad++;
    if (len >= 2 && text[len - 2] == '=')
        pad++;
    /* Any other '=' is not in the alphabet, so decode_groups refuses it. */
    return decode_groups(text, len - pad, out, out_len);
}

/* --- Bech32 (BIP 173), as age uses it ---------------------------------------------------- */

static const char BECH32[] = "qpzry9x8gf2tvdw0s3jn54khce6mua7l";

static uint32_t polymod_step(uint32_t chk, uint8_t value)
{
    static const uint32_t GEN[5] = {0x3b6a57b2, 0x26508e6d, 0x1ea119fa, 0x3d4233dd, 0x2a1462b3};
    uint32_t top = chk >> 25;
    chk = (chk & 0x1ffffff) << 5 ^ value;
    for (int i = 0; i < 5; i++)
        if (top >> i & 1)
            chk ^= GEN[i];
    return chk;
}

static uint32_t hrp_polymod(const char *hrp, size_t n)
{
    uint32_t chk = 1;
    for (size_t i = 0; i < n; i++)
        chk = polymod_step(chk, (uint8_t)((uint8_t)hrp[i] >> 5));
    chk = polymod_step(chk, 0);
    for (size_t i = 0; i < n; i++)
        chk = polymod_step(chk, (uint8_t)(hrp[i] & 31));
    return chk;
}

static int bech32_value(char c)
{
    const char *p = c ? strchr(BECH32, c) : NULL;
    return p ? (int)(p - BECH32) : -1;
}

/* "age1" + 52 data characters (32 bytes in 5-bit groups) + 6 checksum characters. */
#define RECIPIENT_DATA_CHARS 52

bool age_recipient_decode(const char *text, size_t len, uint8_t key[32])
{
    if (len != AGE_RECIPIENT_LEN || memcmp(text, "age1", 4) != 0)
        return false;
    uint32_t chk = hrp_polymod("age", 3);
    uint32_t acc = 0;
    unsigned bits = 0;
    size_t o = 0;
    for (size_t i = 4; i < len; i++) {
        int v = bech32_value(text[i]); /* uppercase is not in the alphabet: refused */
        if (v < 0)
            return false;
        chk = polymod_step(chk, (uint8_t)v);
        if (i >= 4 + RECIPIENT_DATA_CHARS)
            continue; /* checksum characters */
        acc = acc << 5 | (uint32_t)v;
        bits += 5;
        if (bits >= 8) {
            bits -= 8;
            if (o < 32)
                key[o] = (uint8_t)(acc >> bits);
            o++;
            acc &= (1u << bits) - 1;
        }
    }
    /* 52 * 5 = 260 bits: 32 bytes and 4 leftover bits, which must be zero padding. */
    return chk == 1 && o == 32 && bits == 4 && acc == 0;
}

void age_recipient_encode(const uint8_t key[32], char out[AGE_RECIPIENT_LEN + 1])
{
    uint8_t values[RECIPIENT_DATA_CHARS + 6];
    size_t n = 0;
    uint32_t acc = 0;
    unsigned bits = 0;
    for (size_t i = 0; i < 32; i++) {
        acc = acc << 8 | key[i];
        bits += 8;
        while (bits >= 5) {
            bits -= 5;
            values[n++] = (uint8_t)(acc >> bits & 31);
        }
        acc &= (1u << bits) - 1;
    }
    values[n++] = (uint8_t)(acc << (5 - bits) & 31);
    uint32_t chk = hrp_polymod("age", 3);
    for (size_t i = 0; i < n; i++)
        chk = polymod_step(chk, values[i]);
    for (int i = 0; i < 6; i++)
        chk = polymod_step(chk, 0);
    chk ^= 1;
    for (int i = 0; i < 6; i++)
        values[n++] = (uint8_t)(chk >> (5 * (5 - i)) & 31);
    memcpy(out, "age1", 4);
    for (size_t i = 0; i < n; i++)
        out[4 + i] = BECH32[values[i]];
    out[4 + n] = '\0';
}
