// arapack builds on Linux only: it calls Glibc, renameat2, sync_file_range and madvise, and links libzstd and
// libcrypto as Debian packages them. Package.swift declares no other platform; this says so at
// build time instead of failing on the first missing symbol.
#if !os(Linux)
#error("arapack builds on Linux only (Glibc, renameat2, sync_file_range; libzstd and libcrypto from Debian)")
#endif
