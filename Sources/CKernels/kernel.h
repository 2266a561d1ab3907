// What the kernels share, written once: the inline attribute, the AVX2 + FMA build target, the lane count of the
// element-wise loops, the one-body-two-builds dispatch, and an 8 × 8 in-register transpose. Internal to CKernels.
#ifndef ARAPACK_KERNEL_H
#define ARAPACK_KERNEL_H
#include "ckernels.h"

#define ARAPACK_INLINE static inline __attribute__((always_inline))

/// The lanes the element-wise loops (quantization statistics, LayerNorm) keep their partial sums in, folded in order.
#define ARAPACK_LANES 16

#if defined(__x86_64__)
#include <immintrin.h>
#define ARAPACK_FAST __attribute__((target("avx2,fma")))

/// One kernel, two builds of one body: `NAME_body` (portable loops, contraction off) compiled again for AVX2 + FMA as
/// `NAME_fast`, and the public `arapack_NAME` picking by arapack_isa(), which ARAPACK_ISA sets. Both builds run the
/// same operations in the same order: the same bits.
#define ARAPACK_DISPATCH(RET, NAME, PARAMS, ARGS)                                                                  \
    ARAPACK_FAST static RET NAME##_fast PARAMS { return NAME##_body ARGS; }                                       \
    RET arapack_##NAME PARAMS { return arapack_isa() != ARAPACK_ISA_GENERIC ? NAME##_fast ARGS : NAME##_body ARGS; }
#define ARAPACK_DISPATCH_VOID(NAME, PARAMS, ARGS)                                                                  \
    ARAPACK_FAST static void NAME##_fast PARAMS { NAME##_body ARGS; }                                             \
    void arapack_##NAME PARAMS {                                                                                  \
        if (arapack_isa() != ARAPACK_ISA_GENERIC) NAME##_fast ARGS;                                               \
        else NAME##_body ARGS;                                                                                     \
    }

// On entry v[i] is row i of the block; on return out[j] is column j. Pure shuffles, so every bit pattern
// (NaN payloads included) passes unchanged.
__attribute__((target("avx2"), always_inline)) static inline void arapack_transpose8_ps(__m256 v[8], __m256 out[8]) {
    __m256 u[8];
    for (int i = 0; i < 8; i += 2) {
        u[i] = _mm256_unpacklo_ps(v[i], v[i + 1]);
        u[i + 1] = _mm256_unpackhi_ps(v[i], v[i + 1]);
    }
    for (int i = 0; i < 8; i += 4) {
        v[i] = _mm256_shuffle_ps(u[i], u[i + 2], 0x44);
        v[i + 1] = _mm256_shuffle_ps(u[i], u[i + 2], 0xEE);
        v[i + 2] = _mm256_shuffle_ps(u[i + 1], u[i + 3], 0x44);
        v[i + 3] = _mm256_shuffle_ps(u[i + 1], u[i + 3], 0xEE);
    }
    // v[j] and v[j+4] (j < 4) now hold column j and j+4 split across their 128-bit halves; pair them up.
    for (int j = 0; j < 4; j++) {
        out[j] = _mm256_permute2f128_ps(v[j], v[j + 4], 0x20);
        out[j + 4] = _mm256_permute2f128_ps(v[j], v[j + 4], 0x31);
    }
}
#else
#define ARAPACK_DISPATCH(RET, NAME, PARAMS, ARGS) RET arapack_##NAME PARAMS { return NAME##_body ARGS; }
#define ARAPACK_DISPATCH_VOID(NAME, PARAMS, ARGS) void arapack_##NAME PARAMS { NAME##_body ARGS; }
#endif

// The K-quants' lockstep searches (blocks.c), dispatched like every kernel; internal to CKernels.
void arapack_fit_eight(const float xt[32][8], const float wt[32][8], int top, float first_shift, int nstep, uint8_t codes[256],
                       float scales[8], float negated_mins[8]);
void arapack_fit_sixteen(const float xt[16][16], int8_t codes[256], float scales[16]);
#endif
