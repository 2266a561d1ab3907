import ArapackTensor
#if canImport(Glibc)
import Glibc
#endif

/// The formats arapack recognises, detected from content rather than file names.
public enum SourceFormat: String, Sendable, CaseIterable {
    case safetensors
    case safetensorsSharded = "safetensors-sharded"
    case torchZip = "torch"
    case torchLegacy = "torch-legacy"
    case dcp
    case archive = "tar.zst"
    case gguf
}

/// Why a source could not be opened.
public enum SourceError: Error, Equatable, CustomStringConvertible, Sendable {
    case notFound(path: String)
    case unrecognised(path: String, detail: String)
    case unsupported(path: String, format: String, detail: String)

    public var description: String {
        switch self {
        case let .notFound(path): return "\(path): no such file or directory"
        case let .unrecognised(path, detail): return "\(path): unrecognised format: \(detail)"
        case let .unsupported(path, format, detail): return "\(path): \(format): \(detail)"
        }
    }
}

/// Finds what a path holds and opens it as a `TensorSource`.
public enum SourceDetection {
    /// The first bytes of a pre-1.6 `torch.save` file: pickle PROTO 2 then LONG1 of the legacy magic number.
    static let legacyTorchMagic: [UInt8] = [0x80, 0x02, 0x8A, 0x0A, 0x6C, 0xFC, 0x9C, 0x46, 0xF9, 0x20, 0x6A, 0xA8, 0x50, 0x19]

    /// Detects the format of `path` (a file or a folder).
    public static func detect(_ path: String) throws -> (format: SourceFormat, resolvedPath: String) {
        var st = stat()
        guard stat(path, &st) == 0 else { throw SourceError.notFound(path: path) }
        if (st.st_mode & S_IFMT) == S_IFDIR {
            let index = path + "/model.safetensors.index.json"
            if access(index, F_OK) == 0 { return (.safetensorsSharded, index) }
            if access(path + "/model.safetensors", F_OK) == 0 { return (.safetensors, path + "/model.safetensors") }
            if access(path + "/.metadata", F_OK) == 0 { return (.dcp, path) }
            if access(path + "/release.json", F_OK) == 0 {
                // A release set (`arapack release`): each artifact is read on its own.
                let artifacts = ((try? directoryEntries(path)) ?? []).filter { entry in
                    ["model.safetensors", "model.safetensors.index.json"].contains { access(path + "/" + entry + "/" + $0, F_OK) == 0 }
                }
                throw SourceError.unrecognised(path: path, detail: "a release set (release.json lists its artifacts): name one of them"
                                               + (artifacts.isEmpty ? "" : ", e.g. " + artifacts.prefix(3).map { path + "/" + $0 }.joined(separator: ", ")))
            }
            throw SourceError.unrecognised(path: path, detail: "folder holds no model.safetensors, index or DCP .metadata")
        }
        let head = try leadingBytes(of: path, count: 16)
        if head.starts(with: [0x50, 0x4B, 0x03, 0x04]) || head.starts(with: [0x50, 0x4B, 0x05, 0x06]) { return (.torchZip, path) }
        if head.starts(with: legacyTorchMagic) { return (.torchLegacy, path) }
        if head.starts(with: [0x28, 0xB5, 0x2F, 0xFD]) { return (.archive, path) }
        if head.starts(with: GGUF.magic) { return (.gguf, path) }
        if let first = head.first(where: { ![0x20, 0x0A, 0x0D, 0x09].contains($0) }), first == UInt8(ascii: "{") {
            return (.safetensorsSharded, path)
        }
        return (.safetensors, path)
    }

    /// Opens `path` as a tensor source. Formats whose reader is not part of this build are refused
    /// with a clear message.
    public static func open(_ path: String) throws -> TensorSource {
        let (format, resolved) = try detect(path)
        switch format {
        case .safetensors: return try SafetensorsFile(path: resolved)
        case .safetensorsSharded: return try ShardedSafetensors(indexPath: resolved)
        case .torchZip: return try TorchCheckpoint(path: resolved)
        case .torchLegacy: throw TorchError.legacyFormat(file: path)
        case .dcp: return try DCPCheckpoint(directory: resolved)
        case .gguf: return try GGUFFile(path: resolved)
        case .archive:
            throw SourceError.unsupported(path: path, format: format.rawValue, detail: "reading this format is not supported yet")
        }
    }

    /// The first `count` bytes of the file at `path` (fewer when it is shorter).
    public static func leadingBytes(of path: String, count: Int) throws -> [UInt8] {
        let fd = Glibc.open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw FileError(path: path, operation: "open", code: errno) }
        defer { close(fd) }
        var buffer = [UInt8](repeating: 0, count: count)
        let n = buffer.withUnsafeMutableBytes { raw in retryingOnInterrupt { read(fd, raw.baseAddress, count) } }
        guard n >= 0 else { throw FileError(path: path, operation: "read", code: errno) }
        return Array(buffer[0..<n])
    }
}
