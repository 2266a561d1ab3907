import CKernels
import Foundation
import XCTest

/// The forward pass's element-wise C kernels against double-precision math.
final class KernelTests: XCTestCase {
    func testGELUMatchesExactErfGELU() {
        // A grid across [-12, 12] (a length that is not a multiple of the vector width) plus special points.
        var xs = stride(from: -12.0, through: 12.0, by: 0.0137).map { Float($0) }
        xs += [0, -0.0, 1e-30, -1e-30, 3e-39, 1e-3, -1e-3, 40, -40, 1e4, -1e4]
        var ys = xs
        arapack_gelu_erf(&ys, ys.count)
        var worst = 0.0
        for (x, y) in zip(xs, ys) {
            let exact = 0.5 * Double(x) * (1 + erf(Double(x) / 2.0.squareRoot()))
            let error = abs(Double(y) - exact) / max(1, abs(Double(x)))
            worst = max(worst, error)
        }
        // A&S 7.1.26 keeps erf within 1.5e-7; tanh-GELU would be off by ~5e-4 near |x| = 2.
        XCTAssertLessThan(worst, 5e-7, "max scaled error \(worst)")
        var nan: [Float] = [.nan, 1]
        arapack_gelu_erf(&nan, 2)
        XCTAssertTrue(nan[0].isNaN)
        XCTAssertEqual(Double(nan[1]), 0.5 * (1 + erf(1 / 2.0.squareRoot())), accuracy: 1e-6)
    }

    /// llama.cpp's GELU (ggml-cpu with GGML_GELU_FP16): for every float16 input in (−10, 10), the float16 of the tanh
    /// approximation computed here with Foundation's tanh in double (an independent reference); x itself at or above
    /// 10, 0 at or below −10; float32 inputs are looked up at their float16 rounding. The kernel's table uses arapack's
    /// own exp and rounds through float32: at most one float16 step apart, and almost everywhere equal.
    func testLlamaCppGELUIsTheFloat16TableOfTheTanhApproximation() {
        var inputs: [Float] = [], expected: [Float] = []
        for bits in UInt16.min...UInt16.max {
            let x = Float(Float16(bitPattern: bits))
            guard x.isFinite, x > -10, x < 10 else { continue }
            let d = Double(x)
            let y = 0.5 * d * (1 + tanh(0.7978845608028654 * d * (1 + 0.044715 * d * d)))
            inputs.append(x)
            expected.append(Float(Float16(y)))
        }
        var got = inputs
        arapack_gelu_ggml(&got, got.count)
        var differing = 0
        for i in inputs.indices where got[i] != expected[i] {
            differing += 1
            let steps = abs(Int(Float16(got[i]).bitPattern) - Int(Float16(expected[i]).bitPattern))
            XCTAssertLessThanOrEqual(steps, 1, "x = \(inputs[i]): \(got[i]) against \(expected[i])")
        }
        XCTAssertLessThan(differing, inputs.count / 1000, "\(differing) of \(inputs.count) differ by one float16 step")
        var edges: [Float] = [-10, -10.5, 10, 12.25, 1e4, 0.30000001]
        arapack_gelu_ggml(&edges, edges.count)
        XCTAssertEqual(Array(edges[0..<5]), [0, 0, 10, 12.25, 1e4])
        // 0.30000001 is looked up at its float16, 0.2999267578125.
        let h = Double(Float(Float16(Float(0.30000001))))
        XCTAssertEqual(edges[5], Float(Float16(0.5 * h * (1 + tanh(0.7978845608028654 * h * (1 + 0.044715 * h * h))))))
    }

    /// GGUF's Q8_0 worked by hand: d = max|x| / 127, each value round-half-away-from-zero of x / d, d stored as float16.
    func testQ8_0BlocksAsGGMLDefinesThem() {
        func quantize(_ x: [Float]) -> [UInt8] {
            var out = [UInt8](repeating: 0, count: 34)
            XCTAssertEqual(arapack_quantize_q8_0(x, 1, &out), -1)
            return out
        }
        // max 127 → d = 1 (float16 0x3C00); 2.5 → 3 and -2.5 → -3 (half away from zero, not to even); -127 → 0x81.
        var x = [Float](repeating: 0, count: 32)
        x[0] = 127; x[1] = 2.5; x[2] = -2.5; x[3] = -127; x[4] = 0.49
        let q = quantize(x)
        XCTAssertEqual(Array(q[0..<2]), [0x00, 0x3C])
        XCTAssertEqual(Array(q[2..<7]), [127, 3, 0xFD, 0x81, 0])
        // An all-zero block: d = 0, every q 0 (no division by zero).
        XCTAssertEqual(quantize([Float](repeating: 0, count: 32)), [UInt8](repeating: 0, count: 34))
        // d = 1/127: its float16 is rounded (0x2008), the values use the float32 d: 1 → 127.
        var y = [Float](repeating: 0, count: 32)
        y[31] = 1
        let r = quantize(y)
        XCTAssertEqual(UInt16(r[0]) | UInt16(r[1]) << 8, Float16(Float(1) / 127).bitPattern)
        XCTAssertEqual(r[33], 127)
    }

