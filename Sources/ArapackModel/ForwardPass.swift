import ArapackFormats
import ArapackTensor
import CKernels
import Dispatch
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// A weight as the kernels read it. float32 is read in place when aligned (a mapping or an owned buffer: no copy).
/// A bf16 or f16 matrix that the products read (`narrow`) stays in place too, as 16-bit words, and each product
/// widens the rows it is about to use into its core's scratch (`rows(_:_:width:scratch:)`): widening is exact, so
/// the products see the same values, and a 1.5 GB float32 copy of a model is never made (its fresh pages cost more
/// than the widening). A quantized matrix (a `RowDecoder`: int8, int4, a GGUF block type) is decoded the same way, a
/// run of rows at a time. Anything else (vectors, f64, unaligned slices) is widened once into an owned copy.
final class Weight: @unchecked Sendable {
    /// The float32 values, unless the weight is held narrow.
    private let floats: UnsafePointer<Float>?
    /// The 16-bit words of a narrow weight, and how they widen.
    private let halves: UnsafePointer<UInt16>?
    private let widen: ((UnsafeBufferPointer<UInt16>, UnsafeMutableBufferPointer<Float>) -> Void)?
    /// The decoder of a quantized matrix read a run of rows at a time.
    private let decoder: RowDecoder?
    let count: Int
    /// What keeps the values valid: the source tensor's (or decoder's) storage, and the owned copy if any.
    private let owner: TensorStorage
    let owned: ZeroedMemory?
    /// How a product with this weight rounds its input first (`ARAPACK_ROUND_*`: llama.cpp's, for a GGUF weight).
    var inputRounding: Int32 = 0

    /// `narrow`: a bf16 or f16 matrix may stay in place as 16-bit words (only the products and the embedding's rows read it).
    init(_ t: Tensor, narrow: Bool = false) throws {
        count = t.elementCount
        owner = t.storage
        decoder = nil
        let address = t.withUnsafeBytes { Int(bitPattern: $0.baseAddress) }
        if t.dtype == .f16 { widen = FloatConversion.convertFromF16 } else { widen = FloatConversion.convertFromBF16 }
        if t.dtype == .f32, address % MemoryLayout<Float>.alignment == 0 {
            // A mapping (or owned buffer) never moves while its storage is alive, which `owner` guarantees.
            floats = t.withUnsafeBytes { UnsafePointer($0.baseAddress!.assumingMemoryBound(to: Float.self)) }
            (halves, owned) = (nil, nil)
        } else if narrow, t.dtype == .bf16 || t.dtype == .f16, address % MemoryLayout<UInt16>.alignment == 0 {
            halves = t.withUnsafeBytes { UnsafePointer($0.baseAddress!.assumingMemoryBound(to: UInt16.self)) }
            (floats, owned) = (nil, nil)
        } else {
            let memory = ZeroedMemory(byteCount: max(count, 1) * MemoryLayout<Float>.stride)
            let buffer = memory.bound(to: Float.self, count: max(count, 1))
            try t.copyFloats(into: UnsafeMutableBufferPointer(rebasing: buffer[0..<count]))
            t.storage.discardMappedPages()  // the narrow bytes were read once; the widened copy is what stays
            floats = UnsafePointer(buffer.baseAddress!)
            halves = nil
            owned = memory
        }
    }

    /// A quantized matrix, decoded a run of rows at a time into the products' scratch.
    init(decoding decoder: RowDecoder) {
        count = decoder.rows * decoder.cols
        owner = decoder.storage
        self.decoder = decoder
        (floats, halves, widen, owned) = (nil, nil, nil, nil)
    }

    /// Whether the weight is held as 16-bit words or decoded (its products need scratch to widen rows into).
    var isNarrow: Bool { halves != nil || decoder != nil }

    /// The float32 values of a weight not held narrow.
    var pointer: UnsafePointer<Float> { floats! }

    /// Rows `first ..< first + rows` of this `[*, width]` matrix as float32: in place, or widened into `scratch`
    /// (room for `rows × width` floats).
    func rows(_ first: Int, _ rows: Int, width: Int, scratch: UnsafeMutablePointer<Float>) -> UnsafePointer<Float> {
        if let floats { return floats + first * width }
        if let decoder {
            decoder.decode(first, rows, scratch)
            return UnsafePointer(scratch)
        }
        widen!(UnsafeBufferPointer(start: halves! + first * width, count: rows * width), UnsafeMutableBufferPointer(start: scratch, count: rows * width))
        return UnsafePointer(scratch)
    }

