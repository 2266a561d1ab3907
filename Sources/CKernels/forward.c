#include "kernel.h"
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <string.h>

// Element-wise kernels of the forward pass, and its attention. Each loop is written once (an always-inline body)
// and compiled for the baseline x86-64 target and for AVX2 + FMA, picked by arapack_isa(). Floating-point
// contraction is off, and the only fused multiply-adds are explicit fmaf calls, so both builds (and every
// vector width the compiler picks) compute the same operations in the same order: the same bits on every CPU.
// The exp and erf here are the ones PyTorch's vectorised CPU kernels use in kind: a Cephes-style expf (within
// 2 ulp) and Abramowitz-Stegun 7.1.26 for erf (absolute error below 1.5e-7), which Vectorized<float>::erf also
// implements, so GELU agrees with torch's vectorised GELU far inside the golden tolerance.

#pragma STDC FP_CONTRACT OFF


ARAPACK_INLINE float exp_approx(float x) {
    x = x < -87.0f ? -87.0f : x;
    x = x > 88.0f ? 88.0f : x;
    float fx = floorf(x * 1.44269504088896341f + 0.5f);
    fx = fx == fx ? fx : 0.0f;  // NaN in, NaN out (below), without converting NaN to an integer
    float r = x - fx * 0.693359375f;
    r = r + fx * 2.12194440e-4f;
    float y = 1.9875691500e-4f;
    y = y * r + 1.3981999507e-3f;
    y = y * r + 8.3334519073e-3f;
    y = y * r + 4.1665795894e-2f;
    y = y * r + 1.6666665459e-1f;
    y = y * r + 5.0000001201e-1f;
    y = y * (r * r) + r + 1.0f;
    uint32_t bits = (uint32_t)((int32_t)fx + 127) << 23;
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    return y * scale;
}

ARAPACK_INLINE void gelu_erf_body(float *p, size_t n) {
    for (size_t i = 0; i < n; i++) {
        float x = p[i], z = x * 0.70710678118654752f, a = fabsf(z);
        float t = 1.0f / (1.0f + 0.3275911f * a);
        float r = ((((1.061405429f * t - 1.453152027f) * t + 1.421413741f) * t - 0.284496736f) * t + 0.254829592f) * t;
        float e = copysignf(1.0f - r * exp_approx(-a * a), z);
        p[i] = 0.5f * x * (1.0f + e);
    }
}

ARAPACK_INLINE void softmax_body(float *row, size_t visible, size_t length) {
    float top[ARAPACK_LANES];
    for (int l = 0; l < ARAPACK_LANES; l++) top[l] = -INFINITY;
    size_t vend = visible - visible % ARAPACK_LANES;
    for (size_t i = 0; i < vend; i += ARAPACK_LANES)
        for (int l = 0; l < ARAPACK_LANES; l++) top[l] = row[i + l] > top[l] ? row[i + l] : top[l];
    float m = -INFINITY;
    for (int l = 0; l < ARAPACK_LANES; l++) m = top[l] > m ? top[l] : m;
    for (size_t i = vend; i < visible; i++) m = row[i] > m ? row[i] : m;
    float sums[ARAPACK_LANES] = {0};
    for (size_t i = 0; i < vend; i += ARAPACK_LANES)
        for (int l = 0; l < ARAPACK_LANES; l++) {
            float e = exp_approx(row[i + l] - m);
            row[i + l] = e;
            sums[l] += e;
        }
    float sum = 0;
    for (int l = 0; l < ARAPACK_LANES; l++) sum += sums[l];
    for (size_t i = vend; i < visible; i++) {
        row[i] = exp_approx(row[i] - m);
        sum += row[i];
    }
    float inv = 1.0f / sum;
    for (size_t i = 0; i < visible; i++) row[i] *= inv;
    for (size_t i = visible; i < length; i++) row[i] = 0.0f;
}

ARAPACK_INLINE void layer_norm_body(const float *x, float *y, size_t n, const float *weight, const float *bias, float eps) {
    double lanes[ARAPACK_LANES] = {0};
    size_t vend = n - n % ARAPACK_LANES;
    for (size_t i = 0; i < vend; i += ARAPACK_LANES)
        for (int l = 0; l < ARAPACK_LANES; l++) lanes[l] += (double)x[i + l];
    double sum = 0;
    for (int l = 0; l < ARAPACK_LANES; l++) sum += lanes[l];
    for (size_t i = vend; i < n; i++) sum += (double)x[i];
    double mean = sum / (double)n;
    for (int l = 0; l < ARAPACK_LANES; l++) lanes[l] = 0;
    for (size_t i = 0; i < vend; i += ARAPACK_LANES)
        for (int l = 0; l < ARAPACK_LANES; l++) {
            double d = (double)x[i + l] - mean;
            lanes[l] += d * d;
        }
    double squares = 0;
    for (int l = 0; l < ARAPACK_LANES; l++) squares += lanes[l];
    for (size_t i = vend; i < n; i++) {
        double d = (double)x[i] - mean;
        squares += d * d;
    }
    float inv = (float)(1.0 / sqrt(squares / (double)n + (double)eps)), m = (float)mean;
    for (size_t i = 0; i < n; i++) y[i] = (x[i] - m) * inv * weight[i] + bias[i];
}

