import ArapackFormats
@testable import ArapackModel
import ArapackRelease
import ArapackTensor
import ArapackTestSupport
import Foundation
import Synchronization
import XCTest

/// The forward pass against golden logits from PyTorch's `ARBaseline.eval()` for several twins; each
/// deliberate deviation (mask, head split, GELU variant, LayerNorm epsilon, tie) must break the match.
final class ForwardPassTests: XCTestCase {
    static let twins = ["ar_gelu", "ar_relu", "mdlm_gelu", "ar_odd", "ar_small_scale", "ar_long"]

    func golden(_ name: String) throws -> (ids: [[Int]], logits: [Float]) {
        let file = try SafetensorsFile(path: TestSupport.fixture("golden/\(name).golden.safetensors"))
        let ids = try file.tensor(named: "ids")
        let flat = try ids.integers(as: Int64.self).map(Int.init)
        let length = ids.shape[1]
        return (stride(from: 0, to: flat.count, by: length).map { Array(flat[$0..<($0 + length)]) }, try file.tensor(named: "logits").floats())
    }

    /// `source` written as a bundle (in `dtype`, or its own) into a folder removed after the test, read back.
    func bundle(of source: ReleaseModel, dtype: DType? = nil) throws -> ReleaseModel {
        let dir = try TestSupport.temporaryDirectory()
        addTeardownBlock { removeTree(dir) }
        try BundleWriter.write(source, tokenizer: nil, options: .init(dtype: dtype), into: dir, progress: .silent)
        return try ReleaseModel(path: dir)
    }

    func maxDifference(_ a: [Float], _ b: [Float]) -> Float {
        zip(a, b).reduce(0) { max($0, abs($1.0 - $1.1)) }
    }

    func testGoldenLogitsWithin1e4() throws {
        // On every instruction set this CPU runs (they give the same bits; KernelInvarianceTests proves that).
        defer { try? KernelISA.use(.best) }
        for isa in KernelISA.supported {
            try KernelISA.use(isa)
            for name in Self.twins {
                let model = try ReleaseModel(path: TestSupport.fixture("golden/\(name).pt"))
                let forward = try ForwardPass(model)
                let (ids, expected) = try golden(name)
                let logits = try forward.logits(ids)
                XCTAssertEqual(logits.count, expected.count, name)
                let diff = maxDifference(logits, expected)
                XCTAssertLessThan(diff, 1e-4, "\(name) (\(isa)): max |arapack − torch| = \(diff)")
                print("\(name) (\(isa)): max |arapack − torch| = \(diff)")
            }
        }
    }

    func testChunksStayWithinTheScratch() {
        // Chunks: multiples of 64, 512 columns at 128 rows, 2,048 at 512, scratch within 8 MiB per core.
        XCTAssertEqual(ForwardPass.chunk(rows: 128), 512)
        XCTAssertEqual(ForwardPass.chunk(rows: 512), 2048)
        for rows in [1, 7, 100, 1000, 5000, 40000] {
            let chunk = ForwardPass.chunk(rows: rows)
            XCTAssertTrue(chunk >= 64 && chunk % 64 == 0 && (chunk == 64 || chunk * rows <= 1 << 21), "\(rows) rows: \(chunk)")
        }
    }

