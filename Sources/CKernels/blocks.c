#include "kernel.h"

// GGUF's block formats (docs/formats.md, "GGUF block types"): Q4_0, Q5_0, Q5_1, Q8_0 (blocks of 32; Q8_0's encoder is
// quantize.c's) and the K-quants
// Q4_K, Q5_K, Q6_K (super-blocks of 256), written as llama.cpp's reference quantizer writes them when it has no
// importance matrix (llama-quantize, or llama_model_quantize, on an f32 file) and read as ggml's dequantizer reads
// them. The searches below are llama.cpp's: the same float operations in the same order, so the same bytes. Every
// operation is a single float32 IEEE operation (contraction off: no fused multiply-add on any target), so the output
// is the same on every CPU.
#pragma STDC FP_CONTRACT OFF

#include <float.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#define SUPER 256
// Below this largest magnitude a group counts as all zero (llama.cpp's GROUP_MAX_EPS).
#define ALL_ZERO 1e-15f

static int imin(int a, int b) { return a < b ? a : b; }
static int imax(int a, int b) { return a > b ? a : b; }

// Round to nearest, ties to even, for |v| < 2^22: adding 1.5 · 2^23 leaves the integer in the low mantissa bits
// (llama.cpp's nearest_int; the bit form matters only in being the same rounding).
ARAPACK_INLINE int round_to_int(float v) {
    float shifted = v + 12582912.0f;
    int32_t bits;
    memcpy(&bits, &shifted, 4);
    return (bits & 0x007fffff) - 0x00400000;
}

// round_to_int(v) clamped to lo...hi, as a float: llama.cpp's nearest_int then MAX/MIN, in a form the lockstep
// searches below vectorise.
ARAPACK_INLINE float clamped_code(float v, int lo, int hi) {
    int l = round_to_int(v);
    return (float)(l < lo ? lo : l > hi ? hi : l);
}

static void put_half(uint8_t *at, float v) {
    uint16_t h = arapack_f32_to_f16(v);
    at[0] = (uint8_t)(h & 0xFF);
    at[1] = (uint8_t)(h >> 8);
}

static float get_half(const uint8_t *at) { return arapack_f16_to_f32((uint16_t)(at[0] | (at[1] << 8))); }

// The value of largest magnitude (the first of equal magnitudes), signed.
static float signed_extreme(const float *x, int n) {
    float top = 0.0f, value = 0.0f;
    for (int i = 0; i < n; i++) {
        if (fabsf(x[i]) > top) {
            top = fabsf(x[i]);
            value = x[i];
        }
    }
    return value;
}

// ---- blocks of 32 ----------------------------------------------------------------------------------------------

// Q4_0 (18 bytes): float16 d = extreme / -8, then 16 bytes of two 4-bit codes (value j low, value j + 16 high),
// code = min(15, trunc(x / d + 8.5)).
static void q4_0_block(const float *x, uint8_t *out) {
    float d = signed_extreme(x, 32) / -8, id = d != 0.0f ? 1.0f / d : 0.0f;
    put_half(out, d);
    for (int j = 0; j < 16; j++) {
        int lo = imin(15, (int8_t)(x[j] * id + 8.5f)), hi = imin(15, (int8_t)(x[j + 16] * id + 8.5f));
        out[2 + j] = (uint8_t)(lo | (hi << 4));
    }
}

// Q5_0 (22 bytes): float16 d = extreme / -16, a 32-bit word of fifth bits, 16 bytes of low nibbles;
// code = min(31, trunc(x / d + 16.5)).
static void q5_0_block(const float *x, uint8_t *out) {
    float d = signed_extreme(x, 32) / -16, id = d != 0.0f ? 1.0f / d : 0.0f;
    put_half(out, d);
    uint32_t high = 0;
    for (int j = 0; j < 16; j++) {
        int lo = imin(31, (int8_t)(x[j] * id + 16.5f)), hi = imin(31, (int8_t)(x[j + 16] * id + 16.5f));
        out[6 + j] = (uint8_t)((lo & 0x0F) | ((hi & 0x0F) << 4));
        high |= (uint32_t)((lo & 0x10) >> 4) << j;
        high |= (uint32_t)((hi & 0x10) >> 4) << (j + 16);
    }
    for (int b = 0; b < 4; b++) out[2 + b] = (uint8_t)(high >> (8 * b));
}

