#include "ckernels.h"

// Their sums go into release files (the int8 report): contraction off, so no compiler fuses a multiply and an add
// on one target and not on another.
#pragma STDC FP_CONTRACT OFF

#include <math.h>
#define INLINE_Q8 static inline __attribute__((always_inline))

#define LANES 16
#define FOLD 4096

static void fold(const float sq[LANES], const float er[LANES], const float mx[LANES], double stats[3]) {
    for (int l = 0; l < LANES; l++) {
        stats[0] += sq[l];
        stats[1] += er[l];
        if (mx[l] > stats[2]) stats[2] = mx[l];
    }
}

static float magnitude(float v) { return v < 0 ? -v : v; }

void arapack_error_stats(const float *x, const float *y, size_t n, double stats[3]) {
    size_t i = 0;
    while (i + LANES <= n) {
        float sq[LANES] = {0}, er[LANES] = {0}, mx[LANES] = {0};
        size_t end = i + FOLD < n ? i + FOLD : n - (n - i) % LANES;
        for (; i < end; i += LANES) {
            for (int l = 0; l < LANES; l++) {
                float a = x[i + l], e = a - y[i + l], m = magnitude(e);
                sq[l] += a * a;
                er[l] += e * e;
                mx[l] = m > mx[l] ? m : mx[l];
            }
        }
        fold(sq, er, mx, stats);
    }
    for (; i < n; i++) {
        double a = x[i], e = a - (double)y[i];
        stats[0] += a * a;
        stats[1] += e * e;
        if ((e < 0 ? -e : e) > stats[2]) stats[2] = e < 0 ? -e : e;
    }
}

/// round-half-even for |v| < 2^22 by the 1.5·2^23 trick (exact in float, vectorises without SSE4.1).
static float round_even(float v) {
    const float magic = 12582912.0f;
    return (v + magic) - magic;
}

void arapack_quantize_int8(const float *x, size_t n, float scale, int8_t *q, double stats[3]) {
    size_t i = 0;
    while (i < n) {
        float sq[LANES] = {0}, er[LANES] = {0}, mx[LANES] = {0};
        size_t end = i + FOLD < n ? i + FOLD : n;
        size_t vend = end - (end - i) % LANES;
        for (; i < vend; i += LANES) {
            for (int l = 0; l < LANES; l++) {
                float a = x[i + l];
                float v = a / scale;
                v = v > 127.0f ? 127.0f : v;
                v = v < -127.0f ? -127.0f : v;
                v = v == v ? round_even(v) : 0.0f;
                q[i + l] = (int8_t)v;
                float e = a - v * scale, m = magnitude(e);
                sq[l] += a * a;
                er[l] += e * e;
                mx[l] = m > mx[l] ? m : mx[l];
            }
        }
        fold(sq, er, mx, stats);
        for (; i < end; i++) {
            float a = x[i];
            float v = a / scale;
            v = v > 127.0f ? 127.0f : v;
            v = v < -127.0f ? -127.0f : v;
            v = v == v ? round_even(v) : 0.0f;
            q[i] = (int8_t)v;
            double e = (double)a - (double)(v * scale);
            stats[0] += (double)a * a;
            stats[1] += e * e;
            if ((e < 0 ? -e : e) > stats[2]) stats[2] = e < 0 ? -e : e;
        }
    }
}

float arapack_max_abs(const float *x, size_t n) {
    float mx[LANES] = {0};
    size_t i = 0;
    for (; i + LANES <= n; i += LANES) {
        for (int l = 0; l < LANES; l++) {
            float m = magnitude(x[i + l]);
            mx[l] = m > mx[l] ? m : mx[l];
        }
    }
    float top = 0;
    for (int l = 0; l < LANES; l++) top = mx[l] > top ? mx[l] : top;
    for (; i < n; i++) top = magnitude(x[i]) > top ? magnitude(x[i]) : top;
    return top;
}

#define TILE 32
#define TRANSPOSE_TILES(T)                                                                                      \
    do {                                                                                                        \
        const T *s = (const T *)src;                                                                            \
        T *d = (T *)dst;                                                                                        \
        for (size_t r0 = 0; r0 < rows; r0 += TILE) {                                                            \
            size_t r1 = r0 + TILE < rows ? r0 + TILE : rows;                                                    \
            for (size_t c0 = 0; c0 < cols; c0 += TILE) {                                                        \
                size_t c1 = c0 + TILE < cols ? c0 + TILE : cols;                                                \
                for (size_t c = c0; c < c1; c++)                                                                \
                    for (size_t r = r0; r < r1; r++) d[c * dst_stride + r] = s[r * src_stride + c];              \
            }                                                                                                   \
        }                                                                                                       \
    } while (0)