    /// Deliberate bugs, each a pass built through the production initialiser from a changed config, changed weights
    /// or llama.cpp's GELU, fail the golden logits: the comparisons catch them.
    func testEachDeliberateBugBreaksTheGoldenMatch() throws {
        typealias Broken = (ReleaseModel) throws -> ForwardPass
        func with(_ change: @escaping (inout ModelConfig) -> Void) -> Broken {
            { model in
                var config = model.config
                change(&config)
                return try ForwardPass(config: config, tensor: model.tensor)
            }
        }
        // q, k and v read as per-head [q k v] packs instead of thirds: the rows of in_proj permuted to match.
        let interleaved: Broken = { model in
            let d = model.config.hiddenSize, heads = model.config.heads, hd = d / heads
            return try ForwardPass(config: model.config) { name in
                let t = try model.tensor(name)
                guard name.hasSuffix("in_proj_weight") || name.hasSuffix("in_proj_bias") else { return t }
                let w = try t.floats(), width = w.count / (3 * d)
                var out = [Float](repeating: 0, count: w.count)
                for j in 0..<heads { for p in 0..<3 { for c in 0..<hd {
                    let to = j * 3 * hd + p * hd + c, from = p * d + j * hd + c
                    for x in 0..<width { out[to * width + x] = w[from * width + x] }
                } } }
                return try Tensor(float32: out, shape: t.shape)
            }
        }
        // The LM head zeroed: an untied pass whose head is zeros.
        let zeroHead: Broken = { model in
            var config = model.config
            config.tieWordEmbeddings = false
            return try ForwardPass(config: config) { name in
                guard name == ModelFamily.lmHead else { return try model.tensor(name) }
                let shape = try model.tensor(ModelFamily.embedding).shape
                return try Tensor(float32: [Float](repeating: 0, count: shape.reduce(1, *)), shape: shape)
            }
        }
        let cases: [(String, String, Broken)] = [
            ("ar_gelu", "no causal mask", with { $0.causal = false }),
            ("ar_gelu", "tanh GELU (llama.cpp's)", { try ForwardPass(config: $0.config, llamaCppGELU: true, tensor: $0.tensor) }),
            ("ar_small_scale", "epsilon × 10", with { $0.layerNormEps *= 10 }),
            ("ar_odd", "heads interleaved", interleaved),
            ("ar_relu", "a zero LM head", zeroHead),
            ("ar_long", "no causal mask", with { $0.causal = false }),
        ]
        for (name, bug, broken) in cases {
            let model = try ReleaseModel(path: TestSupport.fixture("golden/\(name).pt"))
            let (ids, expected) = try golden(name)
            XCTAssertLessThan(maxDifference(try ForwardPass(model).logits(ids), expected), 1e-4, "\(name) intact matches")
            let diff = maxDifference(try broken(model).logits(ids), expected)
            XCTAssertGreaterThan(diff, 1e-3, "\(name) with \(bug) must not match the golden logits")
        }
    }

    /// `arapack run`'s next-token list: by logit, ties by the smaller id, probabilities of the whole row's softmax.
    func testNextTokensAreRankedByLogitWithTheirProbabilities() {
        let row: [Float] = [1, 3, 3, 0, -2]
        let next = ForwardPass.nextTokens(row[...], k: 3)
        XCTAssertEqual(next.map(\.id), [1, 2, 0])
        let z = row.reduce(0.0) { $0 + Foundation.exp(Double($1) - 3) }
        for t in next { XCTAssertEqual(t.probability, Foundation.exp(Double(t.logit) - 3) / z, accuracy: 1e-15) }
        XCTAssertEqual(ForwardPass.nextTokens(row[2...], k: 9).map(\.id), [0, 1, 2], "ids count from the slice's start")
    }

    /// The kept-best heap gives exactly the prefix of a full sort, on a row with many ties in every order, for k
    /// from one to past the row's length.
    func testNextTokensEqualAFullSortsPrefix() {
        var state: UInt64 = 0x9E37_79B9_7F4A_7C15
        let row: [Float] = (0..<3000).map { _ in
            state = state &* 6364136223846793005 &+ 1442695040888963407
            return Float(Int(state >> 59)) - 8   // 32 distinct values: ties everywhere
        }
        for values in [row, row.sorted(), row.sorted(by: >)] {
            let reference = values.indices.sorted { values[$0] > values[$1] || values[$0] == values[$1] && $0 < $1 }
            for k in [1, 2, 5, 64, 2999, 3000, 4000] {
                XCTAssertEqual(ForwardPass.nextTokens(values[...], k: k).map(\.id), Array(reference.prefix(k)), "k \(k)")
            }
        }
    }

