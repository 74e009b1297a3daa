/* zolab's native CPU perturbation kernel: counter-based z, regenerated and applied in one pass.
 *
 * Why: on CPU, torch draws normals one at a time on one core (Mersenne Twister + Box-Muller,
 * ~5 ns an entry), so a MeZO step's three z generations cost more than its two forwards. Here z is a
 * pure function of (seed, parameter index, element), computed 16 lanes at a time and added to the
 * weights while they are in cache: no z buffer, no second pass.
 *
 * Definition of z (the law; identical on every IEEE-754 machine: the arithmetic is + - * / sqrt,
 * conversions and bit operations only, compiled without FMA contraction or fast-math):
 *   element e of the parameter with index i at 64-bit seed s lies in tile T = e / 4096, quarter
 *   q = (e % 4096) / 1024, lane l = e % 1024. Philox4x32-10 (Salmon et al. 2011, the Random123
 *   constants) with key (s mod 2^32, s >> 32) and counter (T * 1024 + l, i, 0, 0) gives four 32-bit
 *   words w0..w3; element e takes word w_q, transformed as:
 *   - gaussian: Box-Muller on the pairs (w0, w1) -> quarters 0, 1 and (w2, w3) -> quarters 2, 3:
 *       u1 = (2 (w_a >> 9) + 1) / 2^24 in (0, 1), u2 = (w_b >> 8) / 2^24 in [0, 1) (both exact in fp32),
 *       r = sqrt(-2 ln u1), z_a = r cos(2 pi u2), z_b = r sin(2 pi u2)
 *     with ln, sin and cos evaluated by the fixed polynomials below (Cephes-style, about 1e-7
 *     relative error: far below fp32 training noise; the law is these polynomials, not libm's);
 *   - rademacher: +1 when the word's top bit is set, else -1.
 *   Random sparsity draws a second Philox block at key (s ^ MASK_SALT) and the same counter: the
 *   element is touched when the top 16 bits of that word are >= the law's threshold. Magnitude
 *   sparsity reads bit e % 8 of byte e / 8 of the stored mask. Untouched elements are stored back
 *   unchanged (bit-identical, -0.0 included).
 *
 * Compiled by zolab (kernels/native_backend.py) with the system C compiler on first use and loaded
 * with ctypes; the caller releases the GIL (ctypes does) and runs disjoint tile ranges on threads.
 */
#include <stdint.h>
#include <string.h>
#include <math.h>

#define QUAD 1024
#define TILE (4 * QUAD)

#define PHILOX_M0 0xD2511F53u
#define PHILOX_M1 0xCD9E8D57u
#define PHILOX_W0 0x9E3779B9u
#define PHILOX_W1 0xBB67AE85u

int zolab_native_abi(void) { return 1; }

/* Philox4x32-10 for lanes 0..n-1 of counter (c0base + l, c1, 0, 0) at key (k0, k1): portable C
 * (any compiler vectorizes it, but with 64x64-bit multiplies), then, where the compiler targets them,
 * AVX-512 / AVX2 versions that form the 32x32 -> 64-bit products with vpmuludq. All give the same words. */
static void philox_lanes(uint32_t c0base, uint32_t c1in, uint32_t k0in, uint32_t k1in, int lo, int n,
                         uint32_t *restrict o0, uint32_t *restrict o1, uint32_t *restrict o2,
                         uint32_t *restrict o3) {
    for (int l = lo; l < n; l++) {
        uint32_t c0 = c0base + (uint32_t)l, c1 = c1in, c2 = 0, c3 = 0, k0 = k0in, k1 = k1in;
        for (int r = 0; r < 10; r++) {
            uint64_t p0 = (uint64_t)PHILOX_M0 * c0, p1 = (uint64_t)PHILOX_M1 * c2;
            uint32_t n0 = (uint32_t)(p1 >> 32) ^ c1 ^ k0, n2 = (uint32_t)(p0 >> 32) ^ c3 ^ k1;
            c1 = (uint32_t)p1;
            c3 = (uint32_t)p0;
            c0 = n0;
            c2 = n2;
            k0 += PHILOX_W0;
            k1 += PHILOX_W1;
        }
        o0[l] = c0;
        o1[l] = c1;
        o2[l] = c2;
        o3[l] = c3;
    }
}

