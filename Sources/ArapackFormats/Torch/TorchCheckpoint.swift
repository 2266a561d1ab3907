import ArapackTensor

/// Where a tensor's elements live in a checkpoint: a storage entry plus offset, shape and strides.
public struct TorchTensorRef: Sendable, Equatable {
    public var storageKey: String
    public var dtype: DType
    /// Elements the storage holds.
    public var storageElements: Int
    /// Offset into the storage, in elements.
    public var offset: Int
    public var shape: [Int]
    public var stride: [Int]

    /// Whether the elements are laid out densely in row-major order.
    public var isContiguous: Bool {
        var expected = 1
        for (size, step) in zip(shape, stride).reversed() where size != 1 {
            if step != expected { return false }
            expected *= size
        }
        return true
    }
}

/// A `torch.save` (zip format) checkpoint read without executing anything.
///
/// `data.pkl` is run through the restricted pickle machine with the checkpoint allow-list; any other
/// global stops the read naming it. The model state dict is found bare or under `model`,
/// `model_state_dict`, `state_dict` or `module`; the rest of the dict stays available as values.
/// Tensors are materialised only when asked for: reading the model never touches optimizer bytes.
public final class TorchCheckpoint: TensorSource {
    /// Keys under which training scripts keep the model's state dict, in the order they are tried.
    public static let stateDictKeys = ["model", "model_state_dict", "state_dict", "module"]

    public let path: String
    public let archive: ZipArchive
    /// The top folder of every entry, with its trailing slash.
    public let prefix: String
    /// The unpickled `data.pkl`.
    public let root: PickleValue
    /// Keeps `root`'s containers alive (and frees them, cycles included, with the checkpoint).
    private let pickleArena: PickleArena
    /// Every global `data.pkl` names, with offsets.
    public let globals: [(global: PickleGlobal, offset: Int)]
    /// The key of the state dict inside the root dict, or nil for a bare state dict.
    public let stateDictKey: String?
    /// Model tensors by name, in pickle order.
    public let tensorNames: [String]
    private let refs: [String: TorchTensorRef]
    private let reader: TorchArchive

    public var formatName: String { "torch" }
    public var filePaths: [String] { [path] }
    public func filePath(of name: String) -> String? { refs[name] == nil ? nil : path }

    /// Opens and validates the checkpoint at `path`. With `allowed == nil` unknown globals are kept as
    /// inert records instead of refused (for scanning only: nothing is ever called either way).
    public convenience init(path: String, allowed: Set<PickleGlobal>? = TorchGlobals.checkpointAllowList) throws {
        try self.init(file: try MappedFile(path: path), allowed: allowed)
    }

    /// Reads a checkpoint already mapped (`file.path` names it in errors); `inflateLimit` caps what its DEFLATE
    /// entries inflate to (default `ZipArchive.inflateBudget(archiveSize:)`; the fuzz target lowers it).
    public init(file: MappedFile, allowed: Set<PickleGlobal>? = TorchGlobals.checkpointAllowList,
                inflateLimit: Int? = nil) throws {
        let path = file.path
        self.path = path
        let archive = try ZipArchive(file: file, inflateLimit: inflateLimit)
        self.archive = archive
        let (reader, result) = try TorchArchive.open(archive, file: path, allowed: allowed)
        self.reader = reader
        prefix = reader.prefix
        root = result.value
        globals = result.globals
        pickleArena = result.arena
        let (key, dict) = try Self.findStateDict(root, file: path)
        stateDictKey = key
        var names: [String] = []
        var refs: [String: TorchTensorRef] = [:]
        for (k, v) in dict.entries {
            guard case let .string(name) = k else { continue }
            guard let ref = try TorchTensorRef(v, file: path, name: name) else { continue }
            names.append(name)
            refs[name] = ref
        }
        for ref in refs.values { try reader.checkStorage(ref) }
        tensorNames = names
        self.refs = refs
    }

    /// The storage reference of a model tensor.
    public func reference(of name: String) throws -> TorchTensorRef {
        guard let r = refs[name] else { throw TorchError.badTensor(file: path, tensor: name, detail: "not in the model state dict") }
        return r
    }

    public func descriptor(named name: String) throws -> TensorDescriptor {
        let r = try reference(of: name)
        return TensorDescriptor(dtype: r.dtype, shape: r.shape)
    }

    public func tensor(named name: String) throws -> Tensor {
        try materialize(try reference(of: name), name: name)
    }

    /// Groups of model tensor names that view the same elements of one storage (a tied pair is one group).
    public var sharedGroups: [[String]] {
        var groups: [String: [String]] = [:]
        var order: [String] = []
        for n in tensorNames {
            let r = refs[n]!
            let key = "\(r.storageKey)|\(r.offset)|\(r.shape)|\(r.stride)"
            if groups[key] == nil { order.append(key) }
            groups[key, default: []].append(n)
        }
        return order.compactMap { groups[$0]!.count > 1 ? groups[$0] : nil }
    }

    /// Materialises any tensor reference of this checkpoint (also outside the state dict, e.g. optimizer state).
    public func materialize(_ r: TorchTensorRef, name: String) throws -> Tensor {
        try reader.materialize(r)
    }

    // MARK: validation

