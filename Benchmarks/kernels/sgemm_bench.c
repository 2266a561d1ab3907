// OpenBLAS's cblas_sgemm on the model's GEMM shapes, in both orientations: the anchor the forward pass's own
// invariant GEMM (`arapack-bench gemm`) is compared with in BENCHMARKS.md. OpenBLAS is this benchmark's alone:
// arapack does not link it.
//   apt-get install -y libopenblas-dev
//   gcc -O2 Benchmarks/kernels/sgemm_bench.c -o /tmp/sgemm_bench $(pkg-config --cflags --libs openblas)
//   OPENBLAS_NUM_THREADS=1 /tmp/sgemm_bench M N K REPEATS
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static int by_value(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv) {
    if (argc != 5) {
        fprintf(stderr, "usage: sgemm_bench M N K REPEATS\n");
        return 64;
    }
    int m = atoi(argv[1]), n = atoi(argv[2]), k = atoi(argv[3]), repeats = atoi(argv[4]);
    if (m < 1 || n < 1 || k < 1 || repeats < 1) return 64;
    float *a = malloc(sizeof(float) * (size_t)m * k), *b = malloc(sizeof(float) * (size_t)n * k), *c = malloc(sizeof(float) * (size_t)m * n);
    double *times = malloc(sizeof(double) * repeats);
    for (size_t i = 0; i < (size_t)m * k; i++) a[i] = 0.5f;
    for (size_t i = 0; i < (size_t)n * k; i++) b[i] = 0.25f;
    // C = A·Bᵀ (row-major [M, N]) and Cᵀ = B·Aᵀ ([N, M]), which OpenBLAS packs and blocks differently; the forward
    // pass computes the second.
    for (int transposed = 0; transposed < 2; transposed++) {
        for (int r = -1; r < repeats; r++) {
            double start = now();
            if (transposed) cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, m, k, 1, b, k, a, k, 0, c, m);
            else cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, n, k, 1, a, k, b, k, 0, c, n);
            if (r >= 0) times[r] = now() - start;
        }
        qsort(times, repeats, sizeof(double), by_value);
        double t = times[repeats / 2];
        printf("sgemm %dx%dx%d %s: median %g s, %g GFLOP/s\n", m, n, k, transposed ? "(Cᵀ = B·Aᵀ)" : "(C = A·Bᵀ)", t, 2.0 * m * n * k / t / 1e9);
    }
    free(a); free(b); free(c); free(times);
    return 0;
}
