// The FMA ceiling of one core: independent chains of vector fused multiply-adds (more than latency × ports, so
// the FMA units never wait), for AVX-512 (16 lanes) and AVX2 (8 lanes). The forward pass's GEMM is reported
// against it (BENCHMARKS.md). Each instruction set is measured only when this CPU runs it (an AVX2-only CPU would
// stop with SIGILL on the AVX-512 loop).
//     clang -O2 -o /tmp/fma_peak Benchmarks/kernels/fma_peak.c && /tmp/fma_peak
#include <immintrin.h>
#include <stdio.h>
#include <time.h>

// More chains than FMA latency × ports (4 × 2), fewer than the registers (32 zmm, 16 ymm, two hold constants).
#define CHAINS512 24
#define CHAINS256 12
#define ROUNDS 200000000L

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}

__attribute__((target("avx512f"))) static float avx512(long rounds) {
    __m512 acc[CHAINS512], a = _mm512_set1_ps(0.999999f), b = _mm512_set1_ps(1e-7f);
    for (int i = 0; i < CHAINS512; i++) acc[i] = _mm512_set1_ps((float)i);
    for (long r = 0; r < rounds; r++)
#pragma clang loop unroll(full)
        for (int i = 0; i < CHAINS512; i++) acc[i] = _mm512_fmadd_ps(acc[i], a, b);
    float sum = 0;
    for (int i = 0; i < CHAINS512; i++) sum += _mm512_reduce_add_ps(acc[i]);
    return sum;
}

__attribute__((target("avx2,fma"))) static float avx2(long rounds) {
    __m256 acc[CHAINS256], a = _mm256_set1_ps(0.999999f), b = _mm256_set1_ps(1e-7f);
    for (int i = 0; i < CHAINS256; i++) acc[i] = _mm256_set1_ps((float)i);
    for (long r = 0; r < rounds; r++)
#pragma clang loop unroll(full)
        for (int i = 0; i < CHAINS256; i++) acc[i] = _mm256_fmadd_ps(acc[i], a, b);
    float out[8], sum = 0;
    for (int i = 0; i < CHAINS256; i++) {
        _mm256_storeu_ps(out, acc[i]);
        for (int l = 0; l < 8; l++) sum += out[l];
    }
    return sum;
}

int main(void) {
    long rounds = ROUNDS / 10;
    double t0, t1;
    float s;
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f")) {
        t0 = now();
        s = avx512(rounds);
        t1 = now();
        printf("AVX-512 FMA ceiling, one core: %.1f GFLOP/s (checksum %g)\n", 2.0 * 16 * CHAINS512 * rounds / (t1 - t0) / 1e9, s);
    } else {
        printf("AVX-512: this CPU does not run it\n");
    }
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
        t0 = now();
        s = avx2(rounds);
        t1 = now();
        printf("AVX2 FMA ceiling, one core:    %.1f GFLOP/s (checksum %g)\n", 2.0 * 8 * CHAINS256 * rounds / (t1 - t0) / 1e9, s);
    } else {
        printf("AVX2 with FMA: this CPU does not run it\n");
    }
    return 0;
}
