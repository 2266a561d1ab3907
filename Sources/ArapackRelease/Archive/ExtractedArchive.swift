import ArapackFormats
import ArapackTensor
import CZstd
#if canImport(Glibc)
import Glibc
#endif

/// A release archive unpacked into a private temporary folder (under `TMPDIR`, default /tmp) so it can be
/// read like a bundle folder; removed when released or when the process is interrupted.
public final class ExtractedArchive {
    /// The bundle folder inside the temporary folder.
    public let bundle: String
    private let root: String

    public init(_ path: String) throws {
        let base = getenv("TMPDIR").map { String(cString: $0) } ?? "/tmp"
        // The folder's name carries the pid, so a killed run's unpacked bundle is removed by the next one.
        TemporaryFiles.removeStale(in: base, prefix: "arapack-extract-")
        var template = Array((base + "/arapack-extract-\(getpid())-XXXXXX").utf8CString)
        guard let made = template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) else {
            throw FileError(path: base, operation: "mkdtemp", code: errno)
        }
        root = String(cString: made)
        TemporaryFiles.register(root)
        final class Writer: ArchiveReader.Visitor {
            let folder: String, archive: String, limit: Int
            var out: AtomicFileWriter?
            var total = 0
            init(_ folder: String, archive: String, limit: Int) {
                self.folder = folder
                self.archive = archive
                self.limit = limit
            }
            func begin(name: String, size: Int) throws {
                // Refused before a byte is written when the header already says so, else as the bytes come.
                guard size <= limit - total else { throw ExtractedArchive.bomb(archive, limit) }
                if let slash = name.firstIndex(of: "/") {  // the reader allows one folder level (base_tokenizer/)
                    let sub = folder + "/" + name[..<slash]
                    guard mkdir(sub, 0o700) == 0 || errno == EEXIST else { throw FileError(path: sub, operation: "mkdir", code: errno) }
                }
                out = try AtomicFileWriter(destination: folder + "/" + name)
            }
            func data(_ bytes: UnsafeRawBufferPointer) throws {
                total += bytes.count  // (the reader refuses the stream past the limit)
                try out!.write(bytes)
            }
            func end() throws { try out!.commit(replacing: false); out = nil }
        }
        let writer = Writer(root, archive: path, limit: ArchiveReader.expansionLimit(archiveSize: try fileSize(path)))
        do {
            try ArchiveReader.read(path, visitor: writer)  // the bundle's files land in root
            bundle = root
        } catch {
            removeTree(root)
            TemporaryFiles.unregister(root)
            throw error
        }
    }

    deinit {
        removeTree(root)
        TemporaryFiles.unregister(root)
    }

    static func bomb(_ archive: String, _ limit: Int) -> ArchiveError {
        ArchiveError.bomb(file: archive, limit: limit)
    }
}
