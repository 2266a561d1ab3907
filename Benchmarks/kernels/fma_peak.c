// The FMA ceiling: independent chains of vector fused multiply-adds (more than latency × ports, so the FMA units
// never wait), for AVX-512 (16 lanes) and AVX2 (8 lanes), on one core and then on every CPU this process may use at
// once (one pinned thread each). The forward pass's GEMM is reported against it (BENCHMARKS.md). The second figure
// is what the machine can do with all its threads: a virtual machine's two vCPUs may be two threads of one physical
// core, and then both together reach little more than one alone. Each instruction set is measured only when this
// CPU runs it (an AVX2-only CPU would stop with SIGILL on the AVX-512 loop).
//     clang -O2 -pthread -o /tmp/fma_peak Benchmarks/kernels/fma_peak.c && /tmp/fma_peak
#define _GNU_SOURCE
#include <immintrin.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>

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

typedef struct {
    float (*loop)(long);
    long rounds;
    int cpu;
    pthread_barrier_t *start;
    double seconds;
    float checksum;  // the loop's result, kept so that the compiler keeps the loop
} job;

static void *run_job(void *arg) {
    job *j = arg;
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(j->cpu, &set);
    pthread_setaffinity_np(pthread_self(), sizeof set, &set);
    pthread_barrier_wait(j->start);
    double t0 = now();
    j->checksum = j->loop(j->rounds);
    j->seconds = now() - t0;
    return NULL;
}

// GFLOP/s of `loop` on the first `threads` of `cpus` at once, summed over the threads.
static double ceiling(float (*loop)(long), long rounds, double flops_per_round, const int *cpus, int threads) {
    pthread_t ids[256];
    job jobs[256];
    pthread_barrier_t start;
    pthread_barrier_init(&start, NULL, (unsigned)threads);
    for (int i = 0; i < threads; i++) {
        jobs[i] = (job){.loop = loop, .rounds = rounds, .cpu = cpus[i], .start = &start};
        pthread_create(&ids[i], NULL, run_job, &jobs[i]);
    }
    double total = 0;
    for (int i = 0; i < threads; i++) {
        pthread_join(ids[i], NULL);
        total += flops_per_round * rounds / jobs[i].seconds / 1e9;
    }
    pthread_barrier_destroy(&start);
    return total;
}

static void report(const char *name, float (*loop)(long), long rounds, double flops_per_round, const int *cpus,
                   int count) {
    double one = ceiling(loop, rounds, flops_per_round, cpus, 1);
    printf("%s FMA ceiling, one core: %.1f GFLOP/s\n", name, one);
    if (count > 1) {
        double all = ceiling(loop, rounds, flops_per_round, cpus, count);
        printf("%s FMA ceiling, %d CPUs at once: %.1f GFLOP/s (%.2f× one core)\n", name, count, all, all / one);
    }
}

int main(void) {
    long rounds = ROUNDS / 10;
    // The CPUs this process may run on (all online ones, or what taskset allows).
    cpu_set_t allowed;
    int cpus[256], count = 0;
    if (sched_getaffinity(0, sizeof allowed, &allowed) == 0) {
        for (int c = 0; c < CPU_SETSIZE && count < 256; c++)
            if (CPU_ISSET(c, &allowed)) cpus[count++] = c;
    }
    if (count == 0) cpus[count++] = 0;
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f"))
        report("AVX-512", avx512, rounds, 2.0 * 16 * CHAINS512, cpus, count);
    else
        printf("AVX-512: this CPU does not run it\n");
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
        report("AVX2", avx2, rounds, 2.0 * 8 * CHAINS256, cpus, count);
    else
        printf("AVX2 with FMA: this CPU does not run it\n");
    return 0;
}
