#include "kernel.h"
#include <stdint.h>

// Layout transposes (GPT-2's Conv1D weights), any element size; 4-byte elements in registers on AVX2.

#define TILE 32
#define TRANSPOSE_TILES(T)                                                                                      \
    do {                                                                                                        \
        const T *s = (const T *)src;                                                                            \
        T *d = (T *)dst;                                                                                        \
        for (size_t r0 = 0; r0 < rows; r0 += TILE) {                                                            \
            size_t r1 = r0 + TILE < rows ? r0 + TILE : rows;                                                    \
            for (size_t c0 = 0; c0 < cols; c0 += TILE) {                                                        \
                size_t c1 = c0 + TILE < cols ? c0 + TILE : cols;                                                \
                for (size_t c = c0; c < c1; c++)                                                                \
                    for (size_t r = r0; r < r1; r++) d[c * dst_stride + r] = s[r * src_stride + c];              \
            }                                                                                                   \
        }                                                                                                       \
    } while (0)

#if defined(__x86_64__)
#define AVX2 __attribute__((target("avx2")))
// One 8 × 8 block of 4-byte elements transposed in registers: v[i] is source row i, u[j] ends as source column j.
AVX2 static void transpose_block8(const float *s, size_t ss, float *d, size_t ds) {
    __m256 v[8], u[8];
    for (int i = 0; i < 8; i++) v[i] = _mm256_loadu_ps(s + i * ss);
    arapack_transpose8_ps(v, u);
    for (int j = 0; j < 8; j++) _mm256_storeu_ps(d + j * ds, u[j]);
}
// 4-byte elements: 32 × 32 tiles of 8 × 8 register blocks; the ragged edges element by element.
AVX2 static void transpose4_fast(const float *s, size_t ss, float *d, size_t ds, size_t rows, size_t cols) {
    size_t rows8 = rows - rows % 8, cols8 = cols - cols % 8;
    for (size_t r0 = 0; r0 < rows8; r0 += TILE) {
        size_t r1 = r0 + TILE < rows8 ? r0 + TILE : rows8;
        for (size_t c0 = 0; c0 < cols8; c0 += TILE) {
            size_t c1 = c0 + TILE < cols8 ? c0 + TILE : cols8;
            for (size_t c = c0; c < c1; c += 8)
                for (size_t r = r0; r < r1; r += 8) transpose_block8(s + r * ss + c, ss, d + c * ds + r, ds);
        }
    }
    for (size_t r = 0; r < rows; r++)
        for (size_t c = r < rows8 ? cols8 : 0; c < cols; c++) d[c * ds + r] = s[r * ss + c];
}
#endif

void arapack_transpose(const void *src, size_t src_stride, void *dst, size_t dst_stride, size_t rows, size_t cols,
                       size_t element_size) {
#if defined(__x86_64__)
    if (element_size == 4 && arapack_isa() != ARAPACK_ISA_GENERIC) {
        transpose4_fast((const float *)src, src_stride, (float *)dst, dst_stride, rows, cols);
        return;
    }
#endif
    switch (element_size) {
    case 1: TRANSPOSE_TILES(uint8_t); break;
    case 2: TRANSPOSE_TILES(uint16_t); break;
    case 4: TRANSPOSE_TILES(uint32_t); break;
    default: TRANSPOSE_TILES(uint64_t); break;
    }
}
