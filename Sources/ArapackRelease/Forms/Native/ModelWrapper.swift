import ArapackFormats
import ArapackModel
#if canImport(Glibc)
import Glibc
#endif

/// The transformers wrapper every native bundle carries (docs/bundle.md): two Python files written here, in
/// `Sources/ArapackRelease/Forms/Native/Wrapper/`, compiled into the binary and written byte for byte into each bundle,
/// and config.json's `auto_map` pointing at their classes. GPT-2 bundles load with stock transformers and
/// carry none.
public enum ModelWrapper {
    public static let configurationFile = ModelConfig.configurationModule + ".py"
    public static let modelingFile = ModelConfig.modelingModule + ".py"

    /// The files, in the order they are written.
    public static let files: [(name: String, bytes: [UInt8])] = [
        (configurationFile, PackageResources.configuration_arafusion_py),
        (modelingFile, PackageResources.modeling_arafusion_py),
    ]

    /// The bytes this arapack writes under `name`, or nil for a file that is not part of the wrapper.
    public static func bytes(of name: String) -> [UInt8]? { files.first { $0.name == name }?.bytes }


    /// What `verify` finds wrong with the wrapper of a native bundle whose config.json is `config`: every
    /// `auto_map` entry names a file of the bundle and a class that file defines; the wrapper files are the
    /// ones this arapack writes (a copy from another version, or edited, is reported as changed).
    /// `read` gives a bundle file's bytes (nil when absent).
    static func problems(config: JSONValue, expected c: ModelConfig, read: (String) -> [UInt8]?) -> [String] {
        var problems: [String] = []
        guard let map = config["auto_map"]?.members else {
            return ["config.json has no auto_map: transformers cannot find the model's code (trust_remote_code loads nothing)"]
        }
        if config["auto_map"] != c.autoMap {
            problems.append("config.json auto_map is not the one arapack \(arapackVersion) writes for \(c.modelType): \(c.autoMap.serialized())")
        }
        for entry in map {
            guard let reference = entry.value.stringValue, let dot = reference.lastIndex(of: ".") else {
                problems.append("auto_map \(entry.key) is not \"module.Class\""); continue
            }
            let file = String(reference[..<dot]) + ".py", name = String(reference[reference.index(after: dot)...])
            guard let bytes = read(file) else { problems.append("auto_map \(entry.key) names \(file), which is not in the bundle"); continue }
            guard contains(bytes, Array("\nclass \(name)(".utf8)) else {
                problems.append("auto_map \(entry.key) names class \(name), which \(file) does not define")
                continue
            }
        }
        for (name, bytes) in files {
            switch read(name) {
            case nil: problems.append("\(name) is missing")
            case let found? where !same(found, bytes):
                problems.append("\(name) differs from the wrapper arapack \(arapackVersion) writes (changed, or from another version)")
            default: break
            }
        }
        return problems
    }

    /// Whether `needle` occurs in `bytes`: memchr for the first byte, memcmp for the rest (the wrapper files are
    /// tens of kilobytes; a String search compares Characters, and the generic collection search was slower still).
    static func contains(_ bytes: [UInt8], _ needle: [UInt8]) -> Bool {
        guard let first = needle.first else { return true }
        guard bytes.count >= needle.count else { return false }
        return bytes.withUnsafeBytes { b in
            needle.withUnsafeBytes { n in
                var at = b.baseAddress!
                let end = b.baseAddress! + (b.count - n.count + 1)
                while at < end, let hit = memchr(at, Int32(first), end - at) {
                    if memcmp(hit, n.baseAddress!, n.count) == 0 { return true }
                    at = UnsafeRawPointer(hit) + 1
                }
                return false
            }
        }
    }

    /// Byte equality of two files through memcmp.
    static func same(_ a: [UInt8], _ b: [UInt8]) -> Bool {
        a.count == b.count && a.withUnsafeBytes { x in b.withUnsafeBytes { y in x.count == 0 || memcmp(x.baseAddress!, y.baseAddress!, x.count) == 0 } }
    }
}
