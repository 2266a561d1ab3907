#include "kernel.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

// The forward pass's matrix product, batch-, thread- and instruction-set-invariant by construction: every
// output element is one chain of fused multiply-adds in k order from 0 (acc = fma(x[k], w[k], acc), starting
// at +0), whatever the number of rows, the tile it falls in, the thread that computes it and the vector width.
// An FMA rounds once, so a 16-lane AVX-512 FMA, an 8-lane AVX2 FMA and the C library's fmaf give the same bits
// for the same chain. The kernels vectorise across rows (lanes are rows of x, packed 16 to a panel) and tile
// across weight rows (a broadcast per weight element); the k loop is blocked (KC) and rows are blocked (MC)
// for the caches, and a block's partial sums are stored to t and reloaded, which changes no bit.

#pragma STDC FP_CONTRACT OFF

#define PANEL 16
#define KC 512
#define MC 192  // four AVX-512 tiles of three panels


size_t arapack_packed_rows(size_t rows) { return (rows + PANEL - 1) / PANEL * PANEL; }

static void pack_rows_body(const float *x, size_t ldx, size_t rows, size_t k, float *xp) {
    size_t padded = arapack_packed_rows(rows);
    for (size_t p = 0; p < padded / PANEL; p++) {
        float *panel = xp + p * k * PANEL;
        size_t lanes = rows - p * PANEL < PANEL ? rows - p * PANEL : PANEL;
        const float *first = x + p * PANEL * ldx;
        for (size_t i = 0; i < k; i++)
            for (size_t lane = 0; lane < PANEL; lane++) panel[i * PANEL + lane] = lane < lanes ? first[lane * ldx + i] : 0.0f;
    }
}

#if defined(__x86_64__)
// Whole panels as 8 × 8 blocks transposed in registers (copies: the same values); the ragged k edge and a last,
// partly filled panel go through the portable loop.
__attribute__((target("avx2"))) static void pack_rows_fast(const float *x, size_t ldx, size_t rows, size_t k, float *xp) {
    size_t whole = rows / PANEL, k8 = k - k % 8;
    for (size_t p = 0; p < whole; p++) {
        float *panel = xp + p * k * PANEL;
        const float *first = x + p * PANEL * ldx;
        for (size_t i = 0; i < k8; i += 8)
            for (size_t half = 0; half < PANEL; half += 8) {
                __m256 v[8], u[8];
                for (int r = 0; r < 8; r++) v[r] = _mm256_loadu_ps(first + (half + (size_t)r) * ldx + i);
                arapack_transpose8_ps(v, u);  // u[j]: column i + j of rows half ..< half + 8
                for (int j = 0; j < 8; j++) _mm256_storeu_ps(panel + (i + (size_t)j) * PANEL + half, u[j]);
            }
        for (size_t i = k8; i < k; i++)
            for (size_t lane = 0; lane < PANEL; lane++) panel[i * PANEL + lane] = first[lane * ldx + i];
    }
    if (whole * PANEL < arapack_packed_rows(rows))
        pack_rows_body(x + whole * PANEL * ldx, ldx, rows - whole * PANEL, k, xp + whole * k * PANEL);
}
#endif

void arapack_pack_rows(const float *x, size_t ldx, size_t rows, size_t k, float *xp) {
#if defined(__x86_64__)
    if (arapack_isa() != ARAPACK_ISA_GENERIC) { pack_rows_fast(x, ldx, rows, k, xp); return; }
#endif
    pack_rows_body(x, ldx, rows, k, xp);
}

// The chain for one element, in C: the reference every vector kernel matches (and the path of CPUs without FMA,
// where fmaf is the C library's exact software fused multiply-add).
static void gemm_generic(const float *xp, size_t panels, size_t k, const float *w, size_t ldw, size_t cols, float *t,
                         size_t ldt) {
    for (size_t c = 0; c < cols; c++) {
        for (size_t p = 0; p < panels; p++) {
            for (size_t lane = 0; lane < PANEL; lane++) {
                float acc = 0.0f;
                const float *x = xp + p * k * PANEL + lane;
                const float *wr = w + c * ldw;
                for (size_t i = 0; i < k; i++) acc = fmaf(x[i * PANEL], wr[i], acc);
                t[c * ldt + p * PANEL + lane] = acc;
            }
        }
    }
}

#if defined(__x86_64__)
#include <immintrin.h>