    /// Drops the pages of a weight read in place from a mapping (they reload from the page cache if read again).
    func discardMappedPages() {
        if owned == nil { owner.discardMappedPages() }
    }

    /// Reads a weight read in place from a mapping into the page cache (see `MappedFile.readIntoMemory`).
    func readIntoMemory() {
        if owned == nil { owner.readIntoMemory() }
    }
}

/// Ids the forward pass cannot compute on.
public enum ForwardError: Error, Equatable, CustomStringConvertible, Sendable {
    case raggedBatch
    case tooLong(length: Int, limit: Int)
    case tokenOutsideVocabulary(id: Int, vocabSize: Int)
    case unknownISA(String, supported: [String])
    case isaNotSupported(String, best: String)

    public var description: String {
        switch self {
        case .raggedBatch: return "forward: all sequences must have the same length"
        case let .tooLong(length, limit): return "forward: sequence length \(length) exceeds max_position_embeddings \(limit)"
        case let .tokenOutsideVocabulary(id, vocab): return "forward: token id \(id) is outside the vocabulary of \(vocab)"
        case let .unknownISA(value, supported):
            return "ARAPACK_ISA=\(value.escapingControlCharacters): expected one of \(supported.joined(separator: ", "))"
        case let .isaNotSupported(value, best):
            return "ARAPACK_ISA=\(value): this CPU does not run it (the widest it runs is \(best))"
        }
    }
}

/// The reference forward pass of docs/model-family.md in float32 on the CPU, batch-, thread- and CPU-invariant: a
/// sequence's logits have the same bits whatever batch it runs in, however many cores share the work and whichever
/// instruction set the kernels use (`KernelISA`). Every matrix product is CKernels' `arapack_gemm_nt` (each output
/// one chain of fused multiply-adds in k order) over all positions of all sequences at once, its output columns
/// split across the cores; attention runs per sequence and head (`arapack_attention`); LayerNorm, softmax and GELU
/// are CKernels' fixed-order loops.
public final class ForwardPass: @unchecked Sendable {
    struct Layer {
        let inProj: Weight, inBias: Weight, outProj: Weight, outBias: Weight
        let linear1: Weight, bias1: Weight, linear2: Weight, bias2: Weight
        let norm1w: Weight, norm1b: Weight, norm2w: Weight, norm2b: Weight

        /// Its weights in the order the pass reads them.
        var weights: [Weight] { [norm1w, norm1b, inProj, inBias, outProj, outBias, norm2w, norm2b, linear1, bias1, linear2, bias2] }
    }

    /// The config the pass computes (tests change it, and the weights below, to break the pass on purpose).
    public let config: ModelConfig
    let embedding: Weight, positions: Weight
    let head: Weight
    let lnfw: Weight, lnfb: Weight
    let layers: [Layer]
    /// Threads the work is split into (`defaultThreads` unless the initialiser was given a count).
    public let threads: Int
    /// ReLU FFN (otherwise GELU), read from the config once.
    let relu: Bool
    /// GELU as llama.cpp computes it (a float16 table of the tanh approximation) instead of exact erf GELU: what a
    /// GGUF file computes in llama.cpp.
    public let llamaCppGELU: Bool
    /// The reading ahead of the mapped weights (`readAhead`), and whether to stop it at the next weight.
    private let readingAhead = DispatchGroup()
    private let stopReadingAhead = Atomic<Bool>(false)
    /// The threads beside the caller's that share the pass's parallel regions.
    private let team: WorkerTeam

