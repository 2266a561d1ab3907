import ArapackFormats
@testable import ArapackModel
import ArapackRelease
import ArapackTensor
import ArapackTestSupport
import CKernels
import Foundation
import XCTest

/// The same bits on every machine: the GEMM against an independent chain of fused multiply-adds on each
/// instruction set this CPU runs; every twin's logits the same bits whatever the batch, the thread count and the
/// instruction set; the parity metrics' exp and log against the C library's within an ulp or two.
final class KernelInvarianceTests: XCTestCase {
    override func tearDown() { try? KernelISA.use(.best) }

    /// y[c][r] = Σ_k w[c][k]·x[r][k] as Swift's own fused multiply-add chain (`addingProduct`), k from 0.
    func referenceProduct(_ x: [Float], rows: Int, k: Int, _ w: [Float], cols: Int) -> [Float] {
        var out = [Float](repeating: 0, count: cols * rows)
        for c in 0..<cols {
            for r in 0..<rows {
                var acc: Float = 0
                for i in 0..<k { acc = acc.addingProduct(x[r * k + i], w[c * k + i]) }
                out[c * rows + r] = acc
            }
        }
        return out
    }

    func product(_ x: [Float], rows: Int, k: Int, _ w: [Float], cols: Int) -> [Float] {
        let packed = Int(arapack_packed_rows(rows))
        var xp = [Float](repeating: .nan, count: packed * k)
        arapack_pack_rows(x, k, rows, k, &xp)
        var t = [Float](repeating: .nan, count: cols * packed)
        arapack_gemm_nt(xp, rows, k, w, k, cols, &t, packed)
        return (0..<cols).flatMap { c in t[(c * packed)..<(c * packed + rows)] }
    }

    func testGEMMIsOneFusedChainPerOutputOnEveryInstructionSet() throws {
        var rng = SplitMix64(seed: 11)
        // Rows around the 16-row panels, the tiles of one to four panels and the 192-row blocks, columns around the
        // 6- and 8-wide tiles (so the one-column edge tiles of every panel count run), inner widths around the 512-wide k blocks and their multiples; values of
        // mixed magnitude so that any other summation order shows.
        for (rows, cols, k) in [(1, 1, 1), (5, 13, 7), (16, 12, 64), (17, 25, 511), (33, 6, 512), (140, 37, 513), (65, 7, 1023),
                                (64, 12, 1024), (3, 64, 1100), (80, 13, 2049), (48, 8, 96), (200, 17, 520), (208, 9, 33)] {
            let x = (0..<rows * k).map { _ in rng.float() * (rng.next() % 4 == 0 ? 1000 : 1) }
            let w = (0..<cols * k).map { _ in rng.float() }
            let want = referenceProduct(x, rows: rows, k: k, w, cols: cols)
            for isa in KernelISA.supported {
                try KernelISA.use(isa)
                let got = product(x, rows: rows, k: k, w, cols: cols)
                XCTAssertEqual(got.map(\.bitPattern), want.map(\.bitPattern), "\(rows)×\(k) · (\(cols)×\(k))ᵀ on \(isa)")
            }
        }
        // A plain float sum in another order differs on these inputs: the comparison above can fail.
        let x = (0..<600).map { _ in rng.float() * 1000 }, w = (0..<600).map { _ in rng.float() }
        let chain = referenceProduct(x, rows: 1, k: 600, w, cols: 1)[0]
        let pairwise = stride(from: 0, to: 600, by: 2).map { x[$0] * w[$0] + x[$0 + 1] * w[$0 + 1] }.reduce(0, +)
        XCTAssertNotEqual(chain.bitPattern, pairwise.bitPattern)
    }

    /// Panels hold rows side by side: xp[p·k·16 + i·16 + lane] = x[(p·16 + lane)·ldx + i], zero past the last row,
    /// on each instruction set (rows and widths around the 16-row panel and the 8 × 8 blocks, rows wider than k).
    func testPackingLaysRowsOutInPanelsOnEveryInstructionSet() throws {
        for (rows, k) in [(1, 1), (15, 7), (16, 8), (17, 9), (40, 33), (64, 1024)] {
            let ldx = k + 3
            let x = (0..<rows * ldx).map { Float($0) + 0.5 }
            let packed = Int(arapack_packed_rows(rows))
            var want = [Float](repeating: 0, count: packed * k)
            for r in 0..<rows { for i in 0..<k { want[r / 16 * k * 16 + i * 16 + r % 16] = x[r * ldx + i] } }
            for isa in KernelISA.supported {
                try KernelISA.use(isa)
                var xp = [Float](repeating: .nan, count: packed * k)
                arapack_pack_rows(x, ldx, rows, k, &xp)
                let differs = xp.indices.filter { xp[$0].bitPattern != want[$0].bitPattern }
                XCTAssertEqual(differs.count, 0, "\(rows) rows × \(k) on \(isa): first at \(differs.first ?? 0)")
            }
        }
    }

