import Dispatch

/// A `[rows, cols]` matrix stored in a form the forward pass decodes a run of rows at a time (a quantized weight:
/// int8 or int4 values with their scales, a GGUF block type) instead of as float32 values in memory: the products
/// decode the rows they are about to use into their core's scratch, and a float32 copy of the whole model (1.5 GB
/// of fresh pages at full size) is never made. `decodeAll` makes that copy where one is wanted.
public struct RowDecoder: Sendable {
    public let rows: Int
    public let cols: Int
    /// Writes rows `first ..< first + count` as float32 into `out` (`count × cols` values), each value what decoding
    /// the whole matrix gives it. Called from several threads at once, on different rows.
    public let decode: @Sendable (_ first: Int, _ count: Int, _ out: UnsafeMutablePointer<Float>) -> Void
    /// What holds the stored bytes (its mapping's pages can be dropped once a pass is done).
    public let storage: TensorStorage

    public init(rows: Int, cols: Int, storage: TensorStorage,
                decode: @escaping @Sendable (_ first: Int, _ count: Int, _ out: UnsafeMutablePointer<Float>) -> Void) {
        self.rows = rows
        self.cols = cols
        self.storage = storage
        self.decode = decode
    }

    /// The whole matrix as a float32 tensor of `shape` (rows × cols values), decoded straight into the tensor's
    /// storage, the rows shared among the cores.
    public func decodeAll(shape: [Int]) throws -> Tensor {
        try Tensor(float32Shape: shape) { out in
            precondition(out.count == rows * cols, "a decoder of \(rows) × \(cols) values fills a tensor of \(out.count)")
            guard let base = out.baseAddress else { return }
            nonisolated(unsafe) let out = base
            let parts = rows * cols >= 1 << 20 ? min(Cores.online, rows) : 1
            DispatchQueue.concurrentPerform(iterations: parts) { part in
                let first = rows * part / parts
                decode(first, rows * (part + 1) / parts - first, out + first * cols)
            }
        }
    }
}