// Q5_1 (24 bytes): float16 d = (max - min) / 31 and m = min, the fifth bits, the low nibbles; code = trunc((x - min) / d
// + 0.5).
static void q5_1_block(const float *x, uint8_t *out) {
    float lo_v = FLT_MAX, hi_v = -FLT_MAX;
    for (int j = 0; j < 32; j++) {
        if (x[j] < lo_v) lo_v = x[j];
        if (x[j] > hi_v) hi_v = x[j];
    }
    float d = (hi_v - lo_v) / 31, id = d != 0.0f ? 1.0f / d : 0.0f;
    put_half(out, d);
    put_half(out + 2, lo_v);
    uint32_t high = 0;
    for (int j = 0; j < 16; j++) {
        int lo = (uint8_t)((x[j] - lo_v) * id + 0.5f), hi = (uint8_t)((x[j + 16] - lo_v) * id + 0.5f);
        out[8 + j] = (uint8_t)((lo & 0x0F) | ((hi & 0x0F) << 4));
        high |= (uint32_t)((lo & 0x10) >> 4) << j;
        high |= (uint32_t)((hi & 0x10) >> 4) << (j + 16);
    }
    for (int b = 0; b < 4; b++) out[4 + b] = (uint8_t)(high >> (8 * b));
}

// ---- the K-quants' searches ------------------------------------------------------------------------------------

// A signed scale for each of the sixteen sub-blocks (16 values, codes −32...31 stored plus 32) of a Q6_K super-block,
// weighted by x²: the range first, then 18 other spacings, keeping the one whose least-squares scale explains most
// (llama.cpp's make_qx_quants, rmse_type 1). As for Q4_K, the sixteen searches run in lockstep, lane j being sub-block
// j, each with llama.cpp's operations in llama.cpp's order. xt holds value i of sub-block j at [i][j].
// One spacing of the Q6_K search for all sixteen lanes: the codes (−32...31) of x · inverse, and the x²-weighted sums
// Σ w·x·l and Σ w·l² added to sum_lx and sum_l2.
ARAPACK_INLINE void q6_k_codes(const float xt[16][16], const float inverse[16], float codes[16][16], float sum_lx[16], float sum_l2[16]) {
    for (int i = 0; i < 16; i++) {
        for (int j = 0; j < 16; j++) {
            float fl = clamped_code(inverse[j] * xt[i][j], -32, 31), w = xt[i][j] * xt[i][j];
            codes[i][j] = fl;
            sum_lx[j] += w * xt[i][j] * fl;
            sum_l2[j] += w * fl * fl;
        }
    }
}

ARAPACK_INLINE void fit_sixteen_body(const float xt[16][16], int8_t codes[SUPER], float scales[16]) {
    float extreme[16], top[16], inverse[16], sum_lx[16], sum_l2[16], scale[16], best[16];
    int zero[16];
    for (int j = 0; j < 16; j++) {
        top[j] = 0;
        extreme[j] = 0;
    }
    for (int i = 0; i < 16; i++) {
        for (int j = 0; j < 16; j++) {
            float a = fabsf(xt[i][j]);
            extreme[j] = a > top[j] ? xt[i][j] : extreme[j];
            top[j] = a > top[j] ? a : top[j];
        }
    }
    for (int j = 0; j < 16; j++) {
        zero[j] = top[j] < ALL_ZERO;
        // A zero lane's answer is fixed below; its arithmetic meanwhile runs on a harmless extreme.
        if (zero[j]) extreme[j] = 1;
        inverse[j] = -32 / extreme[j];
        sum_lx[j] = sum_l2[j] = 0;
    }
    float lanes[16][16], trial[16][16];
    q6_k_codes(xt, inverse, lanes, sum_lx, sum_l2);
    for (int j = 0; j < 16; j++) {
        scale[j] = sum_l2[j] != 0 ? sum_lx[j] / sum_l2[j] : 0.0f;
        best[j] = scale[j] * sum_lx[j];
    }
    for (int step = -9; step <= 9; step++) {
        if (step == 0) continue;
        for (int j = 0; j < 16; j++) {
            inverse[j] = -(32 + 0.1f * step) / extreme[j];
            sum_lx[j] = sum_l2[j] = 0;
        }
        q6_k_codes(xt, inverse, trial, sum_lx, sum_l2);
        for (int j = 0; j < 16; j++) {
            if (sum_l2[j] > 0 && sum_lx[j] * sum_lx[j] > best[j] * sum_l2[j]) {
                for (int i = 0; i < 16; i++) lanes[i][j] = trial[i][j];
                scale[j] = sum_lx[j] / sum_l2[j];
                best[j] = scale[j] * sum_lx[j];
            }
        }
    }
    for (int j = 0; j < 16; j++) {
        for (int i = 0; i < 16; i++) codes[16 * j + i] = zero[j] ? 0 : (int8_t)((int)lanes[i][j] + 32);
        scales[j] = zero[j] ? 0.0f : scale[j];
    }
}

