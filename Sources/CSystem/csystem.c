#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <stdio.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <linux/fs.h>
#include <malloc.h>
#include <pthread.h>
#include "csystem.h"

int arapack_rename_noreplace(const char *from, const char *to) {
    return (int)syscall(SYS_renameat2, AT_FDCWD, from, AT_FDCWD, to, RENAME_NOREPLACE);
}

int arapack_o_direct(void) { return O_DIRECT; }

int arapack_rename_exchange(const char *a, const char *b) {
    return (int)syscall(SYS_renameat2, AT_FDCWD, a, AT_FDCWD, b, RENAME_EXCHANGE);
}

int arapack_start_writeback(int fd, long long offset, long long count) {
    return sync_file_range(fd, offset, count, SYNC_FILE_RANGE_WRITE);
}

void arapack_mmap_allocations_from(int bytes) {
    mallopt(M_MMAP_THRESHOLD, bytes);
}

int arapack_pipe(int fds[2]) { return pipe2(fds, O_CLOEXEC); }

static int interrupt_pipe = -1;

static void write_signal_number(int sig) {
    int saved = errno;
    unsigned char byte = (unsigned char)sig;
    (void)!write(interrupt_pipe, &byte, 1);
    errno = saved;
}

int arapack_signals_to_pipe(int fd) {
    interrupt_pipe = fd;
    const int signals[] = {SIGINT, SIGTERM, SIGHUP};
    for (unsigned i = 0; i < sizeof signals / sizeof signals[0]; i++) {
        struct sigaction old, action;
        if (sigaction(signals[i], NULL, &old) != 0) return -1;
        if (old.sa_handler == SIG_IGN) continue;
        memset(&action, 0, sizeof action);
        action.sa_handler = write_signal_number;
        action.sa_flags = SA_RESTART;
        sigemptyset(&action.sa_mask);
        if (sigaction(signals[i], &action, NULL) != 0) return -1;
    }
    return 0;
}

void arapack_name_thread(const char *name) {
    char shortened[16];
    snprintf(shortened, sizeof shortened, "%s", name);
    pthread_setname_np(pthread_self(), shortened);
}

void arapack_spin_pause(void) {
#if defined(__x86_64__)
    __builtin_ia32_pause();
#endif
}
