#include "kernel.h"

// Which instruction set the kernels use: the widest this CPU runs, unless ARAPACK_ISA (through arapack_set_isa)
// narrows it. The one CPU check every kernel's dispatch reads.

static int active_isa = -1;

int arapack_isa_best(void) {
#if defined(__x86_64__)
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f")) return ARAPACK_ISA_AVX512;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return ARAPACK_ISA_AVX2;
#endif
    return ARAPACK_ISA_GENERIC;
}

int arapack_isa(void) {
    int isa = __atomic_load_n(&active_isa, __ATOMIC_RELAXED);
    if (isa < 0) {
        isa = arapack_isa_best();
        __atomic_store_n(&active_isa, isa, __ATOMIC_RELAXED);
    }
    return isa;
}

int arapack_set_isa(int isa) {
    if (isa < ARAPACK_ISA_GENERIC || isa > arapack_isa_best()) return -1;
    __atomic_store_n(&active_isa, isa, __ATOMIC_RELAXED);
    return 0;
}