ARAPACK_DISPATCH_VOID(fit_sixteen, (const float xt[16][16], int8_t codes[SUPER], float scales[16]), (xt, codes, scales))

// The 6-bit scale and min of sub-block j from the 12 packed bytes of a Q4_K / Q5_K super-block.
static void unpack_scale_min(int j, const uint8_t *packed, uint8_t *scale, uint8_t *min) {
    if (j < 4) {
        *scale = packed[j] & 63;
        *min = packed[j + 4] & 63;
    } else {
        *scale = (uint8_t)((packed[j + 4] & 0x0F) | ((packed[j - 4] >> 6) << 4));
        *min = (uint8_t)((packed[j + 4] >> 4) | ((packed[j] >> 6) << 4));
    }
}

// A scale and a (non-positive) minimum for each of the eight sub-blocks (32 values, codes 0...top) of a Q4_K / Q5_K
// super-block: start from the range, then try nstep + 1 other code spacings, each refit by weighted least squares,
// keeping the one of least weighted squared error (llama.cpp's make_qkx2_quants with use_mad false). The eight
// searches run in lockstep: lane j is sub-block j, and each lane runs llama.cpp's operations in llama.cpp's order (its
// sums over i ascending), so every lane has the scalar search's bits; only the lanes side by side are new, which a
// compiler turns into vector instructions (no reassociation, no fused multiply-add: contraction is off). xt and wt
// hold value i of sub-block j at [i][j]; *negated_mins are −min.
ARAPACK_INLINE void fit_eight_body(const float xt[32][8], const float wt[32][8], int top, float first_shift, int nstep,
                                   uint8_t codes[SUPER], float scales[8], float negated_mins[8]) {
    float lo[8], hi[8], sum_w[8], sum_x[8], inverse[8], scale[8], best[8], flat_lo[8];
    int flat[8];
    for (int j = 0; j < 8; j++) {
        lo[j] = hi[j] = xt[0][j];
        sum_w[j] = wt[0][j];
        sum_x[j] = sum_w[j] * xt[0][j];
    }
    for (int i = 1; i < 32; i++) {
        for (int j = 0; j < 8; j++) {
            lo[j] = xt[i][j] < lo[j] ? xt[i][j] : lo[j];
            hi[j] = xt[i][j] > hi[j] ? xt[i][j] : hi[j];
            sum_w[j] += wt[i][j];
            sum_x[j] += wt[i][j] * xt[i][j];
        }
    }
    for (int j = 0; j < 8; j++) {
        if (lo[j] > 0) lo[j] = 0;
        flat[j] = hi[j] == lo[j];
        flat_lo[j] = lo[j];
        // A flat lane's answer is fixed below; its arithmetic meanwhile runs on a harmless range.
        inverse[j] = top / (flat[j] ? 1.0f : hi[j] - lo[j]);
        scale[j] = 1 / inverse[j];
        best[j] = 0;
    }
    float lanes[32][8];
    for (int i = 0; i < 32; i++) {
        for (int j = 0; j < 8; j++) {
            lanes[i][j] = clamped_code(inverse[j] * (xt[i][j] - lo[j]), 0, top);
            float diff = scale[j] * lanes[i][j] + lo[j] - xt[i][j];
            best[j] += wt[i][j] * (diff * diff);
        }
    }
    float trial[32][8];
    for (int step = 0; step <= nstep; step++) {
        float inv[8], sum_l[8], sum_l2[8], sum_xl[8], s[8], m[8], error[8];
        int ok[8];
        for (int j = 0; j < 8; j++) {
            inv[j] = (first_shift + 0.1f * step + top) / (flat[j] ? 1.0f : hi[j] - lo[j]);
            sum_l[j] = sum_l2[j] = sum_xl[j] = 0;
        }
        for (int i = 0; i < 32; i++) {
            for (int j = 0; j < 8; j++) {
                float fl = clamped_code(inv[j] * (xt[i][j] - lo[j]), 0, top);
                trial[i][j] = fl;
                sum_l[j] += wt[i][j] * fl;
                sum_l2[j] += wt[i][j] * fl * fl;
                sum_xl[j] += wt[i][j] * fl * xt[i][j];
            }
        }
        for (int j = 0; j < 8; j++) {
            float det = sum_w[j] * sum_l2[j] - sum_l[j] * sum_l[j];
            ok[j] = det > 0 && !flat[j];
            s[j] = ok[j] ? (sum_w[j] * sum_xl[j] - sum_x[j] * sum_l[j]) / det : 0;
            m[j] = ok[j] ? (sum_l2[j] * sum_x[j] - sum_l[j] * sum_xl[j]) / det : 0;
            if (m[j] > 0) {
                m[j] = 0;
                s[j] = sum_xl[j] / sum_l2[j];
            }
            error[j] = 0;
        }
        for (int i = 0; i < 32; i++) {
            for (int j = 0; j < 8; j++) {
                float diff = s[j] * trial[i][j] + m[j] - xt[i][j];
                error[j] += wt[i][j] * (diff * diff);
            }
        }
        for (int j = 0; j < 8; j++) {
            if (ok[j] && error[j] < best[j]) {
                for (int i = 0; i < 32; i++) lanes[i][j] = trial[i][j];
                best[j] = error[j];
                scale[j] = s[j];
                lo[j] = m[j];
            }
        }
    }
    for (int j = 0; j < 8; j++) {
        for (int i = 0; i < 32; i++) codes[32 * j + i] = flat[j] ? 0 : (uint8_t)lanes[i][j];
        scales[j] = flat[j] ? 0.0f : scale[j];
        negated_mins[j] = flat[j] ? -flat_lo[j] : -lo[j];
    }
}