/// The scalar form of arapack_add_transposed, over t with rows `ldt` apart (so it also serves the edges).
ARAPACK_INLINE void add_transposed_body(const float *t, size_t ldt, size_t cols, size_t rows, float *y, size_t ldy,
                                const float *bias, int accumulate) {
    for (size_t r = 0; r < rows; r++) {
        float *out = y + r * ldy;
        const float *in = t + r;
        if (bias && accumulate)
            for (size_t c = 0; c < cols; c++) out[c] = (out[c] + bias[c]) + in[c * ldt];
        else if (bias)
            for (size_t c = 0; c < cols; c++) out[c] = bias[c] + in[c * ldt];
        else if (accumulate)
            for (size_t c = 0; c < cols; c++) out[c] += in[c * ldt];
        else
            for (size_t c = 0; c < cols; c++) out[c] = in[c * ldt];
    }
}


/// One head of attention for one sequence (see arapack_attention): k transposed once into kt (head_dim × length),
/// then per query row: scores as FMA chains over the head's dimensions, softmax over the visible keys, and the
/// output as FMA chains over those keys in order. Each chain starts at +0 and runs in the same order whatever
/// block it falls in; blocks of ATTENTION_BLOCK keys (scores) or dimensions (output) only keep their chains in
/// registers instead of in memory, which changes no bit.
#define ATTENTION_BLOCK 64
ARAPACK_INLINE void attention_body(const float *q, const float *k, const float *v, size_t ld, size_t length, size_t head_dim,
                                   float scale, int causal, float *scratch, float *out, size_t out_ld) {
    float *kt = scratch, *s = scratch + head_dim * length;
    for (size_t j = 0; j < length; j++)
        for (size_t c = 0; c < head_dim; c++) kt[c * length + j] = k[j * ld + c];
    for (size_t i = 0; i < length; i++) {
        size_t visible = causal ? i + 1 : length;
        const float *qi = q + i * ld;
        // A block past the visible keys (but inside kt) computes chains nobody reads: cheaper than strided ones.
        size_t j = 0;
        for (; j < visible && j + ATTENTION_BLOCK <= length; j += ATTENTION_BLOCK) {
            float acc[ATTENTION_BLOCK] = {0};
            for (size_t c = 0; c < head_dim; c++) {
                float qc = qi[c];
                const float *kc = kt + c * length + j;
                for (int b = 0; b < ATTENTION_BLOCK; b++) acc[b] = fmaf(qc, kc[b], acc[b]);
            }
            size_t used = visible - j < ATTENTION_BLOCK ? visible - j : ATTENTION_BLOCK;
            for (size_t b = 0; b < used; b++) s[j + b] = acc[b];
        }
        for (; j < visible; j++) {
            float acc = 0.0f;
            for (size_t c = 0; c < head_dim; c++) acc = fmaf(qi[c], kt[c * length + j], acc);
            s[j] = acc;
        }
        for (size_t j = 0; j < visible; j++) s[j] = s[j] * scale;
        softmax_body(s, visible, visible);
        float *o = out + i * out_ld;
        size_t c = 0;
        for (; c + ATTENTION_BLOCK <= head_dim; c += ATTENTION_BLOCK) {
            float acc[ATTENTION_BLOCK] = {0};
            for (size_t j = 0; j < visible; j++) {
                float p = s[j];
                const float *vj = v + j * ld + c;
                for (int b = 0; b < ATTENTION_BLOCK; b++) acc[b] = fmaf(p, vj[b], acc[b]);
            }
            for (int b = 0; b < ATTENTION_BLOCK; b++) o[c + b] = acc[b];
        }
        for (; c < head_dim; c++) {
            float acc = 0.0f;
            for (size_t j = 0; j < visible; j++) acc = fmaf(s[j], v[j * ld + c], acc);
            o[c] = acc;
        }
    }
}

