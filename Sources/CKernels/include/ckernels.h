#ifndef ARAPACK_CKERNELS_H
#define ARAPACK_CKERNELS_H
#include <stddef.h>
#include <stdint.h>

/// Adds to stats[0] Σx², stats[1] Σ(x−y)², and raises stats[2] to max|x−y| over n pairs (sums folded into
/// double every 4,096 elements; the lanes make the loops vectorise without reassociating float math).
void arapack_error_stats(const float *x, const float *y, size_t n, double stats[3]);

/// q[i] = clamp(round-half-even(x[i] / scale), −127, 127) for n values (a true division, as torch
/// computes it; NaN → 0); adds the error of q·scale against x to stats as arapack_error_stats does.
void arapack_quantize_int8(const float *x, size_t n, float scale, int8_t *q, double stats[3]);

/// max |x[i]| over n values (NaNs ignored).
float arapack_max_abs(const float *x, size_t n);

/// Exact-erf GELU, 0.5·x·(1 + erf(x/√2)), in place over n values (erf by Abramowitz-Stegun 7.1.26, absolute
/// error below 1.5e-7, as PyTorch's vectorised CPU kernel computes it).
void arapack_gelu_erf(float *p, size_t n);

/// In-place softmax of row[0..<visible]; row[visible..<length] is set to 0 (masked positions).
void arapack_softmax(float *row, size_t visible, size_t length);

/// LayerNorm of one row of n values: mean and biased variance summed in double (16 lanes, then the lanes
/// in order), then y[i] = (x[i] − mean) · (1/√(variance + eps)) · weight[i] + bias[i] in float.
void arapack_layer_norm(const float *x, float *y, size_t n, const float *weight, const float *bias, float eps);

/// y[r·ldy + c] = base + t[c·rows + r] for r < rows, c < cols: a GEMM's transposed result (t, cols × rows)
/// added into row-major y. base is bias[c], plus y's own value first when accumulate is non-zero
/// ((y + bias) + t); with no bias, base is y's value (accumulate) or nothing (y = t exactly).
void arapack_add_transposed(const float *t, size_t cols, size_t rows, float *y, size_t ldy, const float *bias,
                            int accumulate);

/// dst[c · dst_stride + r] = src[r · src_stride + c] for r < rows, c < cols, elements of `element_size` bytes
/// (1, 2, 4 or 8; strides in elements), in 32 × 32 tiles so both sides stay in cache. src and dst must not overlap.
void arapack_transpose(const void *src, size_t src_stride, void *dst, size_t dst_stride, size_t rows, size_t cols,
                       size_t element_size);

#endif