ARAPACK_DISPATCH_VOID(fit_eight, (const float xt[32][8], const float wt[32][8], int top, float first_shift, int nstep,
                                  uint8_t codes[SUPER], float scales[8], float negated_mins[8]),
                      (xt, wt, top, first_shift, nstep, codes, scales, negated_mins))

// Q4_K and Q5_K share their scales: eight sub-blocks of 32, each fitted a scale and a min, both quantized to 6 bits
// against the super-block's largest (float16 d and dmin), then every value coded again against its quantized pair.
// Writes d, dmin and the 12 scale bytes at out and the codes (0...top) into codes.
static void k_scales_and_codes(const float *x, int top, float first_shift, int nstep, uint8_t *out, uint8_t codes[SUPER]) {
    float scales[8], mins[8], max_scale = 0, max_min = 0;
    float xt[32][8], wt[32][8];
    for (int j = 0; j < 8; j++) {
        const float *v = x + 32 * j;
        float sum_x2 = 0;
        for (int l = 0; l < 32; l++) sum_x2 += v[l] * v[l];
        float spread = sqrtf(sum_x2 / 32);
        for (int l = 0; l < 32; l++) {
            xt[l][j] = v[l];
            wt[l][j] = spread + fabsf(v[l]);
        }
    }
    arapack_fit_eight(xt, wt, top, first_shift, nstep, codes, scales, mins);
    for (int j = 0; j < 8; j++) {
        if (scales[j] > max_scale) max_scale = scales[j];
        if (mins[j] > max_min) max_min = mins[j];
    }
    float inverse_scale = max_scale > 0 ? 63.0f / max_scale : 0.0f, inverse_min = max_min > 0 ? 63.0f / max_min : 0.0f;
    uint8_t *packed = out + 4;
    memset(packed, 0, 12);
    for (int j = 0; j < 8; j++) {
        uint8_t ls = (uint8_t)round_to_int(inverse_scale * scales[j]), lm = (uint8_t)round_to_int(inverse_min * mins[j]);
        ls = ls < 63 ? ls : 63;
        lm = lm < 63 ? lm : 63;
        if (j < 4) {
            packed[j] = ls;
            packed[j + 4] = lm;
        } else {
            packed[j + 4] = (uint8_t)((ls & 0x0F) | ((lm & 0x0F) << 4));
            packed[j - 4] |= (uint8_t)((ls >> 4) << 6);
            packed[j] |= (uint8_t)((lm >> 4) << 6);
        }
    }
    put_half(out, max_scale / 63.0f);
    put_half(out + 2, max_min / 63.0f);
    float d = get_half(out), dmin = get_half(out + 2);
    for (int j = 0; j < 8; j++) {
        uint8_t sc, m;
        unpack_scale_min(j, packed, &sc, &m);
        float step = d * sc;
        if (step == 0.0f) continue;
        float offset = dmin * m;
        for (int i = 0; i < 32; i++) codes[32 * j + i] = (uint8_t)imax(0, imin(top, round_to_int((x[32 * j + i] + offset) / step)));
    }
}

