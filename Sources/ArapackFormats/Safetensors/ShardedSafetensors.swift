import ArapackTensor

/// A sharded safetensors model: `model.safetensors.index.json` and the shard files it names.
///
/// On open every shard is validated, every index entry must be found in its shard, no shard may
/// hold a tensor the index does not list, and `total_size` (when present) must equal the tensor bytes.
public final class ShardedSafetensors: TensorSource {
    /// The index file's path.
    public let indexPath: String
    /// The shards by file name, in name order.
    public let shards: [(name: String, file: SafetensorsFile)]
    /// The index's `metadata` object as written.
    public let indexMetadata: JSONValue
    private let weightMap: [String: Int]
    public let tensorNames: [String]

    public var formatName: String { "safetensors-sharded" }

    /// Opens and validates the index at `indexPath` and its shards.
    public init(indexPath: String) throws {
        self.indexPath = indexPath
        let bytes = try MappedFile(path: indexPath)
        let json: JSONValue
        do {
            json = try bytes.withUnsafeBytes { try JSONParser.parse($0) }
        } catch let e as JSONError {
            throw SafetensorsError.invalidIndex(file: indexPath, detail: "not valid JSON: \(e)")
        }
        guard let map = json["weight_map"]?.members else {
            throw SafetensorsError.invalidIndex(file: indexPath, detail: "missing \"weight_map\" object")
        }
        indexMetadata = json["metadata"] ?? .null
        let (dir, _) = splitPath(indexPath)
        var fileNames: [String] = []
        var assignment: [String: String] = [:]
        for m in map {
            guard let fileName = m.value.stringValue else {
                throw SafetensorsError.invalidIndex(file: indexPath, detail: "weight_map entry \"\(m.key)\" is not a file name")
            }
            try Self.checkRelativeName(fileName, index: indexPath)
            assignment[m.key] = fileName
            if !fileNames.contains(fileName) { fileNames.append(fileName) }
        }
        fileNames.sort()
        var opened: [(name: String, file: SafetensorsFile)] = []
        for name in fileNames {
            let path = (dir.isEmpty ? "" : dir + "/") + name
            do {
                opened.append((name, try SafetensorsFile(path: path)))
            } catch let e as FileError {
                throw SafetensorsError.invalidIndex(file: indexPath, detail: "shard \(name) named in weight_map cannot be read: \(e)")
            }
        }
        var where_: [String: Int] = [:]
        var total = 0
        for (i, shard) in opened.enumerated() {
            for entry in shard.file.header.entries {
                guard let assigned = assignment[entry.name] else {
                    throw SafetensorsError.invalidIndex(file: indexPath, detail: "shard \(shard.name) holds tensor \"\(entry.name)\" that weight_map does not list")
                }
                guard assigned == shard.name else {
                    throw SafetensorsError.invalidIndex(file: indexPath, detail: "tensor \"\(entry.name)\" is in \(shard.name) but weight_map says \(assigned)")
                }
                where_[entry.name] = i
                total += entry.dataRange.count
            }
        }
        for (name, file) in assignment where where_[name] == nil {
            throw SafetensorsError.invalidIndex(file: indexPath, detail: "tensor \"\(name)\" is absent from its shard \(file)")
        }
        if let declared = indexMetadata["total_size"], declared != .null {
            guard let size = declared.intValue ?? declared.doubleValue.flatMap({ Int(exactly: $0) }), size >= 0 else {
                throw SafetensorsError.invalidIndex(file: indexPath, detail: "metadata.total_size \(declared.serialized().prefix(40)) is not a byte count")
            }
            if size != total {
                throw SafetensorsError.invalidIndex(file: indexPath, detail: "metadata.total_size is \(size) but the shards hold \(total) bytes of tensors")
            }
        }
        shards = opened
        weightMap = where_
        tensorNames = map.map(\.key).sorted { $0.utf8.lexicographicallyPrecedes($1.utf8) }
    }

    public var filePaths: [String] { [indexPath] + shards.map(\.file.path) }

    public func filePath(of name: String) -> String? { weightMap[name].map { shards[$0].file.path } }

    /// The shard holding `name`.
    public func shard(of name: String) throws -> SafetensorsFile {
        guard let i = weightMap[name] else { throw SafetensorsError.tensorNotFound(file: indexPath, tensor: name) }
        return shards[i].file
    }

    public func descriptor(named name: String) throws -> TensorDescriptor { try shard(of: name).descriptor(named: name) }

    public func tensor(named name: String) throws -> Tensor { try shard(of: name).tensor(named: name) }

    /// Shard file names must stay inside the index's folder.
    static func checkRelativeName(_ name: String, index: String) throws {
        guard !name.isEmpty, !name.hasPrefix("/"), !name.split(separator: "/").contains(".."), !name.contains("\0") else {
            throw SafetensorsError.invalidIndex(file: index, detail: "shard name \"\(name)\" is not a plain relative file name")
        }
    }
}
