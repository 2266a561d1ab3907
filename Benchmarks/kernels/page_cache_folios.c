// What the way a file is read into the page cache costs later: Linux keeps what MADV_WILLNEED reads in 4 KiB pages,
// and what a fault on a mapping advised MADV_HUGEPAGE (or a plain sequential read) reads in large folios (up to
// 2 MiB). For each way, this drops FILE from the page cache, reads its first 1.5 GiB (a full-size model's weights),
// then times the first pass over the bytes (where a hypervisor that takes back a guest's free memory makes the first
// touch of a fresh page cost), and three later mappings of the same bytes: faulting them in and unmapping them.
//     clang -O2 -o page_cache_folios Benchmarks/kernels/page_cache_folios.c
//     ./page_cache_folios /tmp/arapack-bench/full_training.pt          (root not needed; the file must be ≥ 1.5 GiB)
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#ifndef MADV_POPULATE_READ
#define MADV_POPULATE_READ 22
#endif

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

// One byte of every 64 (every cache line), so that every byte's page is touched and the sum is kept.
static unsigned long touch_lines(const char *p, size_t n) {
    unsigned long s = 0;
    for (size_t i = 0; i < n; i += 64) s += (unsigned char)p[i];
    return s;
}

static void measure(const char *path, const char *mode) {
    const size_t use = (size_t)1536 << 20, span = 2 << 20;
    int fd = open(path, O_RDONLY);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0 || (size_t)st.st_size < use) { fprintf(stderr, "%s: need a file of 1.5 GiB or more\n", path); exit(2); }
    posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
    usleep(200000);
    char *p = mmap(0, use, PROT_READ, MAP_PRIVATE, fd, 0);
    double t0 = now();
    if (!strcmp(mode, "willneed")) {  // as arapack's digest reads: asked for ahead, no wait
        for (size_t o = 0; o < use; o += span) madvise(p + o, span, MADV_WILLNEED);
    } else if (!strcmp(mode, "hugepage")) {  // as a forward pass reads its weights (MappedFile.readIntoMemory)
        madvise(p, use, MADV_HUGEPAGE);
        for (size_t o = 0; o < use; o += span) madvise(p + o, span, MADV_POPULATE_READ);
    } else {  // read: what cat does
        char *buffer = malloc(span);
        for (size_t o = 0; o < use; o += span) if (pread(fd, buffer, span, (off_t)o) <= 0) break;
        free(buffer);
    }
    double t1 = now();
    unsigned long sum = touch_lines(p, use);
    double t2 = now();
    munmap(p, use);
    double fault = 0, unmap = 0;
    for (int r = 0; r < 3; r++) {
        char *q = mmap(0, use, PROT_READ, MAP_PRIVATE, fd, 0);
        double a = now();
        for (size_t i = 0; i < use; i += 4096) sum += (unsigned char)q[i];
        double b = now();
        munmap(q, use);
        double c = now();
        fault += (b - a) / 3;
        unmap += (c - b) / 3;
    }
    close(fd);
    printf("%-9s read %5.0f ms, first pass over the bytes %5.0f ms | each later mapping: fault in %6.1f ms, unmap %6.1f ms  (%lu)\n",
           mode, (t1 - t0) * 1e3, (t2 - t1) * 1e3, fault * 1e3, unmap * 1e3, sum & 1);
}

int main(int argc, char **argv) {
    if (argc != 2) { fprintf(stderr, "usage: %s FILE\n", argv[0]); return 64; }
    for (int round = 0; round < 2; round++) {
        measure(argv[1], "willneed");
        measure(argv[1], "hugepage");
        measure(argv[1], "read");
    }
    return 0;
}
