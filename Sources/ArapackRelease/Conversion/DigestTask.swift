import ArapackFormats
import ArapackTensor
import Dispatch
#if canImport(Glibc)
import Glibc
#endif

/// SHA-256 of a source, computed on another thread: the file's digest for one file; for several (a DCP
/// folder, shards), the digest of the lines `<sha256>  <file name>\n` sorted by name. Released before it
/// finished (the conversion failed), it stops at the next 64 MiB block and waits for its thread: no work may
/// outlive the process's exit, where OpenSSL's and the C library's state is torn down under it.
final class DigestTask: @unchecked Sendable {
    /// What the worker shares with the task (the worker must not retain the task, whose release stops it).
    private final class Shared: @unchecked Sendable {
        let group = DispatchGroup()
        let stop = CancellationFlag()
        var result: Result<String, Error> = .success("")
    }
    private let shared = Shared()

    init(files: [String]) {
        let shared = self.shared
        shared.group.enter()
        DispatchQueue.global().async {
            shared.result = Result { try DigestTask.digest(files, cancelled: { shared.stop.isSet }) }
            shared.group.leave()
        }
    }

    deinit {
        shared.stop.set()
        shared.group.wait()
    }

    func wait() throws -> String {
        shared.group.wait()
        return try shared.result.get()
    }

    static func digest(_ files: [String], cancelled: @escaping () -> Bool = { false }) throws -> String {
        if files.count == 1 { return try SHA256.hex(ofFile: files[0], cancelled: cancelled) }
        let lines = try files.map { (splitPath($0).1, try SHA256.hex(ofFile: $0, cancelled: cancelled)) }.sorted { $0.0 < $1.0 }
        return Array(lines.map { "\($0.1)  \($0.0)\n" }.joined().utf8).withUnsafeBytes { SHA256.hex(of: $0) }
    }
}

/// A flag one thread sets and another reads.
final class CancellationFlag: @unchecked Sendable {
    private let lock = NSLockLike()
    private var value = false
    func set() { lock.withLock { value = true } }
    var isSet: Bool { lock.withLock { value } }
}
