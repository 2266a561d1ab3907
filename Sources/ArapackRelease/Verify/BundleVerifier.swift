import ArapackFormats
import ArapackModel
import ArapackTensor
#if canImport(Glibc)
import Glibc
#endif

/// Structural verification of a release bundle, a folder or a `.tar.zst` read as a stream (never unpacked
/// to disk): manifest digests and sizes, config ⇄ tensors, the tie, NaN/Inf, tokenizer consistency.
/// Unreadable input throws (exit 2); everything found wrong is a problem in the report (exit 1).
public enum BundleVerifier {
    /// `signature`, the name of a signature file inside the bundle (besides model.sig), is not expected in the manifest.
    public static func verify(path: String, signature: String? = nil, progress: Progress) throws -> VerifyReport {
        let contents = BundleContents(file: path)
        var st = stat()
        guard stat(path, &st) == 0 else { throw SourceError.notFound(path: path) }
        if (st.st_mode & S_IFMT) == S_IFDIR {
            let names = try BundleFolder.files(path)
            let total = names.reduce(0) { sum, name in
                if case let .regular(size)? = try? FileKind(atPath: path + "/" + name) { return sum + size }
                return sum
            }
            progress.begin("reading \(path)", total: total)
            for name in names { try feedFile(path + "/" + name, name: name, into: contents, progress: progress) }
        } else {
            progress.begin("reading \(path)", total: 0)
            try ArchiveReader.read(path, visitor: contents)
        }
        progress.end()
        return check(contents, path: path, unlisted: [ModelSignature.defaultFileName] + (signature.map { [$0] } ?? []))
    }

    /// Reads one regular file of a bundle into `visitor` under `name` (its path inside the bundle).
    static func feedFile(_ path: String, name: String, into visitor: BundleContents, progress: Progress) throws {
        // Only regular files, checked before any open: a FIFO would block, a symlink could lead outside the bundle.
        switch try FileKind(atPath: path) {
        case .regular: break
        case .symlink: throw BundleError.notRegular(path: path, kind: .symlink)
        case .directory, .other: throw BundleError.notRegular(path: path, kind: .notAFile)
        }
        let fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK)
        guard fd >= 0 else { throw FileError(path: path, operation: "open", code: errno) }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG else {
            throw BundleError.notRegular(path: path, kind: .notAFile)
        }
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 16 << 20, alignment: 64)
        defer { buffer.deallocate() }
        try visitor.begin(name: name, size: Int(st.st_size))
        while true {
            let n = retryingOnInterrupt { read(fd, buffer.baseAddress, buffer.count) }
            guard n >= 0 else { throw FileError(path: path, operation: "read", code: errno) }
            if n == 0 { break }
            try visitor.data(UnsafeRawBufferPointer(rebasing: buffer[0..<n]))
            progress.advance(n)
        }
        try visitor.end()
    }

    static func check(_ b: BundleContents, path: String, unlisted: [String]) -> VerifyReport {
        var checks = BundleChecks(b: b, path: path, unlisted: unlisted)
        var report = VerifyReport(path: path)
        func run(_ name: String, _ body: () throws -> [String]) {
            do { report.checks.append(.init(name: name, problems: try body())) } catch { report.checks.append(.init(name: name, problems: ["\(error)"])) }
        }
        run("manifest") { try checks.manifestProblems() }
        run("config") { try checks.configProblems() }
        run("tensors") { try checks.tensorProblems() }
        run("NaN/Inf") { checks.nonFiniteProblems() }
        run("tokenizer") { try checks.tokenizerProblems() }
        if checks.hasNoTokenizer { report.checks[report.checks.count - 1].note = BundleChecks.noTokenizerNote }
        for extra in checks.extraChecks() { report.checks.append(.init(name: extra.name, problems: extra.problems)) }
        run("model card") { checks.modelCardProblems() }
        run("training metadata") { try checks.trainingMetadataProblems() }
        return report
    }
}
