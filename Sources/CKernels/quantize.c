#include "kernel.h"

// Their sums go into release files (the int8 report): contraction off, so no compiler fuses a multiply and an add
// on one target and not on another.
#pragma STDC FP_CONTRACT OFF

#include <math.h>
#include <stdint.h>
#include <string.h>
#define FOLD 4096

static void fold(const float sq[ARAPACK_LANES], const float er[ARAPACK_LANES], const float mx[ARAPACK_LANES], double stats[3]) {
    for (int l = 0; l < ARAPACK_LANES; l++) {
        stats[0] += sq[l];
        stats[1] += er[l];
        if (mx[l] > stats[2]) stats[2] = mx[l];
    }
}

static float magnitude(float v) { return v < 0 ? -v : v; }

void arapack_error_stats(const float *x, const float *y, size_t n, double stats[3]) {
    size_t i = 0;
    while (i + ARAPACK_LANES <= n) {
        float sq[ARAPACK_LANES] = {0}, er[ARAPACK_LANES] = {0}, mx[ARAPACK_LANES] = {0};
        size_t end = i + FOLD < n ? i + FOLD : n - (n - i) % ARAPACK_LANES;
        for (; i < end; i += ARAPACK_LANES) {
            for (int l = 0; l < ARAPACK_LANES; l++) {
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

void arapack_quantize_symmetric(const float *x, size_t n, float scale, float low, float high, int8_t *q, double stats[3]) {
    size_t i = 0;
    while (i < n) {
        float sq[ARAPACK_LANES] = {0}, er[ARAPACK_LANES] = {0}, mx[ARAPACK_LANES] = {0};
        size_t end = i + FOLD < n ? i + FOLD : n;
        size_t vend = end - (end - i) % ARAPACK_LANES;
        for (; i < vend; i += ARAPACK_LANES) {
            for (int l = 0; l < ARAPACK_LANES; l++) {
                float a = x[i + l];
                float v = a / scale;
                v = v > high ? high : v;
                v = v < low ? low : v;
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
            v = v > high ? high : v;
            v = v < low ? low : v;
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
    float mx[ARAPACK_LANES] = {0};
    size_t i = 0;
    for (; i + ARAPACK_LANES <= n; i += ARAPACK_LANES) {
        for (int l = 0; l < ARAPACK_LANES; l++) {
            float m = magnitude(x[i + l]);
            mx[l] = m > mx[l] ? m : mx[l];
        }
    }
    float top = 0;
    for (int l = 0; l < ARAPACK_LANES; l++) top = mx[l] > top ? mx[l] : top;
    for (; i < n; i++) top = magnitude(x[i]) > top ? magnitude(x[i]) : top;
    return top;
}

// Q8_0 (ggml's quantize_row_q8_0_ref): per block of 32, d = max|x| / 127, q = round-half-away(x · (1/d)), 0 when d is
// 0; d stored as float16 (to nearest even). Rounding half away from zero is trunc, plus one step away when the
// fraction (exact in float) is at least one half: roundf's result, in a form the compiler vectorises.
ARAPACK_INLINE int64_t quantize_q8_0_body(const float *x, size_t blocks, uint8_t *out) {
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

ARAPACK_DISPATCH(int64_t, quantize_q8_0, (const float *x, size_t blocks, uint8_t *out), (x, blocks, out))

// How llama.cpp rounds activations before a product (ggml's vec_dot_type): float16, bfloat16 or Q8_0 blocks.
void arapack_round_like_ggml(float *x, size_t n, int kind) {
    if (kind == ARAPACK_ROUND_Q8_0) {
        // ggml-cpu's quantize_row_q8_0 (its AVX2 form): per block of 32, d = max|x| / 127 stored as float16, q =
        // round-half-even(x · 127 / max|x|); the dot product then sees d · q.
        for (size_t b = 0; b + 32 <= n; b += 32) {
            float amax = 0.0f;
            for (int j = 0; j < 32; j++) {
                float a = fabsf(x[b + j]);
                amax = a > amax ? a : amax;
            }
            float d = arapack_f16_to_f32(arapack_f32_to_f16(amax / 127.0f)), id = amax != 0.0f ? 127.0f / amax : 0.0f;
            for (int j = 0; j < 32; j++) x[b + j] = d * nearbyintf(x[b + j] * id);
        }
    } else if (kind == ARAPACK_ROUND_Q8_K) {
        // ggml's quantize_row_q8_K (for the K-quants' products): per block of 256, iscale = -127 / the signed value of
        // largest magnitude, q = min(127, round-half-even(x · iscale)), d = 1 / iscale kept in float32.
        for (size_t b = 0; b + 256 <= n; b += 256) {
            float amax = 0.0f, extreme = 0.0f;
            for (int j = 0; j < 256; j++) {
                if (fabsf(x[b + j]) > amax) {
                    amax = fabsf(x[b + j]);
                    extreme = x[b + j];
                }
            }
            if (amax == 0.0f) continue;
            float iscale = -127.0f / extreme, d = 1 / iscale;
            for (int j = 0; j < 256; j++) {
                float q = nearbyintf(iscale * x[b + j]);
                x[b + j] = d * (q < 127.0f ? q : 127.0f);
            }
        }
    } else if (kind == ARAPACK_ROUND_F16) {
        for (size_t i = 0; i < n; i++) x[i] = arapack_f16_to_f32(arapack_f32_to_f16(x[i]));
    } else if (kind == ARAPACK_ROUND_BF16) {
        // ggml's GGML_FP32_TO_BF16: round to nearest even, NaN kept quiet.
        for (size_t i = 0; i < n; i++) {
            uint32_t u;
            memcpy(&u, &x[i], 4);
            if ((u & 0x7fffffff) > 0x7f800000) u |= 0x00400000;
            else u += 0x7fff + ((u >> 16) & 1);
            u &= 0xffff0000u;
            memcpy(&x[i], &u, 4);
        }
    }
}
