#include "sha256.h"

#include <cpuid.h>
#include <immintrin.h>
#include <string.h>

static const uint32_t K[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4,
    0xab1c5ed5, 0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe,
    0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f,
    0x4a7484aa, 0x5cb0a9dc, 0x76f988da, 0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7,
    0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc,
    0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b,
    0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070, 0x19a4c116,
    0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7,
    0xc67178f2,
};

static const uint32_t H0[8] = {
    0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
};

static int fast_state = -1; /* -1: not probed yet */
static bool forced_portable;

bool sha256_fast_available(void)
{
    if (fast_state < 0) {
        unsigned a, b, c, d;
        bool ok = false;
        /* SHA (leaf 7 EBX bit 29) plus the SSSE3 byte shuffle and SSE4.1 blend we use. */
        if (__get_cpuid(1, &a, &b, &c, &d) && (c & bit_SSSE3) && (c & bit_SSE4_1) &&
            __get_cpuid_count(7, 0, &a, &b, &c, &d) && (b & bit_SHA))
            ok = true;
        fast_state = ok;
    }
    return fast_state == 1 && !forced_portable;
}

void sha256_force_portable(bool portable)
{
    forced_portable = portable;
}

/* The SHA-NI compression of `blocks` 64-byte blocks. The instructions keep the state as two
 * vectors, ABEF and CDGH (in their lane order), and do two rounds per sha256rnds2; the message
 * schedule W[16..63] comes from sha256msg1/sha256msg2 four words at a time:
 *   M[g] = msg2(msg1(M[g-4], M[g-3]) + alignr(M[g-1], M[g-2], 4), M[g-1])   (g = 4..15). */
__attribute__((target("sha,sse4.1,ssse3"))) static void
compress_shani(uint32_t h[8], const uint8_t *data, size_t blocks)
{
    const __m128i bswap = _mm_set_epi64x(0x0c0d0e0f08090a0bLL, 0x0405060700010203LL);
    __m128i t = _mm_loadu_si128((const __m128i *)(const void *)&h[0]);  /* A B C D */
    __m128i s1 = _mm_loadu_si128((const __m128i *)(const void *)&h[4]); /* E F G H */
    t = _mm_shuffle_epi32(t, 0xB1);                                     /* B A D C */
    s1 = _mm_shuffle_epi32(s1, 0x1B);                                   /* H G F E */
    __m128i s0 = _mm_alignr_epi8(t, s1, 8);                             /* F E B A */
    s1 = _mm_blend_epi16(s1, t, 0xF0);                                  /* H G D C */

    for (; blocks; blocks--, data += 64) {
        const __m128i save0 = s0, save1 = s1;
        __m128i m[4], msg;
#define ROUNDS(g)                                                                                \
    do {                                                                                         \
        if ((g) >= 4)                                                                            \
            m[(g) & 3] = _mm_sha256msg2_epu32(                                                   \
                _mm_add_epi32(_mm_sha256msg1_epu32(m[(g) & 3], m[((g) + 1) & 3]),                \
                              _mm_alignr_epi8(m[((g) + 3) & 3], m[((g) + 2) & 3], 4)),           \
                m[((g) + 3) & 3]);                                                               \
        msg = _mm_add_epi32(m[(g) & 3],                                                          \
                            _mm_loadu_si128((const __m128i *)(const void *)&K[4 * (g)]));        \
        s1 = _mm_sha256rnds2_epu32(s1, s0, msg);                                                 \
        s0 = _mm_sha256rnds2_epu32(s0, s1, _mm_shuffle_epi32(msg, 0x0E));                        \
    } while (0)
        for (int i = 0; i < 4; i++)
            m[i] = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(const void *)(data + 16 * i)),
                                    bswap);
        ROUNDS(0);
        ROUNDS(1);
        ROUNDS(2);
        ROUNDS(3);
        ROUNDS(4);
        ROUNDS(5);
        ROUNDS(6);
        ROUNDS(7);
        ROUNDS(8);
        ROUNDS(9);
        ROUNDS(10);
        ROUNDS(11);
        ROUNDS(12);
        ROUNDS(13);
        ROUNDS(14);
        ROUNDS(15);
#undef ROUNDS
        s0 = _mm_add_epi32(s0, save0);
        s1 = _mm_add_epi32(s1, save1);
    }

    t = _mm_shuffle_epi32(s0, 0x1B);     /* A B E F */
    s1 = _mm_shuffle_epi32(s1, 0xB1);    /* G H C D */
    s0 = _mm_blend_epi16(t, s1, 0xF0);   /* A B C D */
    s1 = _mm_alignr_epi8(s1, t, 8);      /* E F G H */
    _mm_storeu_si128((__m128i *)(void *)&h[0], s0);
    _mm_storeu_si128((__m128i *)(void *)&h[4], s1);
}

