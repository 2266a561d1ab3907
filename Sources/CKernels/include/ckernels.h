#ifndef ARAPACK_CKERNELS_H
#define ARAPACK_CKERNELS_H
#include <stddef.h>
#include <stdint.h>

/// Adds to stats[0] Σx², stats[1] Σ(x−y)², and raises stats[2] to max|x−y| over n pairs (sums folded into
/// double every 4,096 elements; the lanes make the loops vectorise without reassociating float math).
void arapack_error_stats(const float *x, const float *y, size_t n, double stats[3]);

/// q[i] = round-half-even(clamp(x[i] / scale, low, high)) for n values (a true division, as torch computes it;
/// NaN → 0; low and high whole numbers: −127, 127 for int8, −8, 7 for int4); adds the error of q·scale against x
/// to stats as arapack_error_stats does.
void arapack_quantize_symmetric(const float *x, size_t n, float scale, float low, float high, int8_t *q, double stats[3]);

/// max |x[i]| over n values (NaNs ignored).
float arapack_max_abs(const float *x, size_t n);

/// Exact-erf GELU, 0.5·x·(1 + erf(x/√2)), in place over n values (erf by Abramowitz-Stegun 7.1.26, absolute
/// error below 1.5e-7, as PyTorch's vectorised CPU kernel computes it).
void arapack_gelu_erf(float *p, size_t n);

/// llama.cpp's GELU as ggml-cpu computes it: 0 at or below −10, x at or above 10, else a float16 table of the tanh
/// approximation looked up at x rounded to float16 (the table computed once, in double, with arapack_exp).
void arapack_gelu_ggml(float *p, size_t n);

/// How llama.cpp's CPU matrix products round their activations for a weight of a given type (ggml's vec_dot_type):
/// none for F32, float16 for F16, bfloat16 for BF16, Q8_0 blocks for Q8_0 (and Q4_0, Q5_0, Q5_1, whose products take
/// the same 8-bit values), Q8_K super-blocks for the K-quants.
enum { ARAPACK_ROUND_NONE = 0, ARAPACK_ROUND_Q8_0 = 1, ARAPACK_ROUND_F16 = 2, ARAPACK_ROUND_BF16 = 3, ARAPACK_ROUND_Q8_K = 4 };

/// Rounds n activations in place as ggml-cpu does before a product with a weight of that type (Q8_0: n a multiple
/// of 32; Q8_K: of 256). Exact float operations only: the same bits on every CPU.
void arapack_round_like_ggml(float *x, size_t n, int kind);

/// float32 → float16 bits, round to nearest even, overflow to infinity, NaN stays NaN.
uint16_t arapack_f32_to_f16(float f);

/// float16 bits → float32 (exact).
float arapack_f16_to_f32(uint16_t h);

/// GGUF's Q8_0 of `blocks` blocks of 32 values into 34 bytes each (float16 d = max|x| / 127, then 32 int8
/// round-half-away(x / d)), bit for bit as ggml's reference quantizer and gguf-py. Returns −1, or the index of the
/// first block holding a NaN or infinity (nothing is written for it).
int64_t arapack_quantize_q8_0(const float *x, size_t blocks, uint8_t *out);

/// GGUF's block types by ggml's type number (docs/formats.md, "GGUF block types").
enum {
    ARAPACK_GGUF_Q4_0 = 2, ARAPACK_GGUF_Q5_0 = 6, ARAPACK_GGUF_Q5_1 = 7, ARAPACK_GGUF_Q8_0 = 8,
    ARAPACK_GGUF_Q4_K = 12, ARAPACK_GGUF_Q5_K = 13, ARAPACK_GGUF_Q6_K = 14
};

/// Encodes `blocks` blocks of a GGUF block type (32 values each, 256 for the K-quants) as llama.cpp's reference
/// quantizer does without an importance matrix, bit for bit. Returns −1, the index of the first block holding a NaN
/// or infinity (nothing is written for it), or −2 for a type it does not know.
int64_t arapack_gguf_encode(int type, const float *x, size_t blocks, uint8_t *out);

/// Decodes `blocks` blocks of a GGUF block type into float32 as ggml's dequantize_row_* does. Returns 0, or −1 for a
/// type it does not know.
int arapack_gguf_decode(int type, const uint8_t *in, size_t blocks, float *y);

