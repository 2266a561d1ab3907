import ArapackFormats
@testable import ArapackModel
import ArapackRelease
import ArapackTensor
import ArapackTestSupport
import Foundation
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

    /// Deliberate bugs, made here by changing what the pass computes from (its config, its weights, or the
    /// activation seam), each fail the golden logits: the comparisons catch them.
    func testEachDeliberateBugBreaksTheGoldenMatch() throws {
        let tanhGELU: (UnsafeMutablePointer<Float>, Int) -> Void = { p, n in
            for i in 0..<n { let x = p[i]; p[i] = 0.5 * x * (1 + tanhf(0.7978845608 * (x + 0.044715 * x * x * x))) }
        }
        // q, k and v read as per-head [q k v] packs instead of thirds: the rows of in_proj permuted to match.
        func interleaved(_ f: ForwardPass) throws {
            let d = f.config.hiddenSize, hd = d / f.config.heads
            func permuted(_ w: Weight, width: Int) throws -> Weight {
                var out = [Float](repeating: 0, count: w.count)
                for j in 0..<f.config.heads { for t in 0..<3 { for c in 0..<hd {
                    let to = j * 3 * hd + t * hd + c, from = t * d + j * hd + c
                    for x in 0..<width { out[to * width + x] = w.pointer[from * width + x] }
                } } }
                return try Weight(try Tensor(float32: out, shape: [3 * d, width]))
            }
            f.layers = try f.layers.map { l in
                ForwardPass.Layer(inProj: try permuted(l.inProj, width: d), inBias: try permuted(l.inBias, width: 1), outProj: l.outProj,
                                  outBias: l.outBias, linear1: l.linear1, bias1: l.bias1, linear2: l.linear2, bias2: l.bias2,
                                  norm1w: l.norm1w, norm1b: l.norm1b, norm2w: l.norm2w, norm2b: l.norm2b)
            }
        }
        let cases: [(String, String, (ForwardPass) throws -> Void)] = [
            ("ar_gelu", "no causal mask", { $0.config.causal = false }),
            ("ar_gelu", "tanh GELU", { $0.activationOverride = tanhGELU }),
            ("ar_small_scale", "epsilon × 10", { $0.config.layerNormEps *= 10 }),
            ("ar_odd", "heads interleaved", interleaved),
            ("ar_relu", "a zero LM head", { f in f.head = try Weight(try Tensor(float32: [Float](repeating: 0, count: f.head.count), shape: [f.head.count])) }),
            ("ar_long", "no causal mask", { $0.config.causal = false }),
        ]
        for (name, bug, breakIt) in cases {
            let forward = try ForwardPass(try ReleaseModel(path: TestSupport.fixture("golden/\(name).pt")))
            let (ids, expected) = try golden(name)
            XCTAssertLessThan(maxDifference(try forward.logits(ids), expected), 1e-4, "\(name) intact matches")
            try breakIt(forward)
            let diff = maxDifference(try forward.logits(ids), expected)
            XCTAssertGreaterThan(diff, 1e-3, "\(name) with \(bug) must not match the golden logits")
        }
    }

    func testBundleAndCheckpointGiveBitIdenticalLogits() throws {
        let source = try ReleaseModel(path: TestSupport.fixture("golden/ar_odd.pt"))
        let (ids, _) = try golden("ar_odd")
        let a = try ForwardPass(source).logits(ids)
        let b = try ForwardPass(try bundle(of: source)).logits(ids)
        XCTAssertEqual(a.map(\.bitPattern), b.map(\.bitPattern))
    }

    func testFloat32WeightsAreReadInPlaceOthersWidenedOnce() throws {
        func address(_ t: Tensor) -> UnsafeRawPointer { t.withUnsafeBytes { UnsafeRawPointer($0.baseAddress!) } }
        let source = try ReleaseModel(path: TestSupport.fixture("golden/ar_odd.pt"))
        let forward = try ForwardPass(source)
        let embedding = try source.tensor(ModelFamily.embedding)
        XCTAssertTrue(embedding.storage.isMapped)
        XCTAssertEqual(UnsafeRawPointer(forward.embedding.pointer), address(embedding), "float32 embedding read from the mapping")
        XCTAssertTrue(forward.head === forward.embedding, "the tied head is the embedding, not a second copy")
        let linear1 = try source.tensor("transformer.layers.2.linear1.weight")
        XCTAssertEqual(UnsafeRawPointer(forward.layers[2].linear1.pointer), address(linear1))

        let cast = try bundle(of: source, dtype: .bf16)
        let widened = try ForwardPass(cast)
        let bf16 = try cast.tensor(ModelFamily.embedding)
        XCTAssertEqual(bf16.dtype, .bf16)
        XCTAssertNotEqual(UnsafeRawPointer(widened.embedding.pointer), address(bf16))
        XCTAssertEqual(Array(UnsafeBufferPointer(start: widened.embedding.pointer, count: bf16.elementCount)), try bf16.floats())
    }

    func testInputChecks() throws {
        let forward = try ForwardPass(try ReleaseModel(path: TestSupport.fixture("golden/ar_gelu.pt")))
        XCTAssertThrowsError(try forward.logits([[1, 2, 128]])) { XCTAssertTrue("\($0)".contains("token id 128 is outside the vocabulary of 128")) }
        XCTAssertThrowsError(try forward.logits([Array(repeating: 1, count: 17)])) { XCTAssertTrue("\($0)".contains("exceeds max_position_embeddings 16")) }
        XCTAssertThrowsError(try forward.logits([[1, 2], [3]]))
    }
}
