#include "kernel.h"
#include <math.h>
#include <stdint.h>
#include <string.h>

// exp and log in double for the parity metrics, written here rather than taken from the C library, whose
// exp and log pick an FMA or a plain build by CPU and may round differently: plain multiplies and adds in one
// order (contraction off), so a report's figures have the same bits on every machine.

#pragma STDC FP_CONTRACT OFF

/// The lanes log Σ exp and KL keep their double sums in (8: fewer than the element-wise loops' 16, kept as the
/// reports were first computed).
#define KL_LANES 8

static const double ln2_hi = 6.93147180369123816490e-01;  // fdlibm's split of ln 2: n · ln2_hi is exact for |n| < 2^11
static const double ln2_lo = 1.90821492927058770002e-10;

ARAPACK_INLINE double pow2i(int64_t n) {  // 2^n for −1022 ≤ n ≤ 1023
    uint64_t bits = (uint64_t)(n + 1023) << 52;
    double v;
    memcpy(&v, &bits, sizeof v);
    return v;
}

/// e^x within about 1 ulp: x = n·ln 2 + r, |r| ≤ ln 2 / 2, e^r by its Taylor series to r^13, then scaled by 2^n
/// in two steps (so subnormal results round once). Below −746 the result is +0; above 709.79, +inf; NaN stays NaN.
ARAPACK_INLINE double exp_body(double x) {
    double c = x < -746.0 ? -746.0 : x;
    c = c > 710.0 ? 710.0 : c;
    double n = floor(c * 1.44269504088896338700e+00 + 0.5);
    n = n == n ? n : 0.0;
    double r = (c - n * ln2_hi) - n * ln2_lo;
    double p = 1.0 / 6227020800.0;
    p = p * r + 1.0 / 479001600.0;
    p = p * r + 1.0 / 39916800.0;
    p = p * r + 1.0 / 3628800.0;
    p = p * r + 1.0 / 362880.0;
    p = p * r + 1.0 / 40320.0;
    p = p * r + 1.0 / 5040.0;
    p = p * r + 1.0 / 720.0;
    p = p * r + 1.0 / 120.0;
    p = p * r + 1.0 / 24.0;
    p = p * r + 1.0 / 6.0;
    p = p * r + 0.5;
    p = p * (r * r) + r + 1.0;
    int64_t e = (int64_t)n, half = e / 2;
    double y = p * pow2i(half) * pow2i(e - half);
    return x != x ? x : (x < -746.0 ? 0.0 : (x > 709.79 ? INFINITY : y));
}

double arapack_exp(double x) { return exp_body(x); }

double arapack_log(double x) {
    if (x != x || x < 0) return NAN;
    if (x == 0) return -INFINITY;
    if (isinf(x)) return x;
    int e;
    double m = frexp(x, &e);  // x = m · 2^e, m in [1/2, 1)
    if (m < 0.70710678118654752440) {
        m = m * 2.0;
        e -= 1;
    }
    // log m = 2·atanh(f), f = (m − 1)/(m + 1), |f| ≤ 0.1716: the odd series to f^23.
    double f = (m - 1.0) / (m + 1.0), s = f * f;
    double p = 1.0 / 23.0;
    for (int k = 21; k >= 1; k -= 2) p = p * s + 1.0 / (double)k;
    double de = (double)e;
    return de * ln2_hi + (2.0 * f * p + de * ln2_lo);
}


/// log Σ exp(x[i]): the maximum, then Σ exp(x − max) in double over KL_LANES lanes folded in order.
ARAPACK_INLINE double log_sum_exp(const float *x, size_t n) {
    float top = -INFINITY;
    for (size_t i = 0; i < n; i++) top = x[i] > top ? x[i] : top;
    double lanes[KL_LANES] = {0}, sum = 0;
    size_t vend = n - n % KL_LANES;
    for (size_t i = 0; i < vend; i += KL_LANES)
        for (int l = 0; l < KL_LANES; l++) lanes[l] += exp_body((double)x[i + l] - (double)top);
    for (int l = 0; l < KL_LANES; l++) sum += lanes[l];
    for (size_t i = vend; i < n; i++) sum += exp_body((double)x[i] - (double)top);
    return (double)top + arapack_log(sum);
}

ARAPACK_INLINE void softmax_kl_body(const float *a, const float *b, size_t n, double out[3]) {
    double za = log_sum_exp(a, n), zb = log_sum_exp(b, n);
    double lanes[KL_LANES] = {0}, kl = 0;
    size_t vend = n - n % KL_LANES;
    for (size_t i = 0; i < vend; i += KL_LANES)
        for (int l = 0; l < KL_LANES; l++) {
            double la = (double)a[i + l] - za, lb = (double)b[i + l] - zb;
            lanes[l] += exp_body(la) * (la - lb);
        }
    for (int l = 0; l < KL_LANES; l++) kl += lanes[l];
    for (size_t i = vend; i < n; i++) {
        double la = (double)a[i] - za, lb = (double)b[i] - zb;
        kl += exp_body(la) * (la - lb);
    }
    out[0] = za;
    out[1] = zb;
    out[2] = kl;
}

ARAPACK_DISPATCH_VOID(softmax_kl, (const float *a, const float *b, size_t n, double out[3]), (a, b, n, out))