    /// A block holding NaN or infinity is named (its index), not quantized.
    func testQ8_0RefusesNonFiniteBlocks() {
        var x = [Float](repeating: 1, count: 96)
        x[70] = .infinity
        var out = [UInt8](repeating: 0, count: 3 * 34)
        XCTAssertEqual(arapack_quantize_q8_0(x, 3, &out), 2)
        x[70] = .nan
        XCTAssertEqual(arapack_quantize_q8_0(x, 3, &out), 2)
    }

    func testSoftmaxOverTheVisiblePrefixZeroesTheRest() {
        var rng = SystemRandomNumberGenerator()
        for (visible, length, spread) in [(100, 131, Float(8)), (1, 64, 1), (64, 64, 30), (17, 40, 200), (513, 513, 3)] {
            var row = (0..<length).map { _ in Float.random(in: -spread...spread, using: &rng) }
            let input = row
            arapack_softmax(&row, visible, length)
            let top = input[..<visible].max()!
            let exps = input[..<visible].map { exp(Double($0 - top)) }
            let sum = exps.reduce(0, +)
            for i in 0..<visible {
                XCTAssertEqual(Double(row[i]), exps[i] / sum, accuracy: 2e-7 + 4e-6 * exps[i] / sum, "visible \(visible), index \(i)")
            }
            XCTAssertTrue(row[visible...].allSatisfy { $0 == 0 }, "masked tail must be zero")
            XCTAssertEqual(row.reduce(0, +), 1, accuracy: 1e-5)
        }
        // Huge scores neither overflow nor lose the winner.
        var big: [Float] = [1e4, 1e4 - 1, -1e4, 0]
        arapack_softmax(&big, 4, 4)
        XCTAssertEqual(Double(big[0]), 1 / (1 + exp(-1.0)), accuracy: 1e-6)
        XCTAssertEqual(Double(big[1]), exp(-1.0) / (1 + exp(-1.0)), accuracy: 1e-6)
        XCTAssertEqual(big[2], 0, accuracy: 1e-30)
    }

    func testAddTransposedWritesEveryElementWithTheSameAdditions() {
        // Sizes below, at and past the 8 × 8 register blocks, with ragged right and bottom edges.
        var rng = SystemRandomNumberGenerator()
        for (cols, rows) in [(1, 1), (8, 8), (13, 8), (8, 21), (37, 19), (64, 128), (3, 100)] {
            let ldy = cols + 5
            let t = (0..<cols * rows).map { _ in Float.random(in: -4...4, using: &rng) }
            let bias = (0..<cols).map { _ in Float.random(in: -1...1, using: &rng) }
            let start = (0..<rows * ldy).map { _ in Float.random(in: -2...2, using: &rng) }
            for (withBias, accumulate) in [(true, true), (true, false), (false, true), (false, false)] {
                var y = start
                bias.withUnsafeBufferPointer { b in
                    arapack_add_transposed(t, rows, cols, rows, &y, ldy, withBias ? b.baseAddress : nil, accumulate ? 1 : 0)
                }
                for r in 0..<rows {
                    for c in 0..<ldy {
                        let old = start[r * ldy + c]
                        guard c < cols else {
                            XCTAssertEqual(y[r * ldy + c].bitPattern, old.bitPattern, "padding column \(c) was written")
                            continue
                        }
                        let value = t[c * rows + r]
                        let base: Float? = withBias ? (accumulate ? old + bias[c] : bias[c]) : (accumulate ? old : nil)
                        let want = base.map { $0 + value } ?? value
                        XCTAssertEqual(y[r * ldy + c].bitPattern, want.bitPattern,
                                       "\(cols)×\(rows) bias \(withBias) accumulate \(accumulate) at row \(r), column \(c)")
                    }
                }
            }
        }
    }
}