// Q4_K (144 bytes): d, dmin, 12 scale bytes, then 128 bytes: per 64 values, value l low nibble and l + 32 high.
static void q4_k_block(const float *x, uint8_t *out) {
    uint8_t codes[SUPER];
    k_scales_and_codes(x, 15, -1.0f, 20, out, codes);
    uint8_t *q = out + 16;
    for (int j = 0; j < SUPER; j += 64, q += 32) {
        for (int l = 0; l < 32; l++) q[l] = (uint8_t)(codes[j + l] | (codes[j + l + 32] << 4));
    }
}

// Q5_K (176 bytes): d, dmin, 12 scale bytes, 32 bytes of fifth bits (value j + 64k + 32h in bit 2k + h of byte j),
// then the low nibbles as Q4_K lays them out.
static void q5_k_block(const float *x, uint8_t *out) {
    uint8_t codes[SUPER];
    k_scales_and_codes(x, 31, -0.5f, 15, out, codes);
    uint8_t *high = out + 16, *low = out + 48;
    memset(high, 0, 32);
    uint8_t bit_a = 1, bit_b = 2;
    for (int n = 0; n < SUPER; n += 64, low += 32, bit_a <<= 2, bit_b <<= 2) {
        for (int j = 0; j < 32; j++) {
            int a = codes[n + j], b = codes[n + j + 32];
            if (a > 15) {
                a -= 16;
                high[j] |= bit_a;
            }
            if (b > 15) {
                b -= 16;
                high[j] |= bit_b;
            }
            low[j] = (uint8_t)(a | (b << 4));
        }
    }
}

