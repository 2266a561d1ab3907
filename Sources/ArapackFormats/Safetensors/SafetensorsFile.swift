import ArapackTensor

/// A safetensors file opened read-only through a memory map and fully validated on open.
///
/// Tensors are zero-copy views of the mapping. Data that is unaligned for its dtype is still served
/// as bytes; typed access (`Tensor.floats()`, …) copies with unaligned loads.
public final class SafetensorsFile: TensorSource {
    /// The mapped file.
    public let file: MappedFile
    /// The validated header.
    public let header: SafetensorsHeader
    private let entryIndex: [String: Int]

    public var formatName: String { "safetensors" }

    /// Opens and validates `path`. Throws `FileError` or `SafetensorsError`.
    public init(path: String) throws {
        let mapped = try MappedFile(path: path)
        file = mapped
        header = try mapped.withUnsafeBytes { try SafetensorsHeader.parse($0, fileSize: mapped.count, file: path) }
        entryIndex = Dictionary(uniqueKeysWithValues: header.entries.enumerated().map { ($1.name, $0) })
    }

    /// The path of the file.
    public var path: String { file.path }

    /// `__metadata__`, empty when absent.
    public var metadata: [String: String] { header.metadata ?? [:] }

    public var filePaths: [String] { [path] }

    public func filePath(of name: String) -> String? { entryIndex[name] == nil ? nil : path }

    /// Tensor names in data order.
    public var tensorNames: [String] { header.entries.map(\.name) }

    public func descriptor(named name: String) throws -> TensorDescriptor {
        let e = try entry(named: name)
        return TensorDescriptor(dtype: e.dtype, shape: e.shape)
    }

    /// The header entry of `name`.
    public func entry(named name: String) throws -> SafetensorsHeader.Entry {
        guard let i = entryIndex[name] else { throw SafetensorsError.tensorNotFound(file: path, tensor: name) }
        return header.entries[i]
    }

    public func tensor(named name: String) throws -> Tensor {
        let e = try entry(named: name)
        let range = (header.dataStart + e.dataRange.lowerBound)..<(header.dataStart + e.dataRange.upperBound)
        return try Tensor(dtype: e.dtype, shape: e.shape, storage: TensorStorage(file: file, range: range))
    }
}