    func testBundleAndCheckpointGiveBitIdenticalLogits() throws {
        let source = try ReleaseModel(path: TestSupport.fixture("golden/ar_odd.pt"))
        let (ids, _) = try golden("ar_odd")
        let a = try ForwardPass(source).logits(ids)
        let b = try ForwardPass(try bundle(of: source)).logits(ids)
        XCTAssertEqual(a.map(\.bitPattern), b.map(\.bitPattern))
    }

    func testFloat32WeightsAreReadInPlaceNarrowMatricesWidenedPerProduct() throws {
        func address(_ t: Tensor) -> UnsafeRawPointer { t.withUnsafeBytes { UnsafeRawPointer($0.baseAddress!) } }
        let source = try ReleaseModel(path: TestSupport.fixture("golden/ar_odd.pt"))
        let forward = try ForwardPass(source)
        let embedding = try source.tensor(ModelFamily.embedding)
        XCTAssertTrue(embedding.storage.isMapped)
        XCTAssertEqual(UnsafeRawPointer(forward.embedding.pointer), address(embedding), "float32 embedding read from the mapping")
        XCTAssertTrue(forward.head === forward.embedding, "the tied head is the embedding, not a second copy")
        let linear1 = try source.tensor("transformer.layers.2.linear1.weight")
        XCTAssertEqual(UnsafeRawPointer(forward.layers[2].linear1.pointer), address(linear1))

        let (ids, _) = try golden("ar_odd")
        for dtype in [DType.bf16, .f16] {
            let cast = try bundle(of: source, dtype: dtype)
            let narrow = try ForwardPass(cast)
            XCTAssertEqual(try cast.tensor(ModelFamily.embedding).dtype, dtype)
            // The matrices stay 16-bit words in the mapping; vectors are widened once.
            for weight in [narrow.embedding, narrow.layers[0].inProj, narrow.layers[0].outProj, narrow.layers[1].linear1, narrow.layers[1].linear2] {
                XCTAssertTrue(weight.isNarrow, "\(dtype)")
            }
            XCTAssertFalse(narrow.layers[0].inBias.isNarrow)
            XCTAssertFalse(narrow.positions.isNarrow)
            // The same values written out as float32 (read in place, never widened by the pass) give the same bits.
            let wide = try ForwardPass(try bundle(of: cast, dtype: .f32))
            XCTAssertFalse(wide.embedding.isNarrow)
            let a = try narrow.logits(ids), b = try wide.logits(ids)
            XCTAssertEqual(a.count, b.count)
            XCTAssertEqual(a.map(\.bitPattern), b.map(\.bitPattern), "\(dtype): widening per product changes no bit")
            XCTAssertGreaterThan(maxDifference(a, try forward.logits(ids)), 0, "\(dtype): the cast weights are not the source's")
        }
    }