// Q6_K (210 bytes): 128 bytes of low nibbles, 64 of high bit pairs, 16 int8 scales (one per 16 values, against a
// float16 d = largest scale / -128), d last. Codes 0...63 stand for -32...31.
static void q6_k_block(const float *x, uint8_t *out) {
    int8_t codes[SUPER];
    float scales[16], max_scale = 0, max_abs = 0, xt[16][16];
    for (int b = 0; b < 16; b++) {
        for (int i = 0; i < 16; i++) xt[i][b] = x[16 * b + i];
    }
    arapack_fit_sixteen(xt, codes, scales);
    for (int b = 0; b < 16; b++) {
        if (fabsf(scales[b]) > max_abs) {
            max_abs = fabsf(scales[b]);
            max_scale = scales[b];
        }
    }
    memset(out, 0, 210);
    if (max_abs < ALL_ZERO) return;
    float inverse = -128.0f / max_scale;
    put_half(out + 208, 1 / inverse);
    int8_t *sc = (int8_t *)(out + 192);
    for (int b = 0; b < 16; b++) sc[b] = (int8_t)imin(127, round_to_int(inverse * scales[b]));
    float d = get_half(out + 208);
    for (int b = 0; b < 16; b++) {
        float step = d * sc[b];
        if (step == 0.0f) continue;
        for (int i = 0; i < 16; i++) codes[16 * b + i] = (int8_t)(imax(-32, imin(31, round_to_int(x[16 * b + i] / step))) + 32);
    }
    uint8_t *low = out, *high = out + 128;
    for (int j = 0; j < SUPER; j += 128, low += 64, high += 32) {
        for (int l = 0; l < 32; l++) {
            uint8_t c0 = (uint8_t)codes[j + l], c1 = (uint8_t)codes[j + l + 32], c2 = (uint8_t)codes[j + l + 64], c3 = (uint8_t)codes[j + l + 96];
            low[l] = (uint8_t)((c0 & 0x0F) | ((c2 & 0x0F) << 4));
            low[l + 32] = (uint8_t)((c1 & 0x0F) | ((c3 & 0x0F) << 4));
            high[l] = (uint8_t)((c0 >> 4) | ((c1 >> 4) << 2) | ((c2 >> 4) << 4) | ((c3 >> 4) << 6));
        }
    }
}

// ---- dequantization (ggml's dequantize_row_*) -------------------------------------------------------------------

static void q4_0_values(const uint8_t *in, float *y) {
    float d = get_half(in);
    for (int j = 0; j < 16; j++) {
        y[j] = ((in[2 + j] & 0x0F) - 8) * d;
        y[j + 16] = ((in[2 + j] >> 4) - 8) * d;
    }
}

static uint32_t fifth_bits(const uint8_t *at) { return (uint32_t)at[0] | ((uint32_t)at[1] << 8) | ((uint32_t)at[2] << 16) | ((uint32_t)at[3] << 24); }

static void q5_0_values(const uint8_t *in, float *y) {
    float d = get_half(in);
    uint32_t high = fifth_bits(in + 2);
    for (int j = 0; j < 16; j++) {
        int lo = (in[6 + j] & 0x0F) | (int)(((high >> j) << 4) & 0x10), hi = (in[6 + j] >> 4) | (int)((high >> (j + 12)) & 0x10);
        y[j] = (lo - 16) * d;
        y[j + 16] = (hi - 16) * d;
    }
}

static void q5_1_values(const uint8_t *in, float *y) {
    float d = get_half(in), m = get_half(in + 2);
    uint32_t high = fifth_bits(in + 4);
    for (int j = 0; j < 16; j++) {
        int lo = (in[8 + j] & 0x0F) | (int)(((high >> j) << 4) & 0x10), hi = (in[8 + j] >> 4) | (int)((high >> (j + 12)) & 0x10);
        y[j] = lo * d + m;
        y[j + 16] = hi * d + m;
    }
}

static void q8_0_values(const uint8_t *in, float *y) {
    float d = get_half(in);
    for (int j = 0; j < 32; j++) y[j] = (int8_t)in[2 + j] * d;
}

static void q4_k_values(const uint8_t *in, float *y) {
    float d = get_half(in), dmin = get_half(in + 2);
    const uint8_t *q = in + 16;
    for (int j = 0, is = 0; j < SUPER; j += 64, q += 32, is += 2) {
        uint8_t sc, m;
        unpack_scale_min(is, in + 4, &sc, &m);
        float d1 = d * sc, m1 = dmin * m;
        unpack_scale_min(is + 1, in + 4, &sc, &m);
        float d2 = d * sc, m2 = dmin * m;
        for (int l = 0; l < 32; l++) *y++ = d1 * (q[l] & 0x0F) - m1;
        for (int l = 0; l < 32; l++) *y++ = d2 * (q[l] >> 4) - m2;
    }
}