    /// Reads the weights of a model of `config`, each by its training name through `tensor` (any source: f32
    /// mapped in place, other dtypes widened once). A tied model's head is its embedding.
    /// Throws `ForwardError` when `ARAPACK_ISA` names an instruction set this CPU cannot run. `threads` (at least
    /// 1) sets how many threads share the work.
    /// With `llamaCppGELU`, GELU is llama.cpp's (`arapack_gelu_ggml`).
    /// `inputRounding` names, for a weight by its training name, how llama.cpp rounds the activations a product with
    /// it reads (`ARAPACK_ROUND_*`, from the GGUF file's tensor type); none by default. `rowDecoder` gives, for a matrix
    /// only the products read, a decoder of its stored rows (a quantized weight), used instead of `tensor`'s float32.
    public init(config: ModelConfig, threads: Int = ForwardPass.defaultThreads, llamaCppGELU: Bool = false,
                inputRounding: (String) -> Int32 = { _ in 0 }, rowDecoder: (String) throws -> RowDecoder? = { _ in nil },
                tensor: (String) throws -> Tensor) throws {
        try KernelISA.configureFromEnvironment()
        self.threads = max(1, threads)
        self.config = config
        relu = config.activation == "relu"
        self.llamaCppGELU = llamaCppGELU
        func w(_ name: String, narrow: Bool = false) throws -> Weight {
            let decoder = narrow ? try rowDecoder(name) : nil
            let weight = try decoder.map(Weight.init(decoding:)) ?? Weight(tensor(name), narrow: narrow)
            weight.inputRounding = inputRounding(name)
            return weight
        }
        embedding = try w(ModelFamily.embedding, narrow: true)
        positions = try w(ModelFamily.positionEmbedding)
        head = config.tieWordEmbeddings ? embedding : try w(ModelFamily.lmHead, narrow: true)
        // The tied head is the embedding's matrix: a product with it rounds its input as the embedding's type says.
        lnfw = try w(ModelFamily.finalNormWeight)
        lnfb = try w(ModelFamily.finalNormBias)
        layers = try (0..<config.layers).map { i in
            func t(_ tensor: ModelFamily.LayerTensor, narrow: Bool = false) throws -> Weight { try w(tensor.name(layer: i), narrow: narrow) }
            return Layer(inProj: try t(.inProjWeight, narrow: true), inBias: try t(.inProjBias), outProj: try t(.outProjWeight, narrow: true),
                         outBias: try t(.outProjBias), linear1: try t(.linear1Weight, narrow: true), bias1: try t(.linear1Bias),
                         linear2: try t(.linear2Weight, narrow: true), bias2: try t(.linear2Bias),
                         norm1w: try t(.norm1Weight), norm1b: try t(.norm1Bias), norm2w: try t(.norm2Weight), norm2b: try t(.norm2Bias))
        }
        team = WorkerTeam(threads: self.threads)
        readAhead()
    }

    deinit { team.stop() }

    /// The weights in the order a pass reads them whole (the embedding, of which the pass reads only its ids' rows
    /// at the start, comes last: a tied head reads all of it at the end).
    var weightsInOrderOfUse: [Weight] {
        [positions] + layers.flatMap(\.weights) + [lnfw, lnfb, head] + (head === embedding ? [] : [embedding])
    }

    /// Reads the mapped weights ahead, in the order the pass uses them, on a background thread: a checkpoint not yet
    /// in memory (the first run after it was written or copied) is then read in large requests while the pass
    /// computes, instead of a page fault at a time as each product reaches its matrix. Weights already in memory cost
    /// a few lookups (`readIntoMemory`). The bits do not depend on it.
    func readAhead() {
        let weights = weightsInOrderOfUse
        DispatchQueue.global().async(group: readingAhead) { [self] in
            for w in weights where !stopReadingAhead.load(ordering: .relaxed) { w.readIntoMemory() }
        }
    }

