import ArapackFormats
import ArapackModel
import ArapackTensor
#if canImport(Glibc)
import Glibc
#endif

/// Everything `verify` learns in one pass over a bundle's files: size and SHA-256 of each, the bytes of the
/// small JSON files, every safetensors header and each tensor's NaN/Inf count (scanned as bytes stream by).
final class BundleContents: ArchiveReader.Visitor {
    static let maximumJSONSize = 64 << 20
    /// Files kept in memory for the checks (JSON, the wrapper's Python, the model card), up to maximumJSONSize each.
    static let keptSuffixes = [".json", ".py", ".md"]
    let file: String
    private(set) var files: [String: (size: Int, sha256: String)] = [:]
    private var jsonBytes: [String: [UInt8]] = [:]
    /// JSON files parsed so far (the checks ask for config.json several times; the fuzz target's base files once).
    private var parsed: [String: JSONValue] = [:]
    private(set) var descriptors: [String: TensorDescriptor] = [:]
    private(set) var nonFinite: [String: Int] = [:]
    /// The bytes of the tensors of at most 64 bytes (`SafetensorsStreamScanner.smallTensors`).
    private(set) var smallTensors: [String: [UInt8]] = [:]
    private(set) var safetensorsMetadata: [String: [String: String]] = [:]

    private var name = ""
    private var size = 0
    private var seen = 0
    private var digest = SHA256()
    private var keep: [UInt8]?
    private var scanner: SafetensorsStreamScanner?

    init(file: String) { self.file = file }

    /// A copy holding what has been fed so far (between files).
    func copy() -> BundleContents {
        let c = BundleContents(file: file)
        c.files = files
        c.jsonBytes = jsonBytes
        c.parsed = parsed
        c.descriptors = descriptors
        c.nonFinite = nonFinite
        c.smallTensors = smallTensors
        c.safetensorsMetadata = safetensorsMetadata
        return c
    }

    /// Feeds one whole file held in memory.
    func feed(name: String, bytes: [UInt8]) throws {
        try begin(name: name, size: bytes.count)
        try bytes.withUnsafeBytes { try data($0) }
        try end()
    }

    func begin(name: String, size: Int) throws {
        self.name = name
        self.size = size
        seen = 0
        digest = SHA256()
        keep = Self.keptSuffixes.contains(where: name.hasSuffix) && size <= Self.maximumJSONSize ? [] : nil
        scanner = name.hasSuffix(".safetensors") ? SafetensorsStreamScanner(file: file + "/" + name, size: size) : nil
    }

    func data(_ bytes: UnsafeRawBufferPointer) throws {
        digest.update(bytes)
        seen += bytes.count
        keep?.append(contentsOf: bytes)
        try scanner?.feed(bytes)
    }

    func end() throws {
        guard seen == size else { throw BundleError.shortRead(file: file, name: name, read: seen, size: size) }
        files[name] = (size, digest.hexDigest())
        parsed[name] = nil
        if let keep { jsonBytes[name] = keep }
        if let s = scanner {
            let header = try s.finish()
            for e in header.entries {
                guard descriptors[e.name] == nil else { throw BundleError.tensorInTwoShards(file: file, tensor: e.name) }
                descriptors[e.name] = TensorDescriptor(dtype: e.dtype, shape: e.shape)
            }
            for (k, v) in s.nonFinite { nonFinite[k] = v }
            for (k, v) in s.smallTensors { smallTensors[k] = v }
            safetensorsMetadata[name] = header.metadata ?? [:]
        }
    }

    /// The bytes of a kept file (nil when absent or too large to keep).
    func bytes(_ name: String) -> [UInt8]? { jsonBytes[name] }

    /// A JSON file of the bundle, parsed (nil when absent).
    func json(_ name: String) throws -> JSONValue? {
        guard let bytes = jsonBytes[name] else {
            if files[name] != nil { throw BundleError.jsonTooLarge(file: file + "/" + name, limit: Self.maximumJSONSize) }
            return nil
        }
        if let value = parsed[name] { return value }
        do {
            let value = try JSONParser.parse(bytes)
            parsed[name] = value
            return value
        } catch { throw BundleError.invalidJSON(file: file + "/" + name, detail: "\(error)") }
    }

    /// Tensor descriptors under training names (the layout's names mapped back, GPT-2's transposed shapes turned
    /// back); an int8 weight and its scale count as one float32 tensor when the scale's shape fits the weight.
    func trainingDescriptors(in layout: NamingLayout) -> [String: TensorDescriptor] {
        var byTraining: [String: TensorDescriptor] = [:]
        for (k, v) in descriptors {
            let training = layout.trainingName(of: k)
            byTraining[training] = layout.trainingDescriptor(of: training, v)
        }
        return ModelFamily.foldQuantized(byTraining).tensors
    }

    func trainingShapes(in layout: NamingLayout) -> [String: [Int]] { trainingDescriptors(in: layout).mapValues(\.shape) }
}
