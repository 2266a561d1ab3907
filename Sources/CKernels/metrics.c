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

/// The KL sum's scalar tail from `from` to `n` added to `kl`, and the three results.
ARAPACK_INLINE void finish_kl(const float *a, const float *b, size_t from, size_t n, double za, double zb, double kl, double out[3]) {
    for (size_t i = from; i < n; i++) {
        double la = (double)a[i] - za, lb = (double)b[i] - zb;
        kl += exp_body(la) * (la - lb);
    }
    out[0] = za;
    out[1] = zb;
    out[2] = kl;
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
    finish_kl(a, b, vend, n, za, zb, kl, out);
}

#if defined(__x86_64__)
// The same three functions four doubles at a time, by hand: the compiler's vectorisation of the loops above leaves
// exp's integer conversions scalar. Every lane runs exp_body's operations in its order (AVX2 without FMA: no
// instruction here can fuse a multiply and an add), each lane of the sums is one of KL_LANES above, and the lanes are
// folded as above: the same bits as the portable build.
#define V4 __attribute__((target("avx2"), always_inline)) static inline

V4 __m256d exp4(__m256d x) {
    const __m256d low = _mm256_set1_pd(-746.0), high = _mm256_set1_pd(710.0);
    __m256d c = _mm256_blendv_pd(x, low, _mm256_cmp_pd(x, low, _CMP_LT_OQ));
    c = _mm256_blendv_pd(c, high, _mm256_cmp_pd(c, high, _CMP_GT_OQ));
    __m256d n = _mm256_floor_pd(_mm256_add_pd(_mm256_mul_pd(c, _mm256_set1_pd(1.44269504088896338700e+00)), _mm256_set1_pd(0.5)));
    n = _mm256_blendv_pd(_mm256_setzero_pd(), n, _mm256_cmp_pd(n, n, _CMP_EQ_OQ));
    __m256d r = _mm256_sub_pd(_mm256_sub_pd(c, _mm256_mul_pd(n, _mm256_set1_pd(ln2_hi))), _mm256_mul_pd(n, _mm256_set1_pd(ln2_lo)));
    static const double terms[] = {1.0 / 479001600.0, 1.0 / 39916800.0, 1.0 / 3628800.0, 1.0 / 362880.0, 1.0 / 40320.0,
                                   1.0 / 5040.0,      1.0 / 720.0,      1.0 / 120.0,     1.0 / 24.0,     1.0 / 6.0,  0.5};
    __m256d p = _mm256_set1_pd(1.0 / 6227020800.0);
    for (int i = 0; i < 11; i++) p = _mm256_add_pd(_mm256_mul_pd(p, r), _mm256_set1_pd(terms[i]));
    p = _mm256_add_pd(_mm256_add_pd(_mm256_mul_pd(p, _mm256_mul_pd(r, r)), r), _mm256_set1_pd(1.0));
    // e = n (integral, |n| ≤ 1077: exact in 32 bits); half = e / 2 rounded toward zero, as C divides.
    __m128i e = _mm256_cvtpd_epi32(n);
    __m128i half = _mm_srai_epi32(_mm_add_epi32(e, _mm_srli_epi32(e, 31)), 1), rest = _mm_sub_epi32(e, half);
    const __m128i bias = _mm_set1_epi32(1023);
    __m256d scale1 = _mm256_castsi256_pd(_mm256_slli_epi64(_mm256_cvtepi32_epi64(_mm_add_epi32(half, bias)), 52));
    __m256d scale2 = _mm256_castsi256_pd(_mm256_slli_epi64(_mm256_cvtepi32_epi64(_mm_add_epi32(rest, bias)), 52));
    __m256d y = _mm256_mul_pd(_mm256_mul_pd(p, scale1), scale2);
    y = _mm256_blendv_pd(y, _mm256_set1_pd(INFINITY), _mm256_cmp_pd(x, _mm256_set1_pd(709.79), _CMP_GT_OQ));
    y = _mm256_blendv_pd(y, _mm256_setzero_pd(), _mm256_cmp_pd(x, low, _CMP_LT_OQ));
    return _mm256_blendv_pd(y, x, _mm256_cmp_pd(x, x, _CMP_UNORD_Q));
}