    /// Drops the mapped pages of every weight read in place: once a pass is done, the source's mapping stops
    /// counting against the process (parity runs one model after the other). Letting go of a full-size model's
    /// 1.5 GB of mapped pages takes 50–70 ms on one core when they are 4 KiB pages, so the pass's threads share the
    /// weights out, the largest first, and run `jobs` (the work that comes next and does not need the weights) among
    /// them. Reading ahead stops first.
    public func discardMappedPages(alongside jobs: [@Sendable () -> Void] = []) {
        stopReadingAhead.store(true, ordering: .relaxed)
        readingAhead.wait()  // no weight is read in again once dropped
        let weights = weightsInOrderOfUse.sorted { $0.count > $1.count }
        let total = jobs.count + weights.count
        let next = Atomic<Int>(0)
        DispatchQueue.concurrentPerform(iterations: min(threads, total)) { _ in
            while case let i = next.wrappingAdd(1, ordering: .relaxed).oldValue, i < total {
                if i < jobs.count { jobs[i]() } else { weights[i - jobs.count].discardMappedPages() }
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
        let packed = arapack_packed_rows(rows)
        let x = Scratch(rows * d), h = Scratch(rows * d), qkv = Scratch(rows * 3 * d), attn = Scratch(rows * d)
        let ffn = Scratch(rows * f), packedInput = Scratch(packed * max(d, f))
        let headDim = d / config.heads
        let attentionScratch = (headDim + 1) * length
        let scores = Scratch(threads * attentionScratch), tiles = Scratch(threads * Self.chunk(rows: packed) * packed)
        // Narrow weights are widened a chunk of rows at a time, into each core's share of this scratch.
        let narrow = ([embedding, head] + layers.flatMap { [$0.inProj, $0.outProj, $0.linear1, $0.linear2] }).contains { $0.isNarrow }
        let widened = Scratch(narrow ? threads * Self.chunk(rows: packed) * max(d, f) : 1)
        let work = Work(packed: packedInput, tiles: tiles, widened: widened)

        // x = E[t] + Pos[0..L)
        for (s, seq) in ids.enumerated() {
            for (i, t) in seq.enumerated() {
                let row = x.p + (s * length + i) * d
                let e = embedding.rows(t, 1, width: d, scratch: widened.p)
                for c in 0..<d { row[c] = e[c] + positions.pointer[i * d + c] }
            }
        }
        let eps = Float(config.layerNormEps)
        let scale = 1 / Float(headDim).squareRoot()
        for layer in layers {
            layerNorm(x.p, into: h.p, rows: rows, width: d, weight: layer.norm1w, bias: layer.norm1b, eps: eps)
            linear(h.p, rows: rows, inWidth: d, weight: layer.inProj, bias: layer.inBias, outWidth: 3 * d, into: qkv.p, work: work)
            // Heads run in parallel, one per core (each GEMM single-threaded, as every GEMM here is).
            nonisolated(unsafe) let qkvp = qkv.p, attnp = attn.p, scoresp = scores.p
            let heads = config.heads, causal = config.causal
            parallel(ids.count * heads, minimum: 2) { worker, range in
                for task in range {
                    let s = task / heads, j = task % heads
                    let base = qkvp + s * length * 3 * d
                    // Head j is columns j·hd ..< (j+1)·hd of each of q, k and v.
                    let q = base + j * headDim, k = q + d, v = q + 2 * d
                    arapack_attention(q, k, v, 3 * d, length, headDim, scale, causal ? 1 : 0, scoresp + worker * attentionScratch,
                                      attnp + s * length * d + j * headDim, d)
                }
            }
            // x += attn · out_projᵀ + b
            linear(attn.p, rows: rows, inWidth: d, weight: layer.outProj, bias: layer.outBias, outWidth: d, into: x.p, accumulate: true,
                   work: work)
            layerNorm(x.p, into: h.p, rows: rows, width: d, weight: layer.norm2w, bias: layer.norm2b, eps: eps)
            linear(h.p, rows: rows, inWidth: d, weight: layer.linear1, bias: layer.bias1, outWidth: f, into: ffn.p, activate: true,
                   work: work)
            linear(ffn.p, rows: rows, inWidth: f, weight: layer.linear2, bias: layer.bias2, outWidth: d, into: x.p, accumulate: true,
                   work: work)
        }
        layerNorm(x.p, into: h.p, rows: rows, width: d, weight: lnfw, bias: lnfb, eps: eps)
        return [Float](unsafeUninitializedCapacity: rows * v) { o, count in
            linear(h.p, rows: rows, inWidth: d, weight: head, bias: nil, outWidth: v, into: o.baseAddress!, work: work)
            count = rows * v
        }
    }

    /// y = x · Wᵀ + b, or y = (y + b) + x · Wᵀ with `accumulate` (no bias: y = x · Wᵀ), x [rows, inWidth],
    /// W [outWidth, inWidth]; with `activate`, the FFN's activation is applied to each run of columns while it
    /// is in cache. x is packed into 16-row panels once; the cores take runs of output columns in turn, each run
    /// computed transposed (`W[run] · xᵀ`, `arapack_gemm_nt`) into the core's scratch, then added into y. Which
    /// core computes a column, and how many rows there are, change no bit of it.
    private func linear(_ x: UnsafePointer<Float>, rows: Int, inWidth: Int, weight: Weight, bias: Weight?,
                        outWidth: Int, into y: UnsafeMutablePointer<Float>, accumulate: Bool = false, activate: Bool = false,
                        work: Work) {
        let packed = arapack_packed_rows(rows)
        nonisolated(unsafe) let xp = work.packed.p, y = y, t = work.tiles.p, b = bias?.pointer, widened = work.widened.p
        // Each core packs a run of 16-row panels (copies: no bit depends on who packs what). With a GGUF weight's
        // input rounding, each row is first rounded in place (every input of `linear` is scratch read by this product
        // alone: a LayerNorm's, attention's or the FFN's output), row by row, as llama.cpp quantizes activations.
        let panel = arapack_packed_rows(1), rounding = weight.inputRounding
        nonisolated(unsafe) let xIn = UnsafeMutablePointer(mutating: x)
        parallel(packed / panel, minimum: 2) { _, panels in
            let first = panels.lowerBound * panel, last = min(rows, panels.upperBound * panel)
            if rounding != 0 {
                for r in first..<last { arapack_round_like_ggml(xIn + r * inWidth, inWidth, rounding) }
            }
            arapack_pack_rows(xIn + first * inWidth, inWidth, last - first, inWidth, xp + first * inWidth)
        }
        let chunk = Self.chunk(rows: packed), unit = Self.unit(outWidth: outWidth, chunk: chunk, threads: threads)
        parallel((outWidth + unit - 1) / unit, minimum: 2) { part, units in
            let t = t + part * chunk * packed, scratch = widened + part * chunk * inWidth
            for u in units {
                let first = u * unit, cols = min(unit, outWidth - first)
                let w = weight.rows(first, cols, width: inWidth, scratch: scratch)
                arapack_gemm_nt(xp, rows, inWidth, w, inWidth, cols, t, packed)
                arapack_add_transposed(t, packed, cols, rows, y + first, outWidth, b.map { $0 + first }, accumulate ? 1 : 0)
                if activate {
                    for r in 0..<rows { self.activate(y + r * outWidth + first, count: cols) }
                }
            }
        }
    }

    /// Output columns of one GEMM call in `linear`: a multiple of 64, at most `chunk`, and small enough that each
    /// core has about four runs of them to take.
    static func unit(outWidth: Int, chunk: Int, threads: Int) -> Int {
        max(64, min(chunk, outWidth / (4 * threads)) / 64 * 64)
    }

    /// The most output columns of one GEMM call in `linear`, a multiple of 64, so that each core's scratch of
    /// `chunk × rows` floats stays within 8 MiB.
    static func chunk(rows: Int) -> Int {
        max(64, min(4 * rows, 2048, (1 << 21) / max(rows, 1)) / 64 * 64)
    }

    /// Runs `body(part, range)` over `0..<count` in runs that shrink with the work left (what is left divided by twice
    /// the number of parts, at least one item): each core takes the next run when done with its last, so a core that
    /// something else shares (a digest, the writer) takes fewer, and the last runs are single items, so that at the end
    /// no core waits long for another (fixed runs of a quarter of a core's share were 18 of the LM head's 150 units,
    /// up to ~25 ms of one core idle at full size). `part` (below `threads`) tells a call which core's scratch it
    /// owns. Every region split this way computes each item alone, so who takes what changes no bit.
    private func parallel(_ count: Int, minimum: Int = 64, _ body: (Int, Range<Int>) -> Void) {
        let parts = count >= minimum ? min(threads, count) : 1
        guard parts > 1 else { return body(0, 0..<count) }
        let next = Atomic<Int>(0)
        team.run(parts: parts) { part in
            var first = next.load(ordering: .relaxed)
            while first < count {
                let run = max(1, (count - first) / (2 * parts))
                let (taken, seen) = next.compareExchange(expected: first, desired: first + run, ordering: .relaxed)
                if taken { body(part, first..<first + run) }
                first = taken ? first + run : seen  // a stale guess fails the next exchange, which returns the value
            }
        }
    }

    /// Threads a pass splits its work into by default: `ARAPACK_THREADS` when it names a count from 1 to 1,024,
    /// otherwise one per online core. The count changes how fast a pass runs, never a bit of what it computes.
    public static let defaultThreads: Int = {
        if let text = getenv("ARAPACK_THREADS").map({ String(cString: $0) }), let n = Int(text), (1...1024).contains(n) { return n }
        return Cores.online
    }()

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
        if relu {
            for i in 0..<count { p[i] = max(p[i], 0) }
        } else if llamaCppGELU {
            arapack_gelu_ggml(p, count)
        } else {
            arapack_gelu_erf(p, count)
        }
    }
}

/// The scratch `linear` shares across a pass: the packed input, each core's tile of transposed output, and each
/// core's rows of a narrow weight widened to float32.
struct Work {
    let packed: Scratch, tiles: Scratch, widened: Scratch
}

/// A zeroed float buffer freed with its owner.
final class Scratch {
    private let memory: ZeroedMemory
    let p: UnsafeMutablePointer<Float>
    init(_ count: Int) {
        memory = ZeroedMemory(byteCount: max(count, 1) * MemoryLayout<Float>.stride)
        p = memory.bound(to: Float.self, count: max(count, 1)).baseAddress!
    }
}