#if defined(__x86_64__)
// 8 × 8 blocks transposed in registers; the same additions in the same order as the scalar form, so both
// give identical bits. The ragged right and bottom edges go through the scalar form.
ARAPACK_FAST static void add_transposed_fast(const float *t, size_t ldt, size_t cols, size_t rows, float *y, size_t ldy,
                                     const float *bias, int accumulate) {
    size_t rows8 = rows - rows % 8, cols8 = cols - cols % 8;
    for (size_t r = 0; r < rows8; r += 8) {
        for (size_t c = 0; c < cols8; c += 8) {
            __m256 v[8], u[8];
            for (int i = 0; i < 8; i++) v[i] = _mm256_loadu_ps(t + (c + i) * ldt + r);
            arapack_transpose8_ps(v, u);  // u[j]: y row r+j, columns c ..< c+8
            __m256 b = bias ? _mm256_loadu_ps(bias + c) : _mm256_setzero_ps();
            for (int j = 0; j < 8; j++) {
                float *out = y + (r + (size_t)j) * ldy + c;
                __m256 row = u[j];
                if (bias) row = _mm256_add_ps(accumulate ? _mm256_add_ps(_mm256_loadu_ps(out), b) : b, row);
                else if (accumulate) row = _mm256_add_ps(_mm256_loadu_ps(out), row);
                _mm256_storeu_ps(out, row);
            }
        }
    }
    if (cols8 < cols)
        add_transposed_body(t + cols8 * ldt, ldt, cols - cols8, rows8, y + cols8, ldy, bias ? bias + cols8 : 0, accumulate);
    if (rows8 < rows)
        add_transposed_body(t + rows8, ldt, cols, rows - rows8, y + rows8 * ldy, ldy, bias, accumulate);
}
#endif



void arapack_add_transposed(const float *t, size_t ldt, size_t cols, size_t rows, float *y, size_t ldy, const float *bias,
                            int accumulate) {
#if defined(__x86_64__)
    if (arapack_isa() != ARAPACK_ISA_GENERIC) { add_transposed_fast(t, ldt, cols, rows, y, ldy, bias, accumulate); return; }
#endif
    add_transposed_body(t, ldt, cols, rows, y, ldy, bias, accumulate);
}

ARAPACK_DISPATCH_VOID(gelu_erf, (float *p, size_t n), (p, n))
ARAPACK_DISPATCH_VOID(softmax, (float *row, size_t visible, size_t length), (row, visible, length))
ARAPACK_DISPATCH_VOID(layer_norm, (const float *x, float *y, size_t n, const float *weight, const float *bias, float eps),
                      (x, y, n, weight, bias, eps))
ARAPACK_DISPATCH_VOID(attention, (const float *q, const float *k, const float *v, size_t ld, size_t length, size_t head_dim,
                                  float scale, int causal, float *scratch, float *out, size_t out_ld),
                      (q, k, v, ld, length, head_dim, scale, causal, scratch, out, out_ld))

// llama.cpp's GELU (ggml-cpu's ggml_vec_gelu_f32 with GGML_GELU_FP16): 0 at or below −10, x at or above 10, else a
// float16 table of the tanh approximation, 0.5·x·(1 + tanh(√(2/π)·x·(1 + 0.044715·x²))), looked up at x rounded to
// float16. The table is computed here in double precision with arapack's own exp, rounded once to float16, so it is the
// same on every machine (ggml's own is computed in float with the C library's tanhf; they differ at most at a rounding
// boundary of float16).
static uint16_t gelu_ggml_table[1 << 16];
static pthread_once_t gelu_ggml_once = PTHREAD_ONCE_INIT;


static void gelu_ggml_fill(void) {
    for (uint32_t i = 0; i < (1u << 16); i++) {
        double x = arapack_f16_to_f32((uint16_t)i);
        double u = 0.79788456080286535587989211986876 * x * (1.0 + 0.044715 * x * x);
        double e = arapack_exp(-2.0 * fabs(u));
        double t = copysign((1.0 - e) / (1.0 + e), u);
        gelu_ggml_table[i] = arapack_f32_to_f16((float)(0.5 * x * (1.0 + t)));
    }
}

void arapack_gelu_ggml(float *p, size_t n) {
    pthread_once(&gelu_ggml_once, gelu_ggml_fill);
    for (size_t i = 0; i < n; i++) {
        float x = p[i];
        if (x <= -10.0f) p[i] = 0.0f;
        else if (x >= 10.0f) p[i] = x;
        else p[i] = arapack_f16_to_f32(gelu_ggml_table[arapack_f32_to_f16(x)]);
    }
}