// One tile: P panels (P·16 rows) × NC weight rows, over kc values of k starting at xp/w; t holds the tile's
// partial sums (rows contiguous, columns ldt apart), loaded first unless this is the first k block. With `next` (the
// next tile's weight rows, given to the first panel's tile of each column group), it also asks for those rows' k block
// in L2 ahead of use, a cache line of each row every 16 values of k: the weights come from the page cache, cold, and
// the first panel would otherwise wait on them (2–4 % for the forward pass on one thread). No bit changes.
#define UNROLL _Pragma("clang loop unroll(full)")
#define PREFETCH_STEP 16  // one cache line of a weight row
#define TILE_KERNEL(NAME, TARGET, VEC, LANES, LOADU, STOREU, ZERO, SET1, FMADD, P, NC)                          \
    __attribute__((target(TARGET))) static void NAME(const float *xp, size_t pstride, const float *w, size_t ldw,   \
                                                     size_t kc, float *t, size_t ldt, int first, const float *next) { \
        enum { V = (P) * PANEL / (LANES) };                                                                      \
        VEC acc[NC][V];                                                                                          \
        UNROLL for (int j = 0; j < (NC); j++)                                                                        \
            UNROLL for (int v = 0; v < V; v++)                                                                          \
                acc[j][v] = first ? ZERO() : LOADU(t + j * ldt + v * (LANES));                                   \
        for (size_t i0 = 0; i0 < kc; i0 += PREFETCH_STEP) {                                                     \
            if (next)                                                                                            \
                UNROLL for (int j = 0; j < (NC); j++) _mm_prefetch((const char *)(next + j * ldw + i0), _MM_HINT_T1); \
            size_t i1 = kc - i0 < PREFETCH_STEP ? kc : i0 + PREFETCH_STEP;                                      \
            for (size_t i = i0; i < i1; i++) {                                                                   \
                VEC a[V];                                                                                        \
                UNROLL for (int v = 0; v < V; v++)                                                                      \
                    a[v] = LOADU(xp + (v * (LANES)) / PANEL * pstride + i * PANEL + (v * (LANES)) % PANEL);       \
                UNROLL for (int j = 0; j < (NC); j++) {                                                                 \
                    VEC b = SET1(w[j * ldw + i]);                                                                \
                    UNROLL for (int v = 0; v < V; v++) acc[j][v] = FMADD(a[v], b, acc[j][v]);                          \
                }                                                                                                \
            }                                                                                                    \
        }                                                                                                        \
        UNROLL for (int j = 0; j < (NC); j++)                                                                        \
            UNROLL for (int v = 0; v < V; v++) STOREU(t + j * ldt + v * (LANES), acc[j][v]);                            \
    }

#define AVX512_TILE(NAME, P, NC) \
    TILE_KERNEL(NAME, "avx512f", __m512, 16, _mm512_loadu_ps, _mm512_storeu_ps, _mm512_setzero_ps, _mm512_set1_ps, _mm512_fmadd_ps, P, NC)
#define AVX2_TILE(NAME, P, NC) \
    TILE_KERNEL(NAME, "avx2,fma", __m256, 8, _mm256_loadu_ps, _mm256_storeu_ps, _mm256_setzero_ps, _mm256_set1_ps, _mm256_fmadd_ps, P, NC)

// AVX-512: 48 rows × 8 weight rows (24 accumulators). Eight weight rows, not more: rows of a weight matrix are
// usually 4 KiB apart or a multiple, which puts element i of every row in the same L1 set (eight ways on these
// CPUs); twelve rows (the tile before) evicted each other and cost ~9 % of the product's speed.
AVX512_TILE(avx512_p3_c8, 3, 8)
AVX512_TILE(avx512_p2_c8, 2, 8)
AVX512_TILE(avx512_p1_c8, 1, 8)
AVX512_TILE(avx512_p3_c1, 3, 1)
AVX512_TILE(avx512_p2_c1, 2, 1)
AVX512_TILE(avx512_p1_c1, 1, 1)
AVX2_TILE(avx2_p1_c6, 1, 6)
// AVX2's ragged column edge (a run of 64 columns leaves 4 beside the 6-wide tiles, one of 128 leaves 2) is one tile
// of the edge's width, so the panels pass once for all of its weight rows rather than once per row; the narrow ones
// span more panels, for enough independent chains to keep both FMA pipes busy.
AVX2_TILE(avx2_p1_c5, 1, 5)
AVX2_TILE(avx2_p1_c4, 1, 4)
AVX2_TILE(avx2_p1_c3, 1, 3)
AVX2_TILE(avx2_p2_c2, 2, 2)
AVX2_TILE(avx2_p1_c2, 1, 2)
AVX2_TILE(avx2_p4_c1, 4, 1)
AVX2_TILE(avx2_p3_c1, 3, 1)
AVX2_TILE(avx2_p2_c1, 2, 1)
AVX2_TILE(avx2_p1_c1, 1, 1)