#if defined(__x86_64__)
#include "simd.h"
#define AVX2 __attribute__((target("avx2")))
// One 8 × 8 block of 4-byte elements transposed in registers: v[i] is source row i, u[j] ends as source column j.
AVX2 static void transpose_block8(const float *s, size_t ss, float *d, size_t ds) {
    __m256 v[8], u[8];
    for (int i = 0; i < 8; i++) v[i] = _mm256_loadu_ps(s + i * ss);
    arapack_transpose8_ps(v, u);
    for (int j = 0; j < 8; j++) _mm256_storeu_ps(d + j * ds, u[j]);
}
// 4-byte elements: 32 × 32 tiles of 8 × 8 register blocks; the ragged edges element by element.
AVX2 static void transpose4_fast(const float *s, size_t ss, float *d, size_t ds, size_t rows, size_t cols) {
    size_t rows8 = rows - rows % 8, cols8 = cols - cols % 8;
    for (size_t r0 = 0; r0 < rows8; r0 += TILE) {
        size_t r1 = r0 + TILE < rows8 ? r0 + TILE : rows8;
        for (size_t c0 = 0; c0 < cols8; c0 += TILE) {
            size_t c1 = c0 + TILE < cols8 ? c0 + TILE : cols8;
            for (size_t c = c0; c < c1; c += 8)
                for (size_t r = r0; r < r1; r += 8) transpose_block8(s + r * ss + c, ss, d + c * ds + r, ds);
        }
    }
    for (size_t r = 0; r < rows; r++)
        for (size_t c = r < rows8 ? cols8 : 0; c < cols; c++) d[c * ds + r] = s[r * ss + c];
}
#endif

void arapack_transpose(const void *src, size_t src_stride, void *dst, size_t dst_stride, size_t rows, size_t cols,
                       size_t element_size) {
#if defined(__x86_64__)
    if (element_size == 4 && arapack_fast_ok()) {
        transpose4_fast((const float *)src, src_stride, (float *)dst, dst_stride, rows, cols);
        return;
    }
#endif
    switch (element_size) {
    case 1: TRANSPOSE_TILES(uint8_t); break;
    case 2: TRANSPOSE_TILES(uint16_t); break;
    case 4: TRANSPOSE_TILES(uint32_t); break;
    default: TRANSPOSE_TILES(uint64_t); break;
    }
}

// Q8_0 (ggml's quantize_row_q8_0_ref): per block of 32, d = max|x| / 127, q = round-half-away(x · (1/d)), 0 when d is
// 0; d stored as float16 (to nearest even). Rounding half away from zero is trunc, plus one step away when the
// fraction (exact in float) is at least one half: roundf's result, in a form the compiler vectorises.
INLINE_Q8 int64_t q8_0_body(const float *x, size_t blocks, uint8_t *out) {
    for (size_t b = 0; b < blocks; b++) {
        const float *v = x + b * 32;
        float amax = 0.0f;
        for (int j = 0; j < 32; j++) {
            float a = fabsf(v[j]);
            amax = a > amax ? a : amax;
        }
        int finite = 1;
        for (int j = 0; j < 32; j++) finite &= isfinite(v[j]) ? 1 : 0;
        if (!finite) return (int64_t)b;
        float d = amax / 127.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
        uint16_t h = arapack_f32_to_f16(d);
        uint8_t *o = out + b * 34;
        o[0] = (uint8_t)(h & 0xFF);
        o[1] = (uint8_t)(h >> 8);
        for (int j = 0; j < 32; j++) {
            float s = v[j] * id, t = truncf(s);
            float r = fabsf(s - t) >= 0.5f ? t + copysignf(1.0f, s) : t;
            o[2 + j] = (uint8_t)(int8_t)r;
        }
    }
    return -1;
}

#if defined(__x86_64__)
__attribute__((target("avx2,fma"))) static int64_t q8_0_fast(const float *x, size_t blocks, uint8_t *out) {
    return q8_0_body(x, blocks, out);
}
#endif

int64_t arapack_quantize_q8_0(const float *x, size_t blocks, uint8_t *out) {
#if defined(__x86_64__)
    if (arapack_isa() != ARAPACK_ISA_GENERIC) return q8_0_fast(x, blocks, out);
#endif
    return q8_0_body(x, blocks, out);
}
