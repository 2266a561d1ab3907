import ArapackFormats
import ArapackTensor
#if canImport(Glibc)
import Glibc
#endif

/// What a conversion may write over (docs/cli.md, "What --force replaces"). Two rules, both checked before the
/// source is read:
/// - an output is never an input, inside one, or a folder holding one (with or without `--force`): replacing it
///   would delete the checkpoint the user is converting;
/// - `--force` replaces only what arapack writes: an empty folder, a bundle folder whose every file its
///   manifest.json lists, a DCP folder of `.metadata` and `.distcp` files, a GGUF file for `--to gguf`, a torch.save
///   checkpoint for `--to torch`, a zstd archive and its `.sha256` line. Anything else is refused and left untouched.
public enum DestinationGuard {
    /// What a conversion writes at a path.
    public enum Kind: Sendable {
        case bundleFolder, dcpFolder, ggufFile, torchFile, archive, archiveSidecar, signature

        /// How a refusal names what arapack would have replaced.
        var title: String {
            switch self {
            case .bundleFolder: return "a release bundle"
            case .dcpFolder: return "a DCP folder"
            case .ggufFile: return "a GGUF file"
            case .torchFile: return "a torch.save checkpoint"
            case .archive: return "a bundle archive"
            case .archiveSidecar: return "an archive's .sha256 line"
            case .signature: return "a model signature"
            }
        }
    }

    /// How an output stands to an input.
    public enum Overlap: String, Sendable {
        case same = "is"
        case inside = "lies inside"
        case contains = "contains"
    }

    /// Throws `ConversionError.overlapsInput` when an output is an input, lies inside one or contains one. Paths
    /// are compared once links and `..` are resolved (and files by device and inode, so a hard link is caught too).
    public static func checkApart(outputs: [String], inputs: [String]) throws {
        for input in inputs where pathExists(input) {
            let inputPath = canonicalPath(input)
            for output in outputs {
                let outputPath = canonicalPath(output)
                let overlap: Overlap?
                if outputPath == inputPath || sameFile(input, output) {
                    overlap = .same
                } else if outputPath.hasPrefix(inputPath == "/" ? "/" : inputPath + "/") {
                    overlap = .inside
                } else if inputPath.hasPrefix(outputPath == "/" ? "/" : outputPath + "/") {
                    overlap = .contains
                } else {
                    overlap = nil
                }
                if let overlap { throw ConversionError.overlapsInput(output: output, input: input, overlap) }
            }
        }
    }

    /// Throws `ConversionError.notReplaceable` unless what exists at `path` (links followed) is something arapack
    /// writes as `kind`.
    public static func checkReplaceable(_ path: String, as kind: Kind) throws {
        let target = try NamedOutput.resolvingSymbolicLinks(path)
        func refuse(_ reason: String) -> ConversionError { .notReplaceable(path: path, expected: kind.title, reason: reason) }
        let found = try FileKind(atPath: target)
        switch kind {
        case .bundleFolder, .dcpFolder:
            guard found == .directory else { throw refuse("it is \(found.title), not a folder") }
            let files = try filesBelow(target, refuse: refuse)
            if files.isEmpty { return }
            let written = try kind == .bundleFolder ? bundleFiles(target, files: files, refuse: refuse) : Set(files.filter(isDCPFile))
            if let other = files.first(where: { !written.contains($0) }) {
                throw refuse("it holds \(other.escapingControlCharacters), which arapack did not write"
                             + (kind == .bundleFolder ? " (not in its manifest.json)" : ""))
            }
        case .ggufFile, .torchFile, .archive, .archiveSidecar, .signature:
            guard case let .regular(size) = found else { throw refuse("it is \(found.title), not a regular file") }
            // What the file holds, by the same detection every reader uses.
            let format = try SourceDetection.detect(target).format
            switch kind {
            case .ggufFile: guard format == .gguf else { throw refuse("it does not start with GGUF's magic") }
            case .torchFile:
                guard format == .torchZip, (try? TorchCheckpoint(path: target)) != nil else {
                    throw refuse("it is no torch.save checkpoint arapack reads")
                }
            case .archive: guard format == .archive else { throw refuse("it is not zstd-compressed") }
            case .signature:
                guard (try? ModelSignature.read(target)) != nil else { throw refuse("it is not an OpenSSF model signature arapack reads") }
            default:
                guard size <= 4096, isSidecarLine(try SourceDetection.leadingBytes(of: target, count: 80)) else { throw refuse("it is not a SHA-256 line as arapack writes one") }
            }
        }
    }