#if defined(__AVX512F__)
#include <immintrin.h>
#define VLANES 16
typedef __m512i vec;
static inline vec v_set1(uint32_t x) { return _mm512_set1_epi32((int)x); }
static inline vec v_lanes(uint32_t base) {
    return _mm512_add_epi32(v_set1(base), _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15));
}
static inline vec v_xor3(vec a, vec b, vec c) { return _mm512_ternarylogic_epi32(a, b, c, 0x96); }
static inline void v_mulhilo(vec a, vec m, vec *hi, vec *lo) {
    vec even = _mm512_mul_epu32(a, m);                              /* lanes 0, 2, ...: 64-bit products */
    vec odd = _mm512_mul_epu32(_mm512_srli_epi64(a, 32), m);        /* lanes 1, 3, ... */
    *hi = _mm512_mask_blend_epi32(0xAAAA, _mm512_srli_epi64(even, 32), odd);
    *lo = _mm512_mask_blend_epi32(0xAAAA, even, _mm512_slli_epi64(odd, 32));
}
static inline void v_store(uint32_t *p, vec v) { _mm512_storeu_si512((void *)p, v); }
#elif defined(__AVX2__)
#include <immintrin.h>
#define VLANES 8
typedef __m256i vec;
static inline vec v_set1(uint32_t x) { return _mm256_set1_epi32((int)x); }
static inline vec v_lanes(uint32_t base) {
    return _mm256_add_epi32(v_set1(base), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}
static inline vec v_xor3(vec a, vec b, vec c) { return _mm256_xor_si256(_mm256_xor_si256(a, b), c); }
static inline void v_mulhilo(vec a, vec m, vec *hi, vec *lo) {
    vec even = _mm256_mul_epu32(a, m);
    vec odd = _mm256_mul_epu32(_mm256_srli_epi64(a, 32), m);
    *hi = _mm256_blend_epi32(_mm256_srli_epi64(even, 32), odd, 0xAA);
    *lo = _mm256_blend_epi32(even, _mm256_slli_epi64(odd, 32), 0xAA);
}
static inline void v_store(uint32_t *p, vec v) { _mm256_storeu_si256((vec *)p, v); }
#endif

static void philox_block(uint32_t c0base, uint32_t c1in, uint32_t k0in, uint32_t k1in, int n,
                         uint32_t *restrict o0, uint32_t *restrict o1, uint32_t *restrict o2,
                         uint32_t *restrict o3) {
    int l = 0;
#ifdef VLANES
    const vec m0 = v_set1(PHILOX_M0), m1 = v_set1(PHILOX_M1);
    for (; l + VLANES <= n; l += VLANES) {
        vec c0 = v_lanes(c0base + (uint32_t)l), c1 = v_set1(c1in), c2 = v_set1(0), c3 = v_set1(0);
        uint32_t k0 = k0in, k1 = k1in;
        for (int r = 0; r < 10; r++) {
            vec h0, l0, h1, l1;
            v_mulhilo(c0, m0, &h0, &l0);
            v_mulhilo(c2, m1, &h1, &l1);
            c0 = v_xor3(h1, c1, v_set1(k0));
            c2 = v_xor3(h0, c3, v_set1(k1));
            c1 = l1;
            c3 = l0;
            k0 += PHILOX_W0;
            k1 += PHILOX_W1;
        }
        v_store(o0 + l, c0);
        v_store(o1 + l, c1);
        v_store(o2 + l, c2);
        v_store(o3 + l, c3);
    }
#endif
    philox_lanes(c0base, c1in, k0in, k1in, l, n, o0, o1, o2, o3);
}

static inline float as_float(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }
static inline uint32_t as_bits(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }

/* ln(u) for u in (0, 1]: u = m 2^e with m in [sqrt(1/2), sqrt(2)), ln u = e ln 2 + ln m (Cephes logf). */
static inline float ln_unit(float u) {
    uint32_t b = as_bits(u);
    int32_t e = (int32_t)((b >> 23) & 0xFF) - 126;            /* u = m 2^e, m in [0.5, 1) */
    float m = as_float((b & 0x007FFFFFu) | 0x3F000000u);
    /* m < sqrt(1/2): use 2m and e - 1 (written as bit masks: selects that every SIMD target vectorizes) */
    uint32_t small = (uint32_t)0 - (uint32_t)(m < 0.70710678118654752f);
    e -= (int32_t)(small & 1u);
    float x = (m + as_float(as_bits(m) & small)) - 1.0f;
    float z = x * x;
    float y = 7.0376836292e-2f;
    y = y * x - 1.1514610310e-1f;
    y = y * x + 1.1676998740e-1f;
    y = y * x - 1.2420140846e-1f;
    y = y * x + 1.4249322787e-1f;
    y = y * x - 1.6668057665e-1f;
    y = y * x + 2.0000714765e-1f;
    y = y * x - 2.4999993993e-1f;
    y = y * x + 3.3333331174e-1f;
    y = y * x * z;
    float fe = (float)e;
    y = y + (-2.12194440e-4f) * fe;
    y = y - 0.5f * z;
    return (x + y) + 0.693359375f * fe;
}

/* Box-Muller on (wa, wb) -> (za, zb): the angle 2 pi u2 is split exactly into a quadrant and a
 * remainder a in [-pi/4, pi/4] (u2 is a multiple of 2^-24), where short polynomials are accurate. */
static inline void box_muller(uint32_t wa, uint32_t wb, float *za, float *zb) {
    float u1 = (float)(int32_t)(((wa >> 9) << 1) | 1u) * 5.9604644775390625e-8f;  /* (2k + 1) / 2^24: exact, in (0, 1) */
    float t = (float)(int32_t)(wb >> 8) * 2.384185791015625e-7f;               /* 4 u2 = (wb >> 8) / 2^22, exact */
    float qf = (float)(int32_t)(t + 0.5f);                            /* nearest quadrant 0..4 */
    int32_t q = (int32_t)qf & 3;
    float a = (t - qf) * 1.57079632679489662f;                        /* in [-pi/4, pi/4] */
    float s2 = a * a;
    float sn = ((-1.9515295891e-4f * s2 + 8.3321608736e-3f) * s2 - 1.6666654611e-1f) * s2 * a + a;
    float cs = ((2.443315711809948e-5f * s2 - 1.388731625493765e-3f) * s2 + 4.166664568298827e-2f) * s2 * s2
               - 0.5f * s2 + 1.0f;
    /* sin/cos(q pi/2 + a): odd quadrants swap sin and cos; sin is negative in quadrants 2, 3, cos in 1, 2 */
    uint32_t uq = (uint32_t)q;
    uint32_t odd = (uint32_t)0 - (uq & 1u);
    float sinv = as_float((as_bits(cs) & odd) | (as_bits(sn) & ~odd));
    float cosv = as_float((as_bits(sn) & odd) | (as_bits(cs) & ~odd));
    sinv = as_float(as_bits(sinv) ^ ((uq >> 1) << 31));
    cosv = as_float(as_bits(cosv) ^ (((uq ^ (uq >> 1)) & 1u) << 31));
    float r = sqrtf(-2.0f * ln_unit(u1));
    *za = r * cosv;
    *zb = r * sinv;
}

/* One term's z for one tile: z[4][QUAD] (fp32) and, when sparse, keep[4][QUAD] (1 touched, 0 not). */
typedef struct {
    uint32_t w[4][QUAD];
    float z[4][QUAD];
    uint8_t keep[4][QUAD];
} tile_scratch;

static void tile_z(tile_scratch *s, uint64_t tile, uint32_t index, uint64_t seed, uint64_t mseed, float scale,
                   int dist, int sparse, uint32_t threshold, const uint8_t *mask, int64_t first, int64_t numel) {
    uint32_t c0 = (uint32_t)(tile * QUAD);
    philox_block(c0, index, (uint32_t)seed, (uint32_t)(seed >> 32), QUAD, s->w[0], s->w[1], s->w[2], s->w[3]);
    if (dist == 1) {
        for (int k = 0; k < 4; k++) {
            const uint32_t *w = s->w[k];
            float *z = s->z[k];
#pragma omp simd
            for (int l = 0; l < QUAD; l++) z[l] = (w[l] >> 31) ? 1.0f : -1.0f;
        }
    } else {
        for (int h = 0; h < 4; h += 2) {
            const uint32_t *wa = s->w[h], *wb = s->w[h + 1];
            float *za = s->z[h], *zb = s->z[h + 1];
#pragma omp simd
            for (int l = 0; l < QUAD; l++) {
                float x, y;
                box_muller(wa[l], wb[l], &x, &y);
                za[l] = x * scale;
                zb[l] = y * scale;
            }
        }
    }
    if (sparse == 1) {
        philox_block(c0, index, (uint32_t)mseed, (uint32_t)(mseed >> 32), QUAD, s->w[0], s->w[1], s->w[2], s->w[3]);
        for (int k = 0; k < 4; k++) {
            const uint32_t *w = s->w[k];
            uint8_t *m = s->keep[k];
#pragma omp simd
            for (int l = 0; l < QUAD; l++) m[l] = (w[l] >> 16) >= threshold;
        }
    } else if (sparse == 2) {
        for (int k = 0; k < 4; k++) {
            uint8_t *m = s->keep[k];
            for (int l = 0; l < QUAD; l++) {
                int64_t e = first + (int64_t)k * QUAD + l;
                m[l] = e < numel ? (mask[e >> 3] >> (e & 7)) & 1 : 0;
            }
        }
    }
}

/* p[e] <- keep_decay * p[e] + sum_k alpha_k z_k[e] for the elements of tiles [tile_lo, tile_hi) of an
 * fp32 tensor of numel elements (each product and sum rounded to fp32, in term order). */
void zolab_apply_f32(float *p, int64_t numel, int64_t tile_lo, int64_t tile_hi, uint32_t index, int nterms,
                     const uint64_t *seeds, const uint64_t *mseeds, const float *alphas, const float *scales,
                     float keep_decay, int has_decay, int dist, int sparse, uint32_t threshold,
                     const uint8_t *mask, void *scratch) {
    tile_scratch *s = (tile_scratch *)scratch;
    for (int64_t t = tile_lo; t < tile_hi; t++) {
        int64_t first = t * TILE;
        if (first >= numel) break;
        int64_t n = numel - first < TILE ? numel - first : TILE;
        float *x = p + first;
        if (has_decay) {
#pragma omp simd
            for (int64_t j = 0; j < n; j++) x[j] = x[j] * keep_decay;
        }
        for (int k = 0; k < nterms; k++) {
            tile_z(s, (uint64_t)t, index, seeds[k], mseeds[k], scales[k], dist, sparse, threshold, mask, first, numel);
            float a = alphas[k];
            for (int qd = 0; qd < 4; qd++) {
                int64_t lo = (int64_t)qd * QUAD;
                if (lo >= n) break;
                int64_t m = n - lo < QUAD ? n - lo : QUAD;
                float *xq = x + lo;
                const float *z = s->z[qd];
                if (sparse) {
                    const uint8_t *kp = s->keep[qd];
#pragma omp simd
                    for (int64_t l = 0; l < m; l++) xq[l] = kp[l] ? xq[l] + a * z[l] : xq[l];
                } else {
#pragma omp simd
                    for (int64_t l = 0; l < m; l++) xq[l] = xq[l] + a * z[l];
                }
            }
        }
    }
}

/* z of tiles [tile_lo, tile_hi) of a numel-element tensor into out (fp32; out[0] is the range's first element);
 * untouched elements get `fill`. */
void zolab_z_f32(float *out, int64_t numel, int64_t tile_lo, int64_t tile_hi, uint32_t index, uint64_t seed,
                 uint64_t mseed, float scale, int dist, int sparse, uint32_t threshold, const uint8_t *mask,
                 float fill, void *scratch) {
    tile_scratch *s = (tile_scratch *)scratch;
    for (int64_t t = tile_lo; t < tile_hi; t++) {
        int64_t first = t * TILE;
        if (first >= numel) break;
        int64_t n = numel - first < TILE ? numel - first : TILE;
        tile_z(s, (uint64_t)t, index, seed, mseed, scale, dist, sparse, threshold, mask, first, numel);
        for (int qd = 0; qd < 4; qd++) {
            int64_t lo = (int64_t)qd * QUAD;
            if (lo >= n) break;
            int64_t m = n - lo < QUAD ? n - lo : QUAD;
            float *o = out + (first - tile_lo * TILE) + lo;
            const float *z = s->z[qd];
            if (sparse) {
                const uint8_t *kp = s->keep[qd];
                for (int64_t l = 0; l < m; l++) o[l] = kp[l] ? z[l] : fill;
            } else {
                memcpy(o, z, (size_t)m * sizeof(float));
            }
        }
    }
}

/* Sphere: the sum of z^2 (scale 1) over the touched elements of tiles [tile_lo, tile_hi), in fp64 in
 * element order (a fixed order: every pass gets the same sum); *count receives how many were touched. */
double zolab_sumsq(int64_t numel, int64_t tile_lo, int64_t tile_hi, uint32_t index, uint64_t seed, uint64_t mseed,
                   int sparse, uint32_t threshold, const uint8_t *mask, int64_t *count, void *scratch) {
    tile_scratch *s = (tile_scratch *)scratch;
    double total = 0.0;
    int64_t touched = 0;
    for (int64_t t = tile_lo; t < tile_hi; t++) {
        int64_t first = t * TILE;
        if (first >= numel) break;
        int64_t n = numel - first < TILE ? numel - first : TILE;
        tile_z(s, (uint64_t)t, index, seed, mseed, 1.0f, 0, sparse, threshold, mask, first, numel);
        for (int64_t j = 0; j < n; j++) {
            int qd = (int)(j / QUAD), l = (int)(j % QUAD);
            if (sparse && !s->keep[qd][l]) continue;
            double v = s->z[qd][l];
            total += v * v;
            touched++;
        }
    }
    *count = touched;
    return total;
}

/* The raw Philox4x32-10 words for lanes 0..n-1 (n <= 1024), for known-answer tests. */
void zolab_philox(uint32_t c0base, uint32_t c1, uint64_t key, int n, uint32_t *out4n) {
    philox_block(c0base, c1, (uint32_t)key, (uint32_t)(key >> 32), n, out4n, out4n + n, out4n + 2 * n, out4n + 3 * n);
}

/* Box-Muller on raw word pairs (for tests of the transform): n pairs -> 2n normals. */
void zolab_box_muller(const uint32_t *wa, const uint32_t *wb, int64_t n, float *za, float *zb) {
    for (int64_t j = 0; j < n; j++) box_muller(wa[j], wb[j], &za[j], &zb[j]);
}

size_t zolab_scratch_bytes(void) { return sizeof(tile_scratch); }