    /// One head of attention: each score one fused chain over the head's dimensions from +0, then × scale, softmax
    /// (arapack_softmax) over the visible keys, each output one fused chain over those keys in order, written here with
    /// Swift's `addingProduct`; the same bits on each instruction set, for lengths and head widths around the kernel's
    /// 64-wide register blocks, causal or not.
    func testAttentionIsOneFusedChainPerScoreAndOutputOnEveryInstructionSet() throws {
        var rng = SplitMix64(seed: 5)
        for (length, headDim, causal) in [(1, 8, true), (5, 8, false), (63, 64, true), (64, 64, true), (65, 70, true),
                                          (130, 64, true), (130, 64, false)] {
            let ld = 3 * headDim + 2
            let qkv = (0..<length * ld).map { _ in rng.float() * (rng.next() % 4 == 0 ? 8 : 1) }
            let scale = 1 / Float(headDim).squareRoot()
            var want = [Float](repeating: 0, count: length * headDim)
            for i in 0..<length {
                let visible = causal ? i + 1 : length
                var s = (0..<visible).map { j -> Float in
                    var acc: Float = 0
                    for c in 0..<headDim { acc = acc.addingProduct(qkv[i * ld + c], qkv[j * ld + headDim + c]) }
                    return acc * scale
                }
                arapack_softmax(&s, visible, visible)
                for c in 0..<headDim {
                    var acc: Float = 0
                    for j in 0..<visible { acc = acc.addingProduct(s[j], qkv[j * ld + 2 * headDim + c]) }
                    want[i * headDim + c] = acc
                }
            }
            for isa in KernelISA.supported {
                try KernelISA.use(isa)
                var scratch = [Float](repeating: .nan, count: headDim * length + length)
                var out = [Float](repeating: .nan, count: length * headDim)
                qkv.withUnsafeBufferPointer { p in
                    arapack_attention(p.baseAddress!, p.baseAddress! + headDim, p.baseAddress! + 2 * headDim, ld, length, headDim, scale,
                                      causal ? 1 : 0, &scratch, &out, headDim)
                }
                let differs = out.indices.filter { out[$0].bitPattern != want[$0].bitPattern }
                XCTAssertEqual(differs.count, 0, "length \(length), head \(headDim), causal \(causal) on \(isa): first at \(differs.first ?? 0)")
            }
        }
    }

    /// The twins and narrowed bundles of one of them, each with a batch of sequences of one length.
    func models() throws -> [(String, ReleaseModel)] {
        var out: [(String, ReleaseModel)] = []
        for name in ["ar_gelu", "ar_relu", "mdlm_gelu", "ar_odd", "ar_long"] {
            out.append((name, try ReleaseModel(path: TestSupport.fixture("golden/\(name).pt"))))
        }
        let source = try ReleaseModel(path: TestSupport.fixture("golden/ar_gelu.pt"))
        let forms: [(name: String, options: BundleOptions)] = [("bf16", .init(dtype: .bf16)), ("f16", .init(dtype: .f16)),
                                                               ("int8", .init(quantization: .init(.int8))), ("int4", .init(quantization: .init(.int4, groupSize: 16)))]
        for (name, options) in forms {
            let dir = try TestSupport.temporaryDirectory()
            addTeardownBlock { removeTree(dir) }
            try BundleWriter.write(source, tokenizer: nil, options: options, into: dir, progress: .silent)
            out.append(("ar_gelu \(name)", try ReleaseModel(path: dir)))
        }
        return out
    }

    func testLogitsAreTheSameBitsWhateverTheBatchThreadsAndInstructionSet() throws {
        for (name, model) in try models() {
            let c = model.config
            let length = min(c.maxPositions, 19)
            let ids = Parity.probes(count: 6, length: length, vocab: c.vocabSize, seed: 5)
            let perRow = length * c.vocabSize
            try KernelISA.use(.best)
            let whole = try ForwardPass(model, threads: ForwardPass.defaultThreads).logits(ids)
            for isa in KernelISA.supported {
                try KernelISA.use(isa)
                for threads in [1, 2, 3] {
                    let pass = try ForwardPass(model, threads: threads)
                    XCTAssertEqual(try pass.logits(ids).map(\.bitPattern), whole.map(\.bitPattern), "\(name): batch of 6 on \(isa), \(threads) threads")
                    for (s, sequence) in ids.enumerated() where s % 2 == (threads % 2) {
                        let alone = try pass.logits([sequence])
                        XCTAssertEqual(alone.map(\.bitPattern), whole[(s * perRow)..<((s + 1) * perRow)].map(\.bitPattern),
                                       "\(name): sequence \(s) alone on \(isa), \(threads) threads")
                    }
                    let pair = try pass.logits(Array(ids[2..<4]))
                    XCTAssertEqual(pair.map(\.bitPattern), whole[(2 * perRow)..<(4 * perRow)].map(\.bitPattern), "\(name): batch of 2 on \(isa)")
                }
            }
        }
    }

