#include "ckernels.h"
#include <math.h>
#include <stdint.h>
#include <string.h>

// Element-wise kernels of the forward pass. Each loop is written once (an always-inline body) and
// compiled twice: for the baseline x86-64 target and for AVX2 + FMA, picked at run time. The exp and
// erf here are the ones PyTorch's vectorised CPU kernels use in kind: a Cephes-style expf (within 2 ulp)
// and Abramowitz-Stegun 7.1.26 for erf (absolute error below 1.5e-7), which Vectorized<float>::erf
// also implements, so GELU agrees with torch's vectorised GELU far inside the golden tolerance.

#define LANES 16
#define INLINE static inline __attribute__((always_inline))

INLINE float exp_approx(float x) {
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

INLINE void gelu_body(float *p, size_t n) {
    for (size_t i = 0; i < n; i++) {
        float x = p[i], z = x * 0.70710678118654752f, a = fabsf(z);
        float t = 1.0f / (1.0f + 0.3275911f * a);
        float r = ((((1.061405429f * t - 1.453152027f) * t + 1.421413741f) * t - 0.284496736f) * t + 0.254829592f) * t;
        float e = copysignf(1.0f - r * exp_approx(-a * a), z);
        p[i] = 0.5f * x * (1.0f + e);
    }
}

INLINE void softmax_body(float *row, size_t visible, size_t length) {
    float top[LANES];
    for (int l = 0; l < LANES; l++) top[l] = -INFINITY;
    size_t vend = visible - visible % LANES;
    for (size_t i = 0; i < vend; i += LANES)
        for (int l = 0; l < LANES; l++) top[l] = row[i + l] > top[l] ? row[i + l] : top[l];
    float m = -INFINITY;
    for (int l = 0; l < LANES; l++) m = top[l] > m ? top[l] : m;
    for (size_t i = vend; i < visible; i++) m = row[i] > m ? row[i] : m;
    float sums[LANES] = {0};
    for (size_t i = 0; i < vend; i += LANES)
        for (int l = 0; l < LANES; l++) {
            float e = exp_approx(row[i + l] - m);
            row[i + l] = e;
            sums[l] += e;
        }
    float sum = 0;
    for (int l = 0; l < LANES; l++) sum += sums[l];
    for (size_t i = vend; i < visible; i++) {
        row[i] = exp_approx(row[i] - m);
        sum += row[i];
    }
    float inv = 1.0f / sum;
    for (size_t i = 0; i < visible; i++) row[i] *= inv;
    for (size_t i = visible; i < length; i++) row[i] = 0.0f;
}

#if defined(__x86_64__)
#define FAST __attribute__((target("avx2,fma")))
static int fast_ok(void) {
    static int ok = -1;
    if (ok < 0) {
        __builtin_cpu_init();
        ok = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    }
    return ok;
}
FAST static void gelu_fast(float *p, size_t n) { gelu_body(p, n); }
FAST static void softmax_fast(float *row, size_t visible, size_t length) { softmax_body(row, visible, length); }
#endif

void arapack_gelu_erf(float *p, size_t n) {
#if defined(__x86_64__)
    if (fast_ok()) { gelu_fast(p, n); return; }
#endif
    gelu_body(p, n);
}

void arapack_softmax(float *row, size_t visible, size_t length) {
#if defined(__x86_64__)
    if (fast_ok()) { softmax_fast(row, visible, length); return; }
#endif
    softmax_body(row, visible, length);
}
