import COpenSSL
import ArapackTensor

/// Streaming SHA-256 over OpenSSL's EVP digest interface (`EVP_DigestInit_ex`, `EVP_DigestUpdate`,
/// `EVP_DigestFinal_ex`). This file is the only place OpenSSL names appear.
public final class SHA256 {
    private let context: OpaquePointer

    /// A fresh digest. Traps only if OpenSSL cannot allocate a context (out of memory).
    public init() {
        guard let ctx = EVP_MD_CTX_new(), EVP_DigestInit_ex(ctx, EVP_sha256(), nil) == 1 else {
            fatalError("OpenSSL could not initialise SHA-256")
        }
        context = ctx
    }

    deinit { EVP_MD_CTX_free(context) }

    /// Feeds `bytes` into the digest.
    public func update(_ bytes: UnsafeRawBufferPointer) {
        guard let base = bytes.baseAddress, bytes.count > 0 else { return }
        _ = EVP_DigestUpdate(context, base, bytes.count)
    }

    /// Feeds `bytes` into the digest.
    public func update(_ bytes: [UInt8]) { bytes.withUnsafeBytes { update($0) } }

    /// The 32-byte digest; the object must not be updated afterwards.
    public func finalize() -> [UInt8] {
        var out = [UInt8](repeating: 0, count: 32)
        var length: UInt32 = 0
        _ = out.withUnsafeMutableBufferPointer { EVP_DigestFinal_ex(context, $0.baseAddress, &length) }
        return out
    }

    /// Lower-case hex of `finalize()`.
    public func hexDigest() -> String { finalize().map { String(format2Hex: $0) }.joined() }

    /// SHA-256 of `bytes` as lower-case hex.
    public static func hex(of bytes: UnsafeRawBufferPointer) -> String {
        let d = SHA256()
        d.update(bytes)
        return d.hexDigest()
    }

    /// SHA-256 of the file at `path`, read through a memory map in 64 MiB steps, as lower-case hex. Each step asks
    /// the kernel for the next one before hashing it, so a file not in memory is read from the disk while it is
    /// hashed, and no more than one step ahead of the hash is read (a file larger than the memory is not read all
    /// at once). `cancelled`, checked between 64 MiB blocks, stops the hash early (the result is then meaningless).
    public static func hex(ofFile path: String, cancelled: () -> Bool = { false }) throws -> String {
        let file = try MappedFile(path: path)
        let d = SHA256()
        let step = 64 << 20
        file.adviseWillNeed(0..<min(step, file.count))
        file.withUnsafeBytes { all in
            var offset = 0
            while offset < all.count && !cancelled() {
                let end = min(offset + step, all.count)
                file.adviseWillNeed(end..<min(end + step, all.count))
                d.update(UnsafeRawBufferPointer(rebasing: all[offset..<end]))
                file.discardPages(offset..<end)
                offset = end
            }
        }
        return d.hexDigest()
    }
}

extension String {
    /// Two lower-case hex digits of `byte`.
    init(format2Hex byte: UInt8) {
        let digits = Array("0123456789abcdef")
        self = String([digits[Int(byte >> 4)], digits[Int(byte & 0x0F)]])
    }
}
