#ifndef ARAPACK_CSYSTEM_H
#define ARAPACK_CSYSTEM_H

/// renameat2(2) with RENAME_NOREPLACE: fails with EEXIST instead of replacing `to`.
int arapack_rename_noreplace(const char *from, const char *to);
/// renameat2(2) with RENAME_EXCHANGE: swaps `a` and `b` atomically (both must exist).
int arapack_rename_exchange(const char *a, const char *b);

/// sync_file_range(2) with SYNC_FILE_RANGE_WRITE: starts writeback of a range without waiting for it.
int arapack_start_writeback(int fd, long long offset, long long count);

/// open(2)'s O_DIRECT flag (a GNU extension Swift's Glibc module leaves out).
int arapack_o_direct(void);

/// mallopt(M_MMAP_THRESHOLD, bytes): allocations from `bytes` up always come from mmap, so freeing them
/// returns the memory to the system (glibc's adaptive threshold would move them onto the heap).
void arapack_mmap_allocations_from(int bytes);

/// pipe2(2) with O_CLOEXEC.
int arapack_pipe(int fds[2]);

/// Makes SIGINT, SIGTERM and SIGHUP write their number (one byte) to `fd` and nothing else, which is all a
/// signal handler can safely do; a thread reading the other end does the work. A signal ignored when the
/// process started (nohup, a shell's background job) stays ignored. Returns 0, or -1 with errno set.
int arapack_signals_to_pipe(int fd);

/// Names the calling thread (pthread_setname_np, a GNU extension; at most 15 bytes are kept).
void arapack_name_thread(const char *name);

/// The CPU's spin-wait hint (x86 `pause`; nothing elsewhere), for a thread that polls a flag another core sets.
void arapack_spin_pause(void);

#endif
