#ifndef ARAPACK_CSYSTEM_H
#define ARAPACK_CSYSTEM_H

/// renameat2(2) with RENAME_NOREPLACE: fails with EEXIST instead of replacing `to`.
int arapack_rename_noreplace(const char *from, const char *to);
/// renameat2(2) with RENAME_EXCHANGE: swaps `a` and `b` atomically (both must exist).
int arapack_rename_exchange(const char *a, const char *b);

#endif
