import ArapackFormats
import ArapackModel
import ArapackTensor
#if canImport(Glibc)
import Glibc
#endif

/// The files of a bundle folder: regular files at its top and in folders directly under it (the tokenizer's
/// base_tokenizer/), by relative path, sorted. Symlinks, FIFOs, devices and deeper folders are refused (lstat,
/// nothing opened): a bundle is read only through regular files inside it.
public enum BundleFolder {
    /// Files a bundle may hold: a release has a dozen plus its shards (200 for a terabyte in 5 GB shards); a
    /// folder of thousands of tiny files is refused before any is opened (each costs a hash, a check, a line).
    public static let maximumFiles = 10_000

    public static func files(_ folder: String) throws -> [String] {
        var out: [String] = []
        func add(_ name: String) throws {
            guard out.count < maximumFiles else { throw BundleError.tooManyFiles(folder: folder, limit: maximumFiles) }
            out.append(name)
        }
        for name in try directoryEntries(folder) {
            switch try FileKind(atPath: folder + "/" + name) {
            case .regular: try add(name)
            case .directory:
                for inner in try directoryEntries(folder + "/" + name) {
                    switch try FileKind(atPath: folder + "/" + name + "/" + inner) {
                    case .regular: try add(name + "/" + inner)
                    case .directory: throw BundleError.notRegular(path: folder + "/" + name + "/" + inner, kind: .folderTwoDeep)
                    case .symlink: throw BundleError.notRegular(path: folder + "/" + name + "/" + inner, kind: .symlink)
                    case .other: throw BundleError.notRegular(path: folder + "/" + name + "/" + inner, kind: .special)
                    }
                }
            case .symlink: throw BundleError.notRegular(path: folder + "/" + name, kind: .symlink)
            case .other: throw BundleError.notRegular(path: folder + "/" + name, kind: .special)
            }
        }
        return out.sorted { $0.utf8.lexicographicallyPrecedes($1.utf8) }
    }
}

/// A bundle held in memory, checked again with one file replaced at a time (the bundle fuzz target mutates a
/// valid bundle's JSON files this way; everything else is read once). Package access: the fuzz target's, not the API's.
package final class BundleSnapshot: @unchecked Sendable {
    private let base: BundleContents
    private let path: String

    /// `files` are the bundle's files by name; a file named in `replaceable` is left out until `verify`.
    package init(path: String, files: [(name: String, bytes: [UInt8])], replaceable: Set<String>) throws {
        self.path = path
        base = BundleContents(file: path)
        for f in files where !replaceable.contains(f.name) {
            try base.feed(name: f.name, bytes: f.bytes)
            if f.name.hasSuffix(".json") { _ = try? base.json(f.name) }  // parsed once, not per check
        }
    }

    /// The structural report of the bundle with these files (usually the replaceable ones) added.
    package func verify(with files: [(name: String, bytes: [UInt8])]) throws -> VerifyReport {
        let contents = base.copy()
        for f in files { try contents.feed(name: f.name, bytes: f.bytes) }
        return BundleVerifier.check(contents, path: path, unlisted: [ModelSignature.defaultFileName])
    }
}