/* Two independent streams at once: each stream's rounds depend on the previous ones, so one
 * stream leaves the SHA unit idle between dependent instructions; interleaving a second
 * stream's rounds fills those gaps (the plaintext and ciphertext digests of sealing). */
__attribute__((target("sha,sse4.1,ssse3"))) static void
compress_shani_x2(uint32_t ha[8], const uint8_t *da, uint32_t hb[8], const uint8_t *db,
                  size_t blocks)
{
    const __m128i bswap = _mm_set_epi64x(0x0c0d0e0f08090a0bLL, 0x0405060700010203LL);
    __m128i a0, a1, b0, b1, t;
#define LOAD_STATE(h, s0, s1)                                                                    \
    do {                                                                                         \
        t = _mm_shuffle_epi32(_mm_loadu_si128((const __m128i *)(const void *)&(h)[0]), 0xB1);    \
        s1 = _mm_shuffle_epi32(_mm_loadu_si128((const __m128i *)(const void *)&(h)[4]), 0x1B);   \
        s0 = _mm_alignr_epi8(t, s1, 8);                                                          \
        s1 = _mm_blend_epi16(s1, t, 0xF0);                                                       \
    } while (0)
#define STORE_STATE(h, s0, s1)                                                                   \
    do {                                                                                         \
        t = _mm_shuffle_epi32(s0, 0x1B);                                                         \
        s1 = _mm_shuffle_epi32(s1, 0xB1);                                                        \
        s0 = _mm_blend_epi16(t, s1, 0xF0);                                                       \
        s1 = _mm_alignr_epi8(s1, t, 8);                                                          \
        _mm_storeu_si128((__m128i *)(void *)&(h)[0], s0);                                        \
        _mm_storeu_si128((__m128i *)(void *)&(h)[4], s1);                                        \
    } while (0)
    LOAD_STATE(ha, a0, a1);
    LOAD_STATE(hb, b0, b1);
    for (; blocks; blocks--, da += 64, db += 64) {
        const __m128i sa0 = a0, sa1 = a1, sb0 = b0, sb1 = b1;
        __m128i ma[4], mb[4], xa, xb;
        for (int i = 0; i < 4; i++) {
            ma[i] = _mm_shuffle_epi8(
                _mm_loadu_si128((const __m128i *)(const void *)(da + 16 * i)), bswap);
            mb[i] = _mm_shuffle_epi8(
                _mm_loadu_si128((const __m128i *)(const void *)(db + 16 * i)), bswap);
        }
#define SCHEDULE(m, g)                                                                           \
    m[(g) & 3] = _mm_sha256msg2_epu32(                                                           \
        _mm_add_epi32(_mm_sha256msg1_epu32(m[(g) & 3], m[((g) + 1) & 3]),                        \
                      _mm_alignr_epi8(m[((g) + 3) & 3], m[((g) + 2) & 3], 4)),                   \
        m[((g) + 3) & 3])
#define ROUNDS2(g)                                                                               \
    do {                                                                                         \
        if ((g) >= 4) {                                                                          \
            SCHEDULE(ma, g);                                                                     \
            SCHEDULE(mb, g);                                                                     \
        }                                                                                        \
        const __m128i k = _mm_loadu_si128((const __m128i *)(const void *)&K[4 * (g)]);           \
        xa = _mm_add_epi32(ma[(g) & 3], k);                                                      \
        xb = _mm_add_epi32(mb[(g) & 3], k);                                                      \
        a1 = _mm_sha256rnds2_epu32(a1, a0, xa);                                                  \
        b1 = _mm_sha256rnds2_epu32(b1, b0, xb);                                                  \
        a0 = _mm_sha256rnds2_epu32(a0, a1, _mm_shuffle_epi32(xa, 0x0E));                         \
        b0 = _mm_sha256rnds2_epu32(b0, b1, _mm_shuffle_epi32(xb, 0x0E));                         \
    } while (0)
        ROUNDS2(0);
        ROUNDS2(1);
        ROUNDS2(2);
        ROUNDS2(3);
        ROUNDS2(4);
        ROUNDS2(5);
        ROUNDS2(6);
        ROUNDS2(7);
        ROUNDS2(8);
        ROUNDS2(9);
        ROUNDS2(10);
        ROUNDS2(11);
        ROUNDS2(12);
        ROUNDS2(13);
        ROUNDS2(14);
        ROUNDS2(15);
#undef ROUNDS2
#undef SCHEDULE
        a0 = _mm_add_epi32(a0, sa0);
        a1 = _mm_add_epi32(a1, sa1);
        b0 = _mm_add_epi32(b0, sb0);
        b1 = _mm_add_epi32(b1, sb1);
    }
    STORE_STATE(ha, a0, a1);
    STORE_STATE(hb, b0, b1);
#undef LOAD_STATE
#undef STORE_STATE
}