    /// The regular files below `folder`, as paths relative to it; a link, FIFO or device anywhere is refused.
    private static func filesBelow(_ folder: String, prefix: String = "", refuse: (String) -> ConversionError) throws -> [String] {
        var files: [String] = []
        for name in try directoryEntries(folder) {
            let relative = prefix + name
            switch try FileKind(atPath: folder + "/" + name) {
            case .regular: files.append(relative)
            case .directory: files += try filesBelow(folder + "/" + name, prefix: relative + "/", refuse: refuse)
            case let other: throw refuse("it holds \(relative.escapingControlCharacters), which is \(other.title)")
            }
        }
        return files
    }

    /// The files an arapack bundle holds: manifest.json, those it lists, and a signature beside them.
    private static func bundleFiles(_ folder: String, files: [String], refuse: (String) -> ConversionError) throws -> Set<String> {
        guard files.contains(Manifest.fileName) else { throw refuse("it has no \(Manifest.fileName), so arapack did not write it") }
        let manifest: Manifest
        do { manifest = try Manifest(path: folder + "/" + Manifest.fileName) } catch {
            throw refuse("its \(Manifest.fileName) is not one arapack writes: \(error)")
        }
        return Set(manifest.files.map(\.path) + [Manifest.fileName, ModelSignature.defaultFileName])
    }

    /// `.metadata` or `__<rank>_<n>.distcp`: the files of a DCP checkpoint.
    private static func isDCPFile(_ name: String) -> Bool {
        if name == ".metadata" { return true }
        guard name.hasPrefix("__"), name.hasSuffix(".distcp") else { return false }
        let middle = name.dropFirst(2).dropLast(".distcp".count).split(separator: "_", omittingEmptySubsequences: false)
        return middle.count == 2 && middle.allSatisfy { !$0.isEmpty && $0.allSatisfy(\.isNumber) }
    }

    /// `<64 hex digits>  <name>\n`, as `ReleaseArchive` writes the sidecar.
    private static func isSidecarLine(_ head: [UInt8]) -> Bool {
        head.count > 66 && head[0..<64].allSatisfy { (0x30...0x39).contains($0) || (0x61...0x66).contains($0) }
            && head[64] == 0x20 && head[65] == 0x20
    }

    /// `path` absolute, with links and `.`/`..` resolved: `realpath` where it exists, else its folder's realpath
    /// and its last component (after following a link there).
    static func canonicalPath(_ path: String) -> String {
        let followed = (try? NamedOutput.resolvingSymbolicLinks(path)) ?? path
        if let real = realpath(followed, nil) {
            defer { free(real) }
            return String(cString: real)
        }
        let (dir, base) = splitPath(followed)
        let folder = realpath(dir.isEmpty ? "." : dir, nil)
        defer { free(folder) }
        let parent = folder.map { String(cString: $0) } ?? dir
        return (parent == "/" ? "" : parent) + "/" + base
    }

    private static func sameFile(_ a: String, _ b: String) -> Bool {
        var sa = stat(), sb = stat()
        guard stat(a, &sa) == 0, stat(b, &sb) == 0 else { return false }
        return sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino
    }
}

extension FileKind {
    /// How a message names this kind of entry.
    var title: String {
        switch self {
        case .regular: return "a file"
        case .directory: return "a folder"
        case .symlink: return "a symbolic link"
        case .other: return "a FIFO, device or socket"
        }
    }
}
