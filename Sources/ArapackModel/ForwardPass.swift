import ArapackFormats
import ArapackTensor
import CBLAS
import CKernels
import Dispatch
#if canImport(Glibc)
import Glibc
#endif

/// A float32 weight matrix or vector ready for BLAS: the source's own memory when it already is an aligned
/// float32 array (no copy), otherwise a float32 copy (bf16 / f16 / f64 sources, unaligned slices).
final class Weight: @unchecked Sendable {
    let pointer: UnsafePointer<Float>
    let count: Int
    /// What keeps `pointer` valid: the source tensor (its mapping) or the owned copy.
    private let owner: AnyObject
    private let owned: UnsafeMutableBufferPointer<Float>?

    init(_ t: Tensor) throws {
        count = t.elementCount
        let aligned = t.withUnsafeBytes { Int(bitPattern: $0.baseAddress) % MemoryLayout<Float>.alignment == 0 }
        if t.dtype == .f32, aligned {
            // A mapping (or owned buffer) never moves while its storage is alive, which `owner` guarantees.
            pointer = t.withUnsafeBytes { $0.baseAddress!.assumingMemoryBound(to: Float.self) }
            owner = t.storage
            owned = nil
        } else {
            let buffer = UnsafeMutableBufferPointer<Float>.allocate(capacity: max(count, 1))
            try t.copyFloats(into: UnsafeMutableBufferPointer(rebasing: buffer[0..<count]))
            t.storage.discardMappedPages()  // the narrow bytes were read once; the widened copy is what stays
            pointer = UnsafePointer(buffer.baseAddress!)
            owned = buffer
            owner = t.storage
        }
    }

    deinit { owned?.deallocate() }

    /// Drops the pages of a weight read in place from a mapping (they reload from the page cache if read again).
    func discardMappedPages() {
        if owned == nil, let storage = owner as? TensorStorage { storage.discardMappedPages() }
    }
}

/// Ids the forward pass cannot compute on.
public enum ForwardError: Error, Equatable, CustomStringConvertible, Sendable {
    case raggedBatch
    case tooLong(length: Int, limit: Int)
    case tokenOutsideVocabulary(id: Int, vocabSize: Int)

    public var description: String {
        switch self {
        case .raggedBatch: return "forward: all sequences must have the same length"
        case let .tooLong(length, limit): return "forward: sequence length \(length) exceeds max_position_embeddings \(limit)"
        case let .tokenOutsideVocabulary(id, vocab): return "forward: token id \(id) is outside the vocabulary of \(vocab)"
        }
    }
}

/// The reference forward pass of ARCHITECTURE.md in float32 on the CPU: every matrix product is
/// `cblas_sgemm` over all positions of all sequences at once (never token by token), its output columns
/// split across the cores; attention runs per sequence and head on strided views of the packed QKV rows.
public final class ForwardPass: @unchecked Sendable {
    struct Layer {
        let inProj: Weight, inBias: Weight, outProj: Weight, outBias: Weight
        let linear1: Weight, bias1: Weight, linear2: Weight, bias2: Weight
        let norm1w: Weight, norm1b: Weight, norm2w: Weight, norm2b: Weight
    }

    /// The config the pass computes (tests change it, and the weights below, to break the pass on purpose).
    public internal(set) var config: ModelConfig
    let embedding: Weight, positions: Weight
    var head: Weight
    let lnfw: Weight, lnfb: Weight
    var layers: [Layer]
    /// ReLU FFN (otherwise exact-erf GELU), read from the config once.
    let relu: Bool
    /// A seam for tests: replaces the activation (nil in every production use).
    var activationOverride: ((UnsafeMutablePointer<Float>, Int) -> Void)?
    /// Whether `linear` may use OpenBLAS's small-matrix kernel (tests turn it off to check the packed path).
    var smallKernel = ForwardPass.openblasHasSmallKernel

