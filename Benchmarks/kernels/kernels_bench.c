// Times CKernels' loops on full-size shapes, to compare compiler flags (Benchmarks/kernels/compare_flags.sh).
// Each kernel runs REPEATS times over buffers the size of a full-size model's work; prints the median ms.
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "ckernels.h"

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

static int cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

#define REPEATS 9
#define TIME(label, body) do { \
    double ts[REPEATS]; \
    for (int r = 0; r < REPEATS; r++) { double t0 = now(); body; ts[r] = now() - t0; } \
    qsort(ts, REPEATS, sizeof(double), cmp); \
    printf("%-22s %8.3f ms\n", label, ts[REPEATS / 2] * 1e3); \
} while (0)

int main(void) {
    const size_t d = 1024, rows = 512, ffn = 4096, vocab = 76800;
    const size_t big = rows * ffn;                  // one layer's FFN activations at 512 tokens
    float *x = malloc(sizeof(float) * vocab * d), *y = malloc(sizeof(float) * vocab * d);
    float *w = malloc(sizeof(float) * d), *b = malloc(sizeof(float) * d);
    int8_t *q = malloc(vocab * d);
    uint16_t *h = malloc(sizeof(uint16_t) * vocab * d);
    srand(1);
    for (size_t i = 0; i < vocab * d; i++) x[i] = (float)((double)rand() / RAND_MAX * 4 - 2);
    for (size_t i = 0; i < d; i++) { w[i] = 1; b[i] = 0; }
    double stats[3];
    TIME("gelu_erf 2M", { memcpy(y, x, sizeof(float) * big); arapack_gelu_erf(y, big); });
    TIME("layer_norm 512x1024", { for (size_t r = 0; r < rows; r++) arapack_layer_norm(x + r * d, y + r * d, d, w, b, 1e-5f); });
    TIME("softmax 16x512x512", { for (size_t r = 0; r < 16 * rows; r++) arapack_softmax(y + r * rows, r % rows + 1, rows); });
    TIME("max_abs 4096x1024", { for (size_t r = 0; r < ffn; r++) (void)arapack_max_abs(x + r * d, d); });
    TIME("quantize 4096x1024", { memset(stats, 0, sizeof stats); for (size_t r = 0; r < ffn; r++) arapack_quantize_symmetric(x + r * d, d, 0.01f, -127.0f, 127.0f, q + r * d, stats); });
    TIME("error_stats 78.6M", { memset(stats, 0, sizeof stats); arapack_error_stats(x, y, vocab * d, stats); });
    TIME("transpose f32 4096^2", { arapack_transpose(x, ffn, y, ffn, ffn, ffn, 4); });
    // Parity's statistics on one probe's logits (64 positions × the vocabulary, both sides), here x against y.
    TIME("softmax_kl 64x76800", { for (size_t r = 0; r < 64; r++) arapack_softmax_kl(x + r * vocab, y + r * vocab, vocab, stats); });
    TIME("transpose bf16 4096^2", { arapack_transpose(x, ffn, h, ffn, ffn, ffn, 2); });
    return 0;
}
