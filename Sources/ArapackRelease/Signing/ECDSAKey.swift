import ArapackFormats
import ArapackTensor
import COpenSSL
#if canImport(Glibc)
import Glibc
#endif

/// Why a key could not be used. Messages name the file and the problem, never any key material.
public enum KeyError: Error, Equatable, CustomStringConvertible, Sendable {
    case unreadable(file: String, detail: String)
    case notPEM(file: String, expected: String)
    case encryptedWithoutPassword(file: String)
    case wrongPassword(file: String)
    case wrongKind(file: String, found: String)
    case openSSL(file: String, operation: String, detail: String)

    public var description: String {
        switch self {
        case let .unreadable(file, detail): return "\(file): \(detail)"
        case let .notPEM(file, expected): return "\(file): not a PEM \(expected) that OpenSSL can read"
        case let .encryptedWithoutPassword(file):
            return "\(file): the private key is encrypted; pass --key-password-file with its password"
        case let .wrongPassword(file): return "\(file): the private key could not be decrypted with the password given"
        case let .wrongKind(file, found): return "\(file): an EC P-256 (prime256v1) key is required, found \(found)"
        case let .openSSL(file, operation, detail): return "\(file): \(operation) failed in OpenSSL: \(detail)"
        }
    }
}

/// An EC P-256 key through OpenSSL's EVP interface (`PEM_read_bio_PrivateKey`, `PEM_read_bio_PUBKEY`,
/// `EVP_DigestSign`, `EVP_DigestVerify`): ECDSA with SHA-256, signatures DER-encoded. The key's bytes are read
/// into memory that is cleansed (`OPENSSL_cleanse`) once OpenSSL has parsed them; nothing of the key is
/// ever printed or written. This file is the only place OpenSSL's key and signature names appear.
public final class ECDSAKey {
    private let key: OpaquePointer
    /// Whether the private half is present.
    public let canSign: Bool
    /// The file the key came from (for messages).
    public let file: String

    /// Largest key file read (a PEM key is a few hundred bytes).
    static let maximumFileSize = 64 << 10

    private init(key: OpaquePointer, canSign: Bool, file: String) throws {
        self.key = key
        self.canSign = canSign
        self.file = file
        guard EVP_PKEY_get_base_id(key) == EVP_PKEY_EC else {
            let found = EVP_PKEY_get_base_id(key) == EVP_PKEY_RSA ? "an RSA key" : "a key of another type"
            throw KeyError.wrongKind(file: file, found: found)
        }
        var name = [CChar](repeating: 0, count: 64)
        var length = 0
        guard EVP_PKEY_get_utf8_string_param(key, OSSL_PKEY_PARAM_GROUP_NAME, &name, name.count, &length) == 1 else {
            throw KeyError.wrongKind(file: file, found: "an EC key without a named curve")
        }
        let curve = String(decoding: name.prefix(length).map { UInt8(bitPattern: $0) }, as: UTF8.self)
        guard curve == "prime256v1" else { throw KeyError.wrongKind(file: file, found: "an EC key on curve \(curve)") }
    }

    deinit { EVP_PKEY_free(key) }

    /// The private key in PEM file `path` (PKCS#8 or SEC1, encrypted or not). An encrypted key needs
    /// `passwordFile`, whose first line is the password (read into memory that is cleansed after use).
    public static func privateKey(path: String, passwordFile: String?) throws -> ECDSAKey {
        guard let passwordFile else { return try privateKey(path: path, password: nil) }
        return try withFileBytes(passwordFile) { bytes in
            var password = Array(bytes.prefix { $0 != 0x0a && $0 != 0x0d })
            defer { password.withUnsafeMutableBytes { OPENSSL_cleanse($0.baseAddress, $0.count) } }
            return try privateKey(path: path, password: password)
        }
    }

    private static func privateKey(path: String, password: [UInt8]?) throws -> ECDSAKey {
        try withFileBytes(path) { pem in
            let text = String(decoding: pem, as: UTF8.self)
            guard text.contains("-----BEGIN ") && text.contains("PRIVATE KEY-----") else {
                throw KeyError.notPEM(file: path, expected: "private key")
            }
            let encrypted = text.contains("-----BEGIN ENCRYPTED PRIVATE KEY-----") || text.contains("Proc-Type: 4,ENCRYPTED")
            if encrypted && password == nil { throw KeyError.encryptedWithoutPassword(file: path) }
            var secret = (password ?? []) + [0]
            defer { secret.withUnsafeMutableBytes { OPENSSL_cleanse($0.baseAddress, $0.count) } }
            ERR_clear_error()
            let key: OpaquePointer? = try withMemoryBIO(pem, file: path) { bio in
                secret.withUnsafeMutableBytes { pass in
                    // With a password, OpenSSL reads it from `u` (no callback); without one, a callback that
                    // supplies none keeps OpenSSL from prompting on a terminal.
                    encrypted ? PEM_read_bio_PrivateKey(bio, nil, nil, pass.baseAddress)
                              : PEM_read_bio_PrivateKey(bio, nil, { _, _, _, _ in 0 }, nil)
                }
            }
            guard let key else {
                ERR_clear_error()
                throw encrypted ? KeyError.wrongPassword(file: path) : KeyError.notPEM(file: path, expected: "private key")
            }
            return try ECDSAKey(key: key, canSign: true, file: path)
        }
    }