/// softmax(q·kᵀ·scale + mask)·v for one head of one sequence of `length` positions: q, k, v rows `ld` apart,
/// `head_dim` wide; out rows `out_ld` apart; causal masks keys after the query. Each score is one FMA chain over
/// the head's dimensions, each output one FMA chain over the visible keys in order: the same bits whatever the
/// batch and the CPU. scratch holds head_dim · length + length floats.
void arapack_attention(const float *q, const float *k, const float *v, size_t ld, size_t length, size_t head_dim,
                       float scale, int causal, float *scratch, float *out, size_t out_ld);

/// In-place softmax of row[0..<visible]; row[visible..<length] is set to 0 (masked positions).
void arapack_softmax(float *row, size_t visible, size_t length);

/// LayerNorm of one row of n values: mean and biased variance summed in double (16 lanes, then the lanes
/// in order), then y[i] = (x[i] − mean) · (1/√(variance + eps)) · weight[i] + bias[i] in float.
void arapack_layer_norm(const float *x, float *y, size_t n, const float *weight, const float *bias, float eps);

/// y[r·ldy + c] = base + t[c·ldt + r] for r < rows, c < cols: a GEMM's transposed result (t, cols rows of ldt)
/// added into row-major y. base is bias[c], plus y's own value first when accumulate is non-zero
/// ((y + bias) + t); with no bias, base is y's value (accumulate) or nothing (y = t exactly).
void arapack_add_transposed(const float *t, size_t ldt, size_t cols, size_t rows, float *y, size_t ldy, const float *bias,
                            int accumulate);

/// dst[c · dst_stride + r] = src[r · src_stride + c] for r < rows, c < cols, elements of `element_size` bytes
/// (1, 2, 4 or 8; strides in elements), in 32 × 32 tiles so both sides stay in cache. src and dst must not overlap.
void arapack_transpose(const void *src, size_t src_stride, void *dst, size_t dst_stride, size_t rows, size_t cols,
                       size_t element_size);

/// Instruction sets the forward pass's kernels are built for. Every kernel gives the same bits on each.
enum { ARAPACK_ISA_GENERIC = 0, ARAPACK_ISA_AVX2 = 1, ARAPACK_ISA_AVX512 = 2 };

/// The widest instruction set this CPU runs.
int arapack_isa_best(void);

/// The instruction set the kernels use now (the widest, unless arapack_set_isa chose another).
int arapack_isa(void);

/// Makes the kernels use `isa`; -1 (and no change) when this CPU cannot run it.
int arapack_set_isa(int isa);

/// Rows of x rounded up to whole 16-row panels: the packed layout's row count.
size_t arapack_packed_rows(size_t rows);

/// Packs x (rows × k, rows ldx apart) into 16-row panels: xp[p·k·16 + i·16 + lane] = x[(p·16 + lane)·ldx + i],
/// zero for rows past `rows`. xp holds arapack_packed_rows(rows) · k floats.
void arapack_pack_rows(const float *x, size_t ldx, size_t rows, size_t k, float *xp);

/// t[c·ldt + r] = Σ_i w[c·ldw + i] · x[r][i] for c < cols and every packed row r (ldt ≥ the packed rows), x packed
/// by arapack_pack_rows. Each element is one chain of fused multiply-adds in i order starting at +0, so it has the
/// same bits whatever the rows, the columns asked for, the caller's thread and the instruction set.
void arapack_gemm_nt(const float *xp, size_t rows, size_t k, const float *w, size_t ldw, size_t cols, float *t, size_t ldt);

/// e^x in double within about 1 ulp, the same bits on every CPU (no C-library dispatch).
double arapack_exp(double x);

/// The natural logarithm in double within about 1 ulp, the same bits on every CPU.
double arapack_log(double x);

/// One position's logits: a (reference) and b (candidate), n each. out[0] = log Σ exp(a), out[1] = log Σ exp(b),
/// out[2] = KL(softmax a ‖ softmax b) = Σ p_a · (log p_a − log p_b); sums in double over fixed lanes in order.
void arapack_softmax_kl(const float *a, const float *b, size_t n, double out[3]);

#endif