    /// Making a pass asks the kernel to read its mapped weights ahead, so that a checkpoint not in memory is read in
    /// large requests while the pass computes rather than a fault at a time: soon after, every page of every weight
    /// is in memory, though the pass has not run and opening the checkpoint read only its directory and pickle.
    func testMakingAPassReadsItsMappedWeightsAhead() throws {
        let dir = try TestSupport.temporaryDirectory()
        defer { removeTree(dir) }
        let path = dir + "/cold.pt"
        try FileManager.default.copyItem(atPath: TestSupport.fixture("golden/ar_odd.pt"), toPath: path)
        guard try TestSupport.isOnDisk(dir) else { return }  // tmpfs keeps every page in memory: nothing to observe
        try TestSupport.evictFromPageCache(path)
        let source = try ReleaseModel(path: path)
        let file = try MappedFile(path: path)  // another mapping of the same file: it sees the same page cache
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))
        // The pages wholly inside the weights' storages (the pages holding their ZIP headers are read to open it).
        let pages = try ZipArchive(file: file).entries.filter { $0.name.contains("/data/") }.flatMap { e in
            let first = (e.dataOffset + page - 1) / page
            return first..<max(first, (e.dataOffset + e.size) / page)
        }
        func resident() -> Int { let r = TestSupport.residentPages(file); return pages.filter { r[$0] }.count }
        XCTAssertGreaterThan(pages.count, 100)
        XCTAssertLessThan(resident(), pages.count / 2, "opening the checkpoint does not read its weights")
        let pass = try ForwardPass(source)
        var waited = 0
        while resident() < pages.count, waited < 100 {
            usleep(50_000)
            waited += 1
        }
        // Readahead is advice the kernel may cut short (a page it cannot allocate at once): nine tenths, against
        // 2 of 218 pages without it.
        XCTAssertGreaterThanOrEqual(resident(), pages.count * 9 / 10, "the weights are read ahead")
        withExtendedLifetime(pass) {}
    }

    /// Dropping a pass's mapped pages leaves no page of its weights read in place mapped in the process, the weights
    /// shared out among its threads, and runs each piece of work given alongside once.
    func testDiscardingMappedPagesUnmapsTheWeightsAndRunsTheWorkAlongside() throws {
        let pass = try ForwardPass(try ReleaseModel(path: TestSupport.fixture("golden/ar_odd.pt")), threads: 2)
        let logits = try pass.logits([[1, 2, 3, 4, 5]])
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))
        let pagemap = open("/proc/self/pagemap", O_RDONLY)
        XCTAssertGreaterThanOrEqual(pagemap, 0)
        defer { close(pagemap) }
        let inPlace = pass.weightsInOrderOfUse.filter { $0.owned == nil && !$0.isNarrow }
        XCTAssertEqual(inPlace.count, pass.weightsInOrderOfUse.count, "a float32 checkpoint's weights are all read in place")
        // The pages wholly inside each weight, and how many of them are mapped (pagemap's bit 63).
        func mapped() -> (mapped: Int, pages: Int) {
            var mapped = 0, pages = 0
            for w in inPlace {
                let start = UInt(bitPattern: w.pointer), end = start + UInt(w.count * MemoryLayout<Float>.size)
                for p in stride(from: (start + UInt(page) - 1) / UInt(page), to: end / UInt(page), by: 1) {
                    var entry: UInt64 = 0
                    XCTAssertEqual(pread(pagemap, &entry, 8, off_t(p * 8)), 8)
                    pages += 1
                    if entry >> 63 == 1 { mapped += 1 }
                }
            }
            return (mapped, pages)
        }
        let before = mapped()
        XCTAssertGreaterThan(before.pages, 100)
        XCTAssertEqual(before.mapped, before.pages, "the products read every page of the weights")
        let ran = Mutex<[Int]>([])
        pass.discardMappedPages(alongside: (0..<5).map { i in { ran.withLock { $0.append(i) } } })
        XCTAssertEqual(mapped().mapped, 0, "no page of a weight stays mapped")
        XCTAssertEqual(ran.withLock { $0.sorted() }, [0, 1, 2, 3, 4])
        XCTAssertEqual(try pass.logits([[1, 2, 3, 4, 5]]), logits, "the pages are read in again when the pass runs again")
    }

    func testInputChecks() throws {
        let forward = try ForwardPass(try ReleaseModel(path: TestSupport.fixture("golden/ar_gelu.pt")))
        XCTAssertThrowsError(try forward.logits([[1, 2, 128]])) { XCTAssertEqual($0 as? ForwardError, .tokenOutsideVocabulary(id: 128, vocabSize: 128)) }
        XCTAssertThrowsError(try forward.logits([Array(repeating: 1, count: 17)])) { XCTAssertEqual($0 as? ForwardError, .tooLong(length: 17, limit: 16)) }
        XCTAssertThrowsError(try forward.logits([[1, 2], [3]])) { XCTAssertEqual($0 as? ForwardError, .raggedBatch) }
    }
}