    /// Reads the weights of a model of `config`, each by its training name through `tensor` (any source: f32
    /// mapped in place, other dtypes widened once). A tied model's head is its embedding.
    public init(config: ModelConfig, tensor: (String) throws -> Tensor) throws {
        // OpenBLAS runs single-threaded: the forward pass spreads every GEMM over the cores itself.
        openblas_set_num_threads(1)
        self.config = config
        relu = config.activation == "relu"
        func w(_ name: String) throws -> Weight { try Weight(tensor(name)) }
        embedding = try w(ModelFamily.embedding)
        positions = try w(ModelFamily.positionEmbedding)
        head = config.tieWordEmbeddings ? embedding : try w(ModelFamily.lmHead)
        lnfw = try w(ModelFamily.finalNormWeight)
        lnfb = try w(ModelFamily.finalNormBias)
        layers = try (0..<config.layers).map { i in
            func t(_ tensor: ModelFamily.LayerTensor) throws -> Weight { try w(tensor.name(layer: i)) }
            return Layer(inProj: try t(.inProjWeight), inBias: try t(.inProjBias), outProj: try t(.outProjWeight), outBias: try t(.outProjBias),
                         linear1: try t(.linear1Weight), bias1: try t(.linear1Bias), linear2: try t(.linear2Weight), bias2: try t(.linear2Bias),
                         norm1w: try t(.norm1Weight), norm1b: try t(.norm1Bias), norm2w: try t(.norm2Weight), norm2b: try t(.norm2Bias))
        }
    }

    /// Drops the mapped pages of every weight read in place: once a pass is done, the source's mapping stops
    /// counting against the process (parity runs one model after the other).
    public func discardMappedPages() {
        for w in [embedding, positions, head, lnfw, lnfb] { w.discardMappedPages() }
        for l in layers {
            for w in [l.inProj, l.inBias, l.outProj, l.outBias, l.linear1, l.bias1, l.linear2, l.bias2, l.norm1w, l.norm1b, l.norm2w, l.norm2b] {
                w.discardMappedPages()
            }
        }
    }

    /// Logits `[N, L, V]` (row-major) for `N` sequences of `L` token ids each.
    public func logits(_ ids: [[Int]]) throws -> [Float] {
        guard let length = ids.first?.count, length > 0 else { return [] }
        guard ids.allSatisfy({ $0.count == length }) else { throw ForwardError.raggedBatch }
        guard length <= config.maxPositions else {
            throw ForwardError.tooLong(length: length, limit: config.maxPositions)
        }
        let d = config.hiddenSize, f = config.intermediateSize, v = config.vocabSize
        let rows = ids.count * length
        for seq in ids {
            for t in seq where t < 0 || t >= v { throw ForwardError.tokenOutsideVocabulary(id: t, vocabSize: v) }
        }
        let x = Scratch(rows * d), h = Scratch(rows * d), qkv = Scratch(rows * 3 * d), attn = Scratch(rows * d)
        let ffn = Scratch(rows * f), scores = Scratch(Self.cores * length * length), tiles = Scratch(Self.cores * Self.chunk(rows: rows) * rows)

        // x = E[t] + Pos[0..L)
        for (s, seq) in ids.enumerated() {
            for (i, t) in seq.enumerated() {
                let row = x.p + (s * length + i) * d
                for c in 0..<d { row[c] = embedding.pointer[t * d + c] + positions.pointer[i * d + c] }
            }
        }
        let eps = Float(config.layerNormEps)
        let headDim = d / config.heads
        let scale = 1 / Float(headDim).squareRoot()
        for layer in layers {
            layerNorm(x.p, into: h.p, rows: rows, width: d, weight: layer.norm1w, bias: layer.norm1b, eps: eps)
            linear(h.p, rows: rows, inWidth: d, weight: layer.inProj, bias: layer.inBias, outWidth: 3 * d, into: qkv.p, scratch: tiles)
            // Heads run in parallel, one per core (each GEMM single-threaded, as every GEMM here is).
            nonisolated(unsafe) let qkvp = qkv.p, attnp = attn.p, scoresp = scores.p
            let heads = config.heads
            parallel(ids.count * heads, minimum: 2) { worker, range in
                for task in range {
                    let s = task / heads, j = task % heads
                    let base = qkvp + s * length * 3 * d
                    // Head j is columns j·hd ..< (j+1)·hd of each of q, k and v.
                    let q = base + j * headDim, k = q + d, v = q + 2 * d
                    self.attention(q: q, k: k, v: v, ld: Int32(3 * d), length: length, headDim: headDim, scale: scale,
                                   scores: scoresp + worker * length * length, out: attnp + s * length * d + j * headDim, outLD: Int32(d))
                }
            }
            // x += attn · out_projᵀ + b
            linear(attn.p, rows: rows, inWidth: d, weight: layer.outProj, bias: layer.outBias, outWidth: d, into: x.p, accumulate: true,
                   scratch: tiles)
            layerNorm(x.p, into: h.p, rows: rows, width: d, weight: layer.norm2w, bias: layer.norm2b, eps: eps)
            linear(h.p, rows: rows, inWidth: d, weight: layer.linear1, bias: layer.bias1, outWidth: f, into: ffn.p, activate: true,
                   scratch: tiles)
            linear(ffn.p, rows: rows, inWidth: f, weight: layer.linear2, bias: layer.bias2, outWidth: d, into: x.p, accumulate: true,
                   scratch: tiles)
        }
        layerNorm(x.p, into: h.p, rows: rows, width: d, weight: lnfw, bias: lnfb, eps: eps)
        return [Float](unsafeUninitializedCapacity: rows * v) { o, count in
            linear(h.p, rows: rows, inWidth: d, weight: head, bias: nil, outWidth: v, into: o.baseAddress!, scratch: tiles)
            count = rows * v
        }
    }

