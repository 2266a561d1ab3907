#ifndef ARAPACK_CSYSTEM_H
#define ARAPACK_CSYSTEM_H

/// renameat2(2) with RENAME_NOREPLACE: fails with EEXIST instead of replacing `to`.
int arapack_rename_noreplace(const char *from, const char *to);
/// renameat2(2) with RENAME_EXCHANGE: swaps `a` and `b` atomically (both must exist).
int arapack_rename_exchange(const char *a, const char *b);

/// sync_file_range(2) with SYNC_FILE_RANGE_WRITE: starts writeback of a range without waiting for it.
int arapack_start_writeback(int fd, long long offset, long long count);

/// mallopt(M_MMAP_THRESHOLD, bytes): allocations from `bytes` up always come from mmap, so freeing them
/// returns the memory to the system (glibc's adaptive threshold would move them onto the heap).
void arapack_mmap_allocations_from(int bytes);

#endif