    /// GGUF's Q8_0 and llama.cpp's GELU: the same bits on every instruction set (values with ties at one half and
    /// blocks of every magnitude).
    func testQ8_0AndLlamaCppGELUAreTheSameBitsOnEveryInstructionSet() throws {
        var rng = SplitMix64(seed: 11)
        let x = (0..<(32 * 4096)).map { i in (rng.float() * 254 - 127) * (i % 96 < 32 ? 1 : i % 96 < 64 ? 1e-3 : 1e4) }
        var outputs: [[UInt8]] = [], gelus: [[UInt32]] = []
        for isa in KernelISA.supported {
            try KernelISA.use(isa)
            var out = [UInt8](repeating: 0, count: 4096 * 34)
            XCTAssertEqual(arapack_quantize_q8_0(x, 4096, &out), -1)
            outputs.append(out)
            var g = x.map { $0 / 1e4 }
            arapack_gelu_ggml(&g, g.count)
            gelus.append(g.map(\.bitPattern))
        }
        XCTAssertEqual(Set(outputs).count, 1)
        XCTAssertEqual(Set(gelus).count, 1)
    }

    /// The parity and eval statistics' log Σ exp of each side and KL: the same bits on each instruction set as the
    /// portable build (rows of lengths around the 8- and 16-value steps, magnitudes from 1e-3 to 1e3, −∞, NaN and
    /// signed zeros), and the finite rows within 1e-12 of the same sums written here with the C library's exp and log.
    func testSoftmaxKLIsTheSameBitsOnEveryInstructionSet() throws {
        var rng = SplitMix64(seed: 29)
        var rows: [([Float], [Float])] = []
        for (n, scale) in [(7, 1), (8, 30), (15, 1e-3), (16, 30), (17, 1000), (100, 30), (76_803, 30), (76_800, 1000)] as [(Int, Float)] {
            let a = (0..<n).map { _ in (rng.float() - 0.5) * scale }
            rows.append((a, a.map { $0 + (rng.float() - 0.5) * scale / 10 }))
        }
        var special = rows[6]
        special.0[5] = -.infinity
        special.1[9] = -.infinity
        special.0[3] = 0
        special.0[4] = -0.0
        special.1[100] = -0.0
        rows.append(special)
        var zeros = ([Float](repeating: -0.0, count: 40), [Float](repeating: 0, count: 40))
        zeros.0[7] = 0
        rows.append(zeros)
        var withNaN = rows[5]
        withNaN.0[17] = .nan
        rows.append(withNaN)
        for (index, (a, b)) in rows.enumerated() {
            func stats(on isa: KernelISA) throws -> [UInt64] {
                try KernelISA.use(isa)
                var out = [Double](repeating: 0, count: 3)
                arapack_softmax_kl(a, b, a.count, &out)
                return out.map(\.bitPattern)
            }
            let portable = try stats(on: .generic)
            for isa in KernelISA.supported where isa != .generic {
                XCTAssertEqual(try stats(on: isa), portable, "row \(index) (\(a.count) values) on \(isa)")
            }
            guard index < 8 else { continue }  // the rows with −∞, zeros or NaN: bits only
            func logSumExp(_ x: [Float]) -> Double {
                let top = Double(x.max()!)
                return top + Foundation.log(x.reduce(0.0) { $0 + Foundation.exp(Double($1) - top) })
            }
            let za = logSumExp(a), zb = logSumExp(b)
            let kl = zip(a, b).reduce(0.0) { sum, p in
                let la = Double(p.0) - za, lb = Double(p.1) - zb
                return sum + Foundation.exp(la) * (la - lb)
            }
            let got = portable.map(Double.init(bitPattern:))
            XCTAssertEqual(got[0], za, accuracy: 1e-12 * max(1, abs(za)), "row \(index)")
            XCTAssertEqual(got[1], zb, accuracy: 1e-12 * max(1, abs(zb)), "row \(index)")
            XCTAssertEqual(got[2], kl, accuracy: 1e-12 * max(1, abs(kl)), "row \(index)")
        }
    }

    func testOwnExpAndLogAgreeWithTheCLibrary() {
        var rng = SplitMix64(seed: 3)
        for _ in 0..<20_000 {
            let x = Double(rng.float()) * 700
            let e = arapack_exp(x), want = Foundation.exp(x)
            XCTAssertLessThanOrEqual(abs(e - want), 2 * want.ulp, "exp(\(x))")
            let y = abs(x) * Double(rng.next() % 1000 + 1)
            XCTAssertLessThanOrEqual(abs(arapack_log(y) - Foundation.log(y)), 2 * abs(Foundation.log(y)).ulp + 1e-300, "log(\(y))")
        }
        XCTAssertEqual(arapack_exp(0), 1)
        XCTAssertEqual(arapack_exp(-800), 0)
        XCTAssertEqual(arapack_exp(800), .infinity)
        XCTAssertEqual(arapack_exp(-744), Foundation.exp(-744), "subnormal results round once")
        XCTAssertTrue(arapack_exp(.nan).isNaN)
        XCTAssertEqual(arapack_log(1), 0)
        XCTAssertEqual(arapack_log(0), -.infinity)
        XCTAssertTrue(arapack_log(-1).isNaN)
    }
}