    /// y = x · Wᵀ + b, or y = (y + b) + x · Wᵀ with `accumulate` (no bias: y = x · Wᵀ), x [rows, inWidth],
    /// W [outWidth, inWidth]; with `activate`, the FFN's activation is applied to each chunk while it is in
    /// cache. The output columns are split across the cores, each computing its share a chunk at a time
    /// with single-threaded sgemm (OpenBLAS's own threads stay idle, so they never spin against the
    /// attention and element-wise work between GEMMs). A chunk is computed transposed, `W[chunk] · xᵀ`, into
    /// the core's scratch and added into y: for few rows that orientation runs 7–11% faster in OpenBLAS's
    /// packed GEMM than x · Wᵀ, and it is the one its small-matrix kernel takes (`smallKernelRows`).
    private func linear(_ x: UnsafePointer<Float>, rows: Int, inWidth: Int, weight: Weight, bias: Weight?,
                        outWidth: Int, into y: UnsafeMutablePointer<Float>, accumulate: Bool = false, activate: Bool = false,
                        scratch: Scratch) {
        nonisolated(unsafe) let x = x, w = weight.pointer, y = y, t = scratch.p, b = bias?.pointer
        let chunk = Self.chunk(rows: rows), small = smallKernel ? Self.smallKernelRows(rows: rows, inWidth: inWidth) : nil
        // Each core takes a run of 64-column blocks, and computes it `chunk` columns at a time.
        parallel(outWidth / 64, minimum: 2) { part, blocks in
            let t = t + part * chunk * rows
            let end = blocks.upperBound == outWidth / 64 ? outWidth : blocks.upperBound * 64
            for first in stride(from: blocks.lowerBound * 64, to: end, by: chunk) {
                let cols = min(chunk, end - first)
                if let block = small {
                    // OpenBLAS's unpacked small-matrix kernel, 4 weight rows × up to `block` rows of x per call.
                    for c in stride(from: 0, to: cols, by: 4) {
                        for r in stride(from: 0, to: rows, by: block) {
                            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, Int32(min(4, cols - c)), Int32(min(block, rows - r)),
                                        Int32(inWidth), 1, w + (first + c) * inWidth, Int32(inWidth), x + r * inWidth, Int32(inWidth),
                                        0, t + c * rows + r, Int32(rows))
                        }
                    }
                } else {
                    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, Int32(cols), Int32(rows), Int32(inWidth),
                                1, w + first * inWidth, Int32(inWidth), x, Int32(inWidth), 0, t, Int32(rows))
                }
                arapack_add_transposed(t, cols, rows, y + first, outWidth, b.map { $0 + first }, accumulate ? 1 : 0)
                if activate {
                    for r in 0..<rows { self.activate(y + r * outWidth + first, count: cols) }
                }
            }
        }
    }

    /// Rows of x per call when OpenBLAS's small-matrix kernel should do the product, or nil for its packed
    /// GEMM. With few rows, packing the weights costs as much as the product (each weight is read from
    /// memory once and used `rows` times), and the small-matrix kernel, which reads the operands where they
    /// lie, runs faster: single-core, inner width 1,024, 17% at 16 rows, 12% at 64, 10% at 128, 3% at 256; no
    /// faster at 512 rows, and slower at inner width 4,096. OpenBLAS 0.3 takes a TN call into that kernel
    /// when M·N ≤ 1,200, M·N·K ≤ 10⁶ and K ≥ 32, and has it only for its AVX-512 cores
    /// (`openblasHasSmallKernel`); elsewhere the packed GEMM runs.
    static func smallKernelRows(rows: Int, inWidth: Int) -> Int? {
        guard rows <= 256, (32...1024).contains(inWidth) else { return nil }
        return min(300, 1_000_000 / (4 * inWidth)) / 16 * 16
    }

    static let openblasHasSmallKernel = ["skylakex", "cooperlake", "sapphirerapids"]
        .contains(String(cString: openblas_get_corename()).lowercased())

    /// Output columns per sgemm in `linear`, a multiple of 64: OpenBLAS packs x again for every call, so more
    /// rows want wider chunks (512 at 128 rows, 2048 at 512 measured best), while each core's scratch of
    /// `chunk × rows` floats stays within 8 MiB.
    static func chunk(rows: Int) -> Int {
        max(64, min(4 * rows, 2048, (1 << 21) / max(rows, 1)) / 64 * 64)
    }

    /// softmax(q·kᵀ·scale + mask)·v for one head of one sequence; q, k, v rows `ld` apart.
    /// Causal attention goes in blocks of query rows, each against only the keys it can see (0 ..< end of
    /// the block), which skips almost half the work; the rows' masked tails inside a block are zeroed.
    private func attention(q: UnsafePointer<Float>, k: UnsafePointer<Float>, v: UnsafePointer<Float>, ld: Int32, length: Int,
                           headDim: Int, scale: Float, scores: UnsafeMutablePointer<Float>, out: UnsafeMutablePointer<Float>, outLD: Int32) {
        let causal = config.causal
        let block = causal ? Self.queryBlock : length
        for first in stride(from: 0, to: length, by: block) {
            let rows = min(block, length - first), keys = causal ? first + rows : length
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, Int32(rows), Int32(keys), Int32(headDim), scale,
                        q + first * Int(ld), ld, k, ld, 0, scores, Int32(keys))
            for i in 0..<rows {
                arapack_softmax(scores + i * keys, causal ? first + i + 1 : keys, keys)
            }
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, Int32(rows), Int32(headDim), Int32(keys), 1,
                        scores, Int32(keys), v, ld, 0, out + first * Int(outLD), outLD)
        }
    }

    /// Query rows per block of causal attention.
    static let queryBlock = 64

    /// Runs `body(part, range)` over `0..<count` split into one contiguous range per core; `part` (below
    /// `cores`) tells a call which core's scratch it owns.
    private func parallel(_ count: Int, minimum: Int = 64, _ body: (Int, Range<Int>) -> Void) {
        let parts = count >= minimum ? min(Self.cores, count) : 1
        nonisolated(unsafe) let run = body
        DispatchQueue.concurrentPerform(iterations: parts) { i in
            run(i, (count * i / parts)..<(count * (i + 1) / parts))
        }
    }

    static let cores = max(1, Int(sysconf(Int32(_SC_NPROCESSORS_ONLN))))

    /// LayerNorm over each row (`arapack_layer_norm`: mean and biased variance in double, then scale and shift).
    private func layerNorm(_ x: UnsafePointer<Float>, into y: UnsafeMutablePointer<Float>, rows: Int, width: Int,
                           weight: Weight, bias: Weight, eps: Float) {
        nonisolated(unsafe) let x = x, y = y
        parallel(rows) { _, range in
            for r in range { arapack_layer_norm(x + r * width, y + r * width, width, weight.pointer, bias.pointer, eps) }
        }
    }

    /// Exact GELU (0.5·x·(1 + erf(x/√2))) or ReLU, in place over `count` values.
    private func activate(_ p: UnsafeMutablePointer<Float>, count: Int) {
        if let activationOverride {
            activationOverride(p, count)
        } else if relu {
            for i in 0..<count { p[i] = max(p[i], 0) }
        } else {
            arapack_gelu_erf(p, count)
        }
    }
}

/// A zeroed float buffer freed with its owner.
final class Scratch {
    let p: UnsafeMutablePointer<Float>
    init(_ count: Int) {
        p = .allocate(capacity: max(count, 1))
        p.initialize(repeating: 0, count: max(count, 1))
    }
    deinit { p.deallocate() }
}