    private static func findStateDict(_ root: PickleValue, file: String) throws -> (String?, PickleDict) {
        guard case let .dict(d) = root else {
            throw TorchError.noStateDict(file: file, detail: "the checkpoint holds a \(root.kindName), not a dict")
        }
        for key in stateDictKeys {
            if case let .dict(inner)? = d[key], inner.entries.contains(where: { isTensor($0.value) }) { return (key, inner) }
        }
        if d.entries.contains(where: { isTensor($0.value) }) { return (nil, d) }
        throw TorchError.noStateDict(file: file, detail: "top-level keys are [\(d.stringKeys.joined(separator: ", "))]; none of \(stateDictKeys.joined(separator: ", ")) holds tensors")
    }

    /// Whether a value is a tensor record (any of the rebuild functions).
    static func isTensor(_ v: PickleValue) -> Bool {
        guard case let .object(o) = v else { return false }
        return o.callable.module.hasPrefix("torch._utils") || o.callable == PickleGlobal("torch._tensor", "_rebuild_from_type_v2")
    }

}

extension TorchTensorRef {
    /// How many Parameters may wrap one tensor record.
    static let maximumParameterWrapping = 16

    /// Reads a tensor record (`_rebuild_tensor_v2/v3`, `_rebuild_parameter*`, `_rebuild_from_type_v2`),
    /// or returns nil when `value` is not a tensor. Throws when a tensor record is malformed or points
    /// outside its storage.
    init?(_ value: PickleValue, file: String, name: String) throws {
        func bad(_ detail: String) -> TorchError { TorchError.badTensor(file: file, tensor: name, detail: detail) }
        // Parameters wrap a tensor; peeled in a loop, so a file's chain of Parameters cannot run the stack out.
        var value = value, wrappers = 0
        while case let .object(p) = value, p.callable.module == "torch._utils",
              p.callable.name == "_rebuild_parameter" || p.callable.name == "_rebuild_parameter_with_state" {
            wrappers += 1
            guard wrappers <= Self.maximumParameterWrapping else {
                throw bad("Parameters wrapped in Parameters more than \(Self.maximumParameterWrapping) deep (torch writes one)")
            }
            guard let inner = p.args.first else { throw bad("parameter wraps no tensor") }
            value = inner
        }
        guard case let .object(o) = value else {
            if wrappers > 0 { throw bad("parameter wraps no tensor") }
            return nil
        }
        switch (o.callable.module, o.callable.name) {
        case ("torch._tensor", "_rebuild_from_type_v2"):
            guard o.args.count >= 3, case let .global(function) = o.args[0], let args = o.args[2].tupleValue,
                  let r = try TorchTensorRef(.object(PickleObject(callable: function, args: args)), file: file, name: name)
            else { throw bad("malformed _rebuild_from_type_v2") }
            self = r
        case ("torch._utils", "_rebuild_tensor_v2"), ("torch._utils", "_rebuild_tensor_v3"):
            let v3 = o.callable.name == "_rebuild_tensor_v3"
            guard o.args.count >= (v3 ? 7 : 6), case let .persistent(pid) = o.args[0], let p = pid.tupleValue, p.count == 5,
                  p[0].stringValue == "storage", case let .global(storageType) = p[1], let key = p[2].stringValue, let numel = p[4].intValue, numel >= 0
            else { throw bad("malformed \(o.callable.name) arguments (expected a ('storage', type, key, location, numel) reference)") }
            guard let offset = o.args[1].intValue, offset >= 0, let shape = o.args[2].sequence?.compactMap(\.intValue),
                  let stride = o.args[3].sequence?.compactMap(\.intValue), shape.count == o.args[2].sequence?.count,
                  stride.count == shape.count
            else { throw bad("malformed offset, size or stride") }
            var dtype: DType
            var elements = numel
            if v3 {
                guard case let .global(d) = o.args[6], d.module == "torch", let t = TorchGlobals.dtypes[d.name] else { throw bad("unknown dtype \(o.args[6].kindName)") }
                dtype = t
                guard storageType.name == "UntypedStorage" || TorchGlobals.storageTypes[storageType.name] != nil else { throw bad("unknown storage type \(storageType)") }
                if storageType.name == "UntypedStorage" {
                    guard numel % t.byteSize == 0 else { throw bad("untyped storage of \(numel) bytes is not a whole number of \(t) elements") }
                    elements = numel / t.byteSize
                }
            } else {
                guard let t = TorchGlobals.storageTypes[storageType.name], storageType.module == "torch" else { throw bad("unknown storage type \(storageType)") }
                dtype = t
            }
            guard key.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "_" || $0 == "-" || $0 == "." }), !key.contains(".."), !key.isEmpty else {
                throw bad("storage key \"\(key)\" is not a plain name")
            }
            guard shape.allSatisfy({ $0 >= 0 }), stride.allSatisfy({ $0 >= 0 }), Shape.elementCount(shape) != nil else { throw bad("negative or overflowing size/stride \(shape) / \(stride)") }
            if !shape.contains(0) {
                var last = offset
                for (s, st) in zip(shape, stride) {
                    let (span, o1) = (s - 1).multipliedReportingOverflow(by: st)
                    let (sum, o2) = last.addingReportingOverflow(span)
                    guard !o1, !o2 else { throw bad("size \(shape) with stride \(stride) overflows") }
                    last = sum
                }
                guard last < elements else { throw bad("size \(shape), stride \(stride) at offset \(offset) reach element \(last) of a \(elements)-element storage") }
            }
            self.init(storageKey: key, dtype: dtype, storageElements: elements, offset: offset, shape: shape, stride: stride)
        default:
            return nil
        }
    }
}