/// The KL_LANES lanes of a sum (lanes 0–3 in lo, 4–7 in hi) folded in lane order, as the portable build folds them.
V4 double fold_lanes(__m256d lo, __m256d hi) {
    double lanes[KL_LANES], sum = 0;
    _mm256_storeu_pd(lanes, lo);
    _mm256_storeu_pd(lanes + 4, hi);
    for (int l = 0; l < KL_LANES; l++) sum += lanes[l];
    return sum;
}

V4 double log_sum_exp_avx2(const float *x, size_t n) {
    // The maximum: each lane keeps x > top ? x : top (a NaN never wins), then the lanes and the tail. Only a tie of
    // +0 and −0 could end with another zero than the portable loop's, and x − top, exp and top + log Σ come out the same.
    size_t vend = n - n % KL_LANES;
    __m256 tops = _mm256_set1_ps(-INFINITY);
    for (size_t i = 0; i < vend; i += KL_LANES) tops = _mm256_max_ps(_mm256_loadu_ps(x + i), tops);
    float lanes[KL_LANES], top = -INFINITY;
    _mm256_storeu_ps(lanes, tops);
    for (int l = 0; l < KL_LANES; l++) top = lanes[l] > top ? lanes[l] : top;
    for (size_t i = vend; i < n; i++) top = x[i] > top ? x[i] : top;
    __m256d t = _mm256_set1_pd((double)top), lo = _mm256_setzero_pd(), hi = _mm256_setzero_pd();
    for (size_t i = 0; i < vend; i += KL_LANES) {
        __m256 v = _mm256_loadu_ps(x + i);
        lo = _mm256_add_pd(lo, exp4(_mm256_sub_pd(_mm256_cvtps_pd(_mm256_castps256_ps128(v)), t)));
        hi = _mm256_add_pd(hi, exp4(_mm256_sub_pd(_mm256_cvtps_pd(_mm256_extractf128_ps(v, 1)), t)));
    }
    double sum = fold_lanes(lo, hi);
    for (size_t i = vend; i < n; i++) sum += exp_body((double)x[i] - (double)top);
    return (double)top + arapack_log(sum);
}

__attribute__((target("avx2"))) static void softmax_kl_avx2(const float *a, const float *b, size_t n, double out[3]) {
    double za = log_sum_exp_avx2(a, n), zb = log_sum_exp_avx2(b, n);
    size_t vend = n - n % KL_LANES;
    __m256d ta = _mm256_set1_pd(za), tb = _mm256_set1_pd(zb), lo = _mm256_setzero_pd(), hi = _mm256_setzero_pd();
    for (size_t i = 0; i < vend; i += KL_LANES) {
        __m256 va = _mm256_loadu_ps(a + i), vb = _mm256_loadu_ps(b + i);
        __m256d la = _mm256_sub_pd(_mm256_cvtps_pd(_mm256_castps256_ps128(va)), ta);
        __m256d lb = _mm256_sub_pd(_mm256_cvtps_pd(_mm256_castps256_ps128(vb)), tb);
        lo = _mm256_add_pd(lo, _mm256_mul_pd(exp4(la), _mm256_sub_pd(la, lb)));
        la = _mm256_sub_pd(_mm256_cvtps_pd(_mm256_extractf128_ps(va, 1)), ta);
        lb = _mm256_sub_pd(_mm256_cvtps_pd(_mm256_extractf128_ps(vb, 1)), tb);
        hi = _mm256_add_pd(hi, _mm256_mul_pd(exp4(la), _mm256_sub_pd(la, lb)));
    }
    finish_kl(a, b, vend, n, za, zb, fold_lanes(lo, hi), out);
}

void arapack_softmax_kl(const float *a, const float *b, size_t n, double out[3]) {
    if (arapack_isa() != ARAPACK_ISA_GENERIC) softmax_kl_avx2(a, b, n, out);
    else softmax_kl_body(a, b, n, out);
}
#else
ARAPACK_DISPATCH_VOID(softmax_kl, (const float *a, const float *b, size_t n, double out[3]), (a, b, n, out))
#endif