static void q5_k_values(const uint8_t *in, float *y) {
    float d = get_half(in), dmin = get_half(in + 2);
    const uint8_t *high = in + 16, *low = in + 48;
    uint8_t bit_a = 1, bit_b = 2;
    for (int j = 0, is = 0; j < SUPER; j += 64, low += 32, is += 2, bit_a <<= 2, bit_b <<= 2) {
        uint8_t sc, m;
        unpack_scale_min(is, in + 4, &sc, &m);
        float d1 = d * sc, m1 = dmin * m;
        unpack_scale_min(is + 1, in + 4, &sc, &m);
        float d2 = d * sc, m2 = dmin * m;
        for (int l = 0; l < 32; l++) *y++ = d1 * ((low[l] & 0x0F) + (high[l] & bit_a ? 16 : 0)) - m1;
        for (int l = 0; l < 32; l++) *y++ = d2 * ((low[l] >> 4) + (high[l] & bit_b ? 16 : 0)) - m2;
    }
}

static void q6_k_values(const uint8_t *in, float *y) {
    float d = get_half(in + 208);
    const uint8_t *low = in, *high = in + 128;
    const int8_t *sc = (const int8_t *)(in + 192);
    for (int n = 0; n < SUPER; n += 128, y += 128, low += 64, high += 32, sc += 8) {
        for (int l = 0; l < 32; l++) {
            int is = l / 16;
            int c0 = (int8_t)((low[l] & 0x0F) | (((high[l] >> 0) & 3) << 4)) - 32;
            int c1 = (int8_t)((low[l + 32] & 0x0F) | (((high[l] >> 2) & 3) << 4)) - 32;
            int c2 = (int8_t)((low[l] >> 4) | (((high[l] >> 4) & 3) << 4)) - 32;
            int c3 = (int8_t)((low[l + 32] >> 4) | (((high[l] >> 6) & 3) << 4)) - 32;
            y[l] = d * sc[is] * c0;
            y[l + 32] = d * sc[is + 2] * c1;
            y[l + 64] = d * sc[is + 4] * c2;
            y[l + 96] = d * sc[is + 6] * c3;
        }
    }
}

// ---- the table ---------------------------------------------------------------------------------------------------

typedef struct {
    int type, elements, bytes;
    void (*encode)(const float *, uint8_t *);
    void (*decode)(const uint8_t *, float *);
} block_format;

static const block_format formats[] = {
    {ARAPACK_GGUF_Q4_0, 32, 18, q4_0_block, q4_0_values},   {ARAPACK_GGUF_Q5_0, 32, 22, q5_0_block, q5_0_values},
    {ARAPACK_GGUF_Q5_1, 32, 24, q5_1_block, q5_1_values},   {ARAPACK_GGUF_Q8_0, 32, 34, NULL, q8_0_values},
    {ARAPACK_GGUF_Q4_K, 256, 144, q4_k_block, q4_k_values}, {ARAPACK_GGUF_Q5_K, 256, 176, q5_k_block, q5_k_values},
    {ARAPACK_GGUF_Q6_K, 256, 210, q6_k_block, q6_k_values},
};

static const block_format *format_of(int type) {
    for (size_t i = 0; i < sizeof formats / sizeof formats[0]; i++) {
        if (formats[i].type == type) return &formats[i];
    }
    return NULL;
}

int64_t arapack_gguf_encode(int type, const float *x, size_t blocks, uint8_t *out) {
    const block_format *f = format_of(type);
    if (!f) return -2;
    // Q8_0 has one encoder, the vectorised one the Q8_0 writer always used (quantize.c).
    if (!f->encode) return arapack_quantize_q8_0(x, blocks, out);
    for (size_t b = 0; b < blocks; b++) {
        const float *v = x + b * (size_t)f->elements;
        for (int j = 0; j < f->elements; j++) {
            if (!isfinite(v[j])) return (int64_t)b;
        }
        f->encode(v, out + b * (size_t)f->bytes);
    }
    return -1;
}

int arapack_gguf_decode(int type, const uint8_t *in, size_t blocks, float *y) {
    const block_format *f = format_of(type);
    if (!f) return -1;
    for (size_t b = 0; b < blocks; b++) f->decode(in + b * (size_t)f->bytes, y + b * (size_t)f->elements);
    return 0;
}