    /// The public key in PEM file `path` (SubjectPublicKeyInfo, `-----BEGIN PUBLIC KEY-----`).
    public static func publicKey(path: String) throws -> ECDSAKey {
        try withFileBytes(path) { pem in
            ERR_clear_error()
            guard let key = try withMemoryBIO(pem, file: path, { PEM_read_bio_PUBKEY($0, nil, { _, _, _, _ in 0 }, nil) }) else {
                ERR_clear_error()
                throw KeyError.notPEM(file: path, expected: "public key")
            }
            return try ECDSAKey(key: key, canSign: false, file: path)
        }
    }

    /// The public half as PEM (`-----BEGIN PUBLIC KEY-----`, base64 in lines of 64, as OpenSSL and Python's
    /// `cryptography` both write it).
    public func publicKeyPEM() throws -> [UInt8] {
        guard let bio = BIO_new(BIO_s_mem()) else { throw KeyError.openSSL(file: file, operation: "BIO_new", detail: Self.lastError()) }
        defer { BIO_free(bio) }
        guard PEM_write_bio_PUBKEY(bio, key) == 1 else {
            throw KeyError.openSSL(file: file, operation: "PEM_write_bio_PUBKEY", detail: Self.lastError())
        }
        var out: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 512)
        while true {
            let n = BIO_read(bio, &chunk, Int32(chunk.count))
            if n <= 0 { break }
            out += chunk[0..<Int(n)]
        }
        return out
    }

    /// ECDSA P-256 / SHA-256 signature of `message`, DER-encoded. The nonce is random (OpenSSL 3.0 has no
    /// RFC 6979 nonces), so two signatures of the same message differ; both verify.
    public func sign(_ message: [UInt8]) throws -> [UInt8] {
        precondition(canSign, "signing needs a private key")
        guard let ctx = EVP_MD_CTX_new() else { throw KeyError.openSSL(file: file, operation: "EVP_MD_CTX_new", detail: Self.lastError()) }
        defer { EVP_MD_CTX_free(ctx) }
        var length = 0
        guard EVP_DigestSignInit(ctx, nil, EVP_sha256(), nil, key) == 1,
              EVP_DigestSign(ctx, nil, &length, message, message.count) == 1 else {
            throw KeyError.openSSL(file: file, operation: "EVP_DigestSign", detail: Self.lastError())
        }
        var signature = [UInt8](repeating: 0, count: length)
        guard EVP_DigestSign(ctx, &signature, &length, message, message.count) == 1 else {
            throw KeyError.openSSL(file: file, operation: "EVP_DigestSign", detail: Self.lastError())
        }
        return Array(signature.prefix(length))
    }

    /// Whether `signature` (DER) is this key's ECDSA / SHA-256 signature of `message`. A signature that is not
    /// valid DER is simply not a valid signature.
    public func verify(_ signature: [UInt8], of message: [UInt8]) -> Bool {
        guard let ctx = EVP_MD_CTX_new() else { return false }
        defer {
            EVP_MD_CTX_free(ctx)
            ERR_clear_error()
        }
        guard EVP_DigestVerifyInit(ctx, nil, EVP_sha256(), nil, key) == 1 else { return false }
        return EVP_DigestVerify(ctx, signature, signature.count, message, message.count) == 1
    }

    /// Calls `body` with the bytes of `path` (a regular file of at most `maximumFileSize` bytes, opened without
    /// blocking on a FIFO), cleansing them afterwards.
    private static func withFileBytes<R>(_ path: String, _ body: ([UInt8]) throws -> R) throws -> R {
        let fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK)
        guard fd >= 0 else { throw KeyError.unreadable(file: path, detail: String(cString: strerror(errno))) }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG else {
            throw KeyError.unreadable(file: path, detail: "not a regular file")
        }
        guard st.st_size <= maximumFileSize else {
            throw KeyError.unreadable(file: path, detail: "\(st.st_size) bytes; a PEM key is at most \(maximumFileSize)")
        }
        var bytes = [UInt8](repeating: 0, count: Int(st.st_size))
        defer { bytes.withUnsafeMutableBytes { OPENSSL_cleanse($0.baseAddress, $0.count) } }
        var done = 0
        while done < bytes.count {
            let n = bytes.withUnsafeMutableBytes { b in retryingOnInterrupt { read(fd, b.baseAddress! + done, b.count - done) } }
            guard n > 0 else { throw KeyError.unreadable(file: path, detail: n == 0 ? "shorter than its size" : String(cString: strerror(errno))) }
            done += n
        }
        return try body(bytes)
    }

    private static func withMemoryBIO<R>(_ bytes: [UInt8], file: String, _ body: (OpaquePointer) throws -> R) throws -> R {
        try bytes.withUnsafeBytes { raw in
            guard let bio = BIO_new_mem_buf(raw.baseAddress, Int32(raw.count)) else {
                throw KeyError.openSSL(file: file, operation: "BIO_new_mem_buf", detail: lastError())
            }
            defer { BIO_free(bio) }
            return try body(bio)
        }
    }

    /// OpenSSL's last error as text (library and reason; no data from the key).
    private static func lastError() -> String {
        let code = ERR_get_error()
        ERR_clear_error()
        guard code != 0 else { return "unknown error" }
        var buffer = [CChar](repeating: 0, count: 256)
        ERR_error_string_n(code, &buffer, buffer.count)
        return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}