/* Complete a stream's partial block from `p`; returns the bytes taken. */
static size_t top_up(struct sha256 *s, const uint8_t *p, size_t len)
{
    if (s->buffered == 0)
        return 0;
    size_t take = 64 - s->buffered < len ? 64 - s->buffered : len;
    memcpy(s->block + s->buffered, p, take);
    s->buffered += take;
    s->total += take;
    if (s->buffered == 64) {
        compress_shani(s->h, s->block, 1);
        s->buffered = 0;
    }
    return take;
}

void sha256_update2(struct sha256 *a, const void *data_a, size_t len_a, struct sha256 *b,
                    const void *data_b, size_t len_b)
{
    if (!a->fast || !b->fast) {
        sha256_update(a, data_a, len_a);
        sha256_update(b, data_b, len_b);
        return;
    }
    const uint8_t *pa = data_a, *pb = data_b;
    size_t n = top_up(a, pa, len_a);
    pa += n;
    len_a -= n;
    n = top_up(b, pb, len_b);
    pb += n;
    len_b -= n;
    /* Both streams now start on a block boundary (or have nothing left). */
    size_t common = (a->buffered || b->buffered) ? 0 : (len_a < len_b ? len_a : len_b) / 64;
    if (common) {
        compress_shani_x2(a->h, pa, b->h, pb, common);
        a->total += common * 64;
        b->total += common * 64;
        pa += common * 64;
        pb += common * 64;
        len_a -= common * 64;
        len_b -= common * 64;
    }
    sha256_update(a, pa, len_a);
    sha256_update(b, pb, len_b);
}

void sha256_init(struct sha256 *s)
{
    s->fast = sha256_fast_available();
    s->total = 0;
    s->buffered = 0;
    if (s->fast)
        memcpy(s->h, H0, sizeof H0);
    else
        crypto_hash_sha256_init(&s->portable);
}

void sha256_update(struct sha256 *s, const void *data, size_t len)
{
    if (!s->fast) {
        crypto_hash_sha256_update(&s->portable, data, len);
        return;
    }
    const uint8_t *p = data;
    s->total += len;
    if (s->buffered) {
        size_t take = 64 - s->buffered < len ? 64 - s->buffered : len;
        memcpy(s->block + s->buffered, p, take);
        s->buffered += take;
        p += take;
        len -= take;
        if (s->buffered < 64)
            return;
        compress_shani(s->h, s->block, 1);
        s->buffered = 0;
    }
    if (len >= 64) {
        compress_shani(s->h, p, len / 64);
        p += len / 64 * 64;
        len %= 64;
    }
    if (len) {
        memcpy(s->block, p, len);
        s->buffered = len;
    }
}

void sha256_final(struct sha256 *s, uint8_t out[32])
{
    if (!s->fast) {
        crypto_hash_sha256_final(&s->portable, out);
        return;
    }
    uint64_t bits = s->total * 8;
    uint8_t pad[72] = {0x80};
    size_t padlen = (s->buffered < 56 ? 56 : 120) - s->buffered;
    for (int i = 0; i < 8; i++)
        pad[padlen + (size_t)i] = (uint8_t)(bits >> (56 - 8 * i));
    uint64_t total = s->total;
    sha256_update(s, pad, padlen + 8);
    s->total = total;
    for (int i = 0; i < 8; i++) {
        out[4 * i] = (uint8_t)(s->h[i] >> 24);
        out[4 * i + 1] = (uint8_t)(s->h[i] >> 16);
        out[4 * i + 2] = (uint8_t)(s->h[i] >> 8);
        out[4 * i + 3] = (uint8_t)s->h[i];
    }
    sodium_memzero(s, sizeof *s);
}

void sha256_once(const void *data, size_t len, uint8_t out[32])
{
    struct sha256 s;
    sha256_init(&s);
    sha256_update(&s, data, len);
    sha256_final(&s, out);
}