typedef void (*tile_fn)(const float *, size_t, const float *, size_t, size_t, float *, size_t, int, const float *);

// An instruction set's tiles: wide[n - 1] takes n panels (n up to wide_panels) of nc weight rows; at the ragged
// column edge, edge[r - 1][n - 1] takes n panels (up to edge_panels[r - 1]) of r weight rows, r up to edge_widths
// (a wider edge goes edge_widths rows at a time).
typedef struct {
    size_t nc, wide_panels, edge_widths;
    tile_fn wide[3];
    size_t edge_panels[5];
    tile_fn edge[5][4];
} tile_set;

static const tile_set avx512_tiles = {
    .nc = 8, .wide_panels = 3, .edge_widths = 1,
    .wide = {avx512_p1_c8, avx512_p2_c8, avx512_p3_c8},
    .edge_panels = {3}, .edge = {{avx512_p1_c1, avx512_p2_c1, avx512_p3_c1}},
};
static const tile_set avx2_tiles = {
    .nc = 6, .wide_panels = 1, .edge_widths = 5,
    .wide = {avx2_p1_c6},
    .edge_panels = {4, 2, 1, 1, 1},
    .edge = {{avx2_p1_c1, avx2_p2_c1, avx2_p3_c1, avx2_p4_c1}, {avx2_p1_c2, avx2_p2_c2}, {avx2_p1_c3}, {avx2_p1_c4}, {avx2_p1_c5}},
};

// The blocked loops around the tiles: k blocks of KC, row blocks of MC, then columns nc at a time (the weight
// rows stay in L1 while every row panel of the block passes them), then the ragged column edge.
static void gemm_tiled(const float *xp, size_t panels, size_t k, const float *w, size_t ldw, size_t cols, float *t,
                       size_t ldt, const tile_set *set) {
    size_t pstride = k * PANEL, cols_tiled = cols - cols % set->nc;
    for (size_t k0 = 0; k0 < k; k0 += KC) {
        size_t kc = k - k0 < KC ? k - k0 : KC;
        int first = k0 == 0;
        for (size_t p0 = 0; p0 < panels; p0 += MC / PANEL) {
            size_t p1 = p0 + MC / PANEL < panels ? p0 + MC / PANEL : panels;
            for (size_t c = 0; c < cols;) {
                size_t width = c < cols_tiled ? set->nc : cols - c < set->edge_widths ? cols - c : set->edge_widths;
                const tile_fn *tiles = c < cols_tiled ? set->wide : set->edge[width - 1];
                size_t most = c < cols_tiled ? set->wide_panels : set->edge_panels[width - 1];
                const float *wc = w + c * ldw + k0;
                const float *next = c + width + set->nc <= cols_tiled ? wc + width * ldw : 0;
                for (size_t p = p0; p < p1;) {
                    size_t n = p1 - p < most ? p1 - p : most;
                    tiles[n - 1](xp + p * pstride + k0 * PANEL, pstride, wc, ldw, kc, t + c * ldt + p * PANEL, ldt, first,
                                 p == p0 ? next : 0);
                    p += n;
                }
                c += width;
            }
        }
    }
}
#endif

void arapack_gemm_nt(const float *xp, size_t rows, size_t k, const float *w, size_t ldw, size_t cols, float *t, size_t ldt) {
    size_t panels = arapack_packed_rows(rows) / PANEL;
    if (k == 0) {
        for (size_t c = 0; c < cols; c++) memset(t + c * ldt, 0, panels * PANEL * sizeof(float));
        return;
    }
#if defined(__x86_64__)
    switch (arapack_isa()) {
    case ARAPACK_ISA_AVX512: gemm_tiled(xp, panels, k, w, ldw, cols, t, ldt, &avx512_tiles); return;
    case ARAPACK_ISA_AVX2: gemm_tiled(xp, panels, k, w, ldw, cols, t, ldt, &avx2_tiles); return;
    default: break;
    }
#endif
    gemm_generic(xp, panels, k, w, ldw, cols, t, ldt);
}
