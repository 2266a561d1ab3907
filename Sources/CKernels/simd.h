// What the SIMD kernels share: the run-time check for AVX2 + FMA, and an 8 × 8 block of floats transposed in
// registers (used by the forward pass's transposed GEMM epilogue and by the layout transpose).
#ifndef ARAPACK_SIMD_H
#define ARAPACK_SIMD_H
#if defined(__x86_64__)
#include <immintrin.h>

// Whether this CPU runs the AVX2 + FMA builds of the kernels (checked once).
static inline int arapack_fast_ok(void) {
    static int ok = -1;
    if (ok < 0) {
        __builtin_cpu_init();
        ok = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    }
    return ok;
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
#endif
#endif
