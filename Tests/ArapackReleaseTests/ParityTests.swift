import ArapackFormats
@testable import ArapackModel
@testable import ArapackRelease
import ArapackTensor
import ArapackTestSupport
import Foundation
import XCTest

/// Parity metrics by hand, lossless bundles bit-identical, one flipped ulp caught and named, casts within
/// their limits, golden files within tolerance.
final class ParityTests: XCTestCase {
    var scratch = ""
    override func setUpWithError() throws { scratch = try TestSupport.temporaryDirectory() }
    override func tearDown() { removeTree(scratch) }

    func bundle(_ fixture: String, dtype: DType? = nil, name: String = "b") throws -> String {
        let model = try ReleaseModel(path: TestSupport.fixture(fixture))
        let dir = scratch + "/" + name
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: false)
        try BundleWriter.write(model, tokenizer: nil, options: .init(dtype: dtype), into: dir, progress: .silent)
        return dir
    }

    func testMetricsByHand() {
        // Two positions over a vocabulary of 2; causal, ids [[0, 1]]: only position 0 predicts (token 1).
        let a: [Float] = [0, 0, 1, 0], b: [Float] = [0, Float(log(3.0)), 1, 0]
        let m = ParityMetrics.compare(reference: a, candidate: b, ids: [[0, 1]], vocab: 2, causal: true)
        XCTAssertEqual(m.maxAbsDiff, log(3.0), accuracy: 1e-6)
        // KL([.5,.5] ‖ [.25,.75]) at position 0, 0 at position 1.
        let kl = 0.5 * log(0.5 / 0.25) + 0.5 * log(0.5 / 0.75)
        XCTAssertEqual(m.meanKL, kl / 2, accuracy: 1e-6)
        XCTAssertEqual(m.maxKL, kl, accuracy: 1e-6)
        // NMSE: squared error (log 3)² over 4 values, over the variance of a (mean 1/4, variance 3/16).
        XCTAssertEqual(m.nmse, (log(3.0) * log(3.0) / 4) / (3.0 / 16), accuracy: 1e-6)
        XCTAssertEqual(m.positions, 2)
    }

    /// The positions are shared among threads; the metrics have the same bits whatever their count, and equal a
    /// plain double-precision computation of their definitions.
    func testMetricsHaveTheSameBitsOnAnyThreadCount() {
        var random = SplitMix64(seed: 11)
        let vocab = 97, ids = [[3, 9, 1, 50, 7], [2, 2, 96, 0, 4], [5, 6, 7, 8, 9]]
        let count = ids.count * 5 * vocab
        let a = (0..<count).map { _ in Float(Int(random.next() % 2001) - 1000) / 97 }
        let b = a.enumerated().map { $0.element + ($0.offset % 7 == 0 ? Float(Int(random.next() % 201) - 100) / 400 : 0) }
        let results = [1, 2, 3, 8].map { threads -> ParityMetrics in
            var acc = ParityMetrics.Accumulator(vocab: vocab, causal: true)
            acc.add(reference: a, candidate: b, ids: ids, threads: threads)
            return acc.metrics
        }
        for m in results.dropFirst() {
            for (x, y) in [(m.maxAbsDiff, results[0].maxAbsDiff), (m.nmse, results[0].nmse), (m.meanKL, results[0].meanKL), (m.maxKL, results[0].maxKL),
                           (m.referencePerplexity, results[0].referencePerplexity), (m.candidatePerplexity, results[0].candidatePerplexity)] {
                XCTAssertEqual(x.bitPattern, y.bitPattern)
            }
            XCTAssertEqual(m.top1Agreement, results[0].top1Agreement)
        }
        // The definitions, position by position, in Foundation's double precision.
        var kl = 0.0, agree = 0
        for p in 0..<(count / vocab) {
            let ra = a[(p * vocab)..<((p + 1) * vocab)].map(Double.init), rb = b[(p * vocab)..<((p + 1) * vocab)].map(Double.init)
            let za = log(ra.map { exp($0) }.reduce(0, +)), zb = log(rb.map { exp($0) }.reduce(0, +))
            kl += zip(ra, rb).reduce(0.0) { $0 + exp($1.0 - za) * (($1.0 - za) - ($1.1 - zb)) }
            if ra.firstIndex(of: ra.max()!) == rb.firstIndex(of: rb.max()!) { agree += 1 }
        }
        XCTAssertEqual(results[0].meanKL, kl / Double(count / vocab), accuracy: 1e-9)
        XCTAssertGreaterThan(results[0].meanKL, 1e-4)
        XCTAssertEqual(results[0].top1Agreement, Double(agree) / Double(count / vocab))
        XCTAssertEqual(results[0].positions, 15)
    }

    /// Probes run in batches whose logits fit a budget: one sequence per batch gives the metrics of one batch
    /// of all (the sums and maxima gathered across batches), and golden files are compared slice by slice.
    func testBatchedParityEqualsOneBatch() throws {
        let source = try ReleaseModel(path: TestSupport.fixture("golden/ar_gelu.pt"))
        let cast = try ReleaseModel(path: try bundle("golden/ar_gelu.pt", dtype: .bf16))
        XCTAssertEqual(Parity.batches(Array(repeating: [1, 2, 3], count: 5), vocab: 128, bytes: 2 * 3 * 128 * 4).map(\.count), [2, 2, 1])
        XCTAssertEqual(Parity.batches(Array(repeating: [1, 2, 3], count: 2), vocab: 128, bytes: 1).map(\.count), [1, 1], "at least one sequence")
        let whole = try Parity.run(bundle: cast, against: source, probes: 6, length: 9, seed: 3)
        let single = try Parity.run(bundle: cast, against: source, probes: 6, length: 9, seed: 3, batchLogitBytes: 1)
        XCTAssertEqual(single.metrics.positions, 54)
        XCTAssertGreaterThan(whole.metrics.meanKL, 0, "a bf16 cast differs")
        for (a, b) in [(whole.metrics.maxAbsDiff, single.metrics.maxAbsDiff), (whole.metrics.meanKL, single.metrics.meanKL),
                       (whole.metrics.maxKL, single.metrics.maxKL), (whole.metrics.nmse, single.metrics.nmse),
                       (whole.metrics.candidatePerplexity, single.metrics.candidatePerplexity)] {
            XCTAssertEqual(a.bitPattern, b.bitPattern, "the forward pass and the metrics are batch-invariant: the same bits")
        }
        XCTAssertEqual(whole.metrics.top1Agreement, single.metrics.top1Agreement)
        let golden = TestSupport.fixture("golden/ar_gelu.golden.safetensors")
        let g1 = try Parity.golden(bundle: source, goldenPath: golden, tolerance: 1e-4)
        let g2 = try Parity.golden(bundle: source, goldenPath: golden, tolerance: 1e-4, batchLogitBytes: 1)
        XCTAssertTrue(g1.passed && g2.passed)
        XCTAssertEqual(g1.metrics.positions, g2.metrics.positions)
        XCTAssertEqual(g1.metrics.maxAbsDiff.bitPattern, g2.metrics.maxAbsDiff.bitPattern)
    }

    func testTop1AndPerplexityByHand() {
        let a: [Float] = [0, 0, 1, 0], b: [Float] = [0, Float(log(3.0)), 1, 0]
        let m = ParityMetrics.compare(reference: a, candidate: b, ids: [[0, 1]], vocab: 2, causal: true)
        XCTAssertEqual(m.top1Agreement, 0.5, "position 0: a ties (first index 0), b prefers 1; position 1 agrees")
        XCTAssertEqual(m.referencePerplexity, 2, accuracy: 1e-9, "p(token 1) = 1/2")
        XCTAssertEqual(m.candidatePerplexity, 4.0 / 3.0, accuracy: 1e-6, "p(token 1) = 3/4")
        let same = ParityMetrics.compare(reference: a, candidate: a, ids: [[0, 1]], vocab: 2, causal: false)
        XCTAssertEqual(same.maxAbsDiff, 0)
        XCTAssertEqual(same.meanKL, 0)
        XCTAssertEqual(same.nmse, 0)
        // Bidirectional: each position scores its own token: p(0) at position 0 = 1/2, p(1) at position 1 = 1/(1+e).
        XCTAssertEqual(same.referencePerplexity, exp(-(log(0.5) + log(1 / (1 + M_E))) / 2), accuracy: 1e-9)
    }

    func testProbesAreDeterministicAndInRange() {
        let a = Parity.probes(count: 3, length: 50, vocab: 17, seed: 7)
        XCTAssertEqual(a, Parity.probes(count: 3, length: 50, vocab: 17, seed: 7))
        XCTAssertNotEqual(a, Parity.probes(count: 3, length: 50, vocab: 17, seed: 8))
        XCTAssertTrue(a.joined().allSatisfy { (0..<17).contains($0) })
        XCTAssertEqual(Set(a.joined()).count, 17, "150 draws cover a vocabulary of 17")
    }

    func testLosslessBundleIsBitIdenticalAndOneUlpIsCaughtAndNamed() throws {
        let dir = try bundle("golden/ar_odd.pt")
        let source = try ReleaseModel(path: TestSupport.fixture("golden/ar_odd.pt"))
        let good = try Parity.run(bundle: try ReleaseModel(path: dir), against: source, probes: 4, length: nil, seed: 1)
        XCTAssertTrue(good.passed, good.text)
        XCTAssertEqual(good.thresholds, .lossless)
        XCTAssertEqual(good.metrics.maxAbsDiff, 0)
        XCTAssertEqual(good.sequenceLength, 20)

        // Flip the last bit of one float32 weight (one ulp) in the bundle.
        let st = try SafetensorsFile(path: dir + "/model.safetensors")
        let entry = try st.entry(named: "model.transformer.layers.1.linear1.weight")
        let offset = off_t(st.header.dataStart + entry.dataRange.lowerBound + 4 * 123)
        let fd = open(dir + "/model.safetensors", O_RDWR)
        var bits: UInt32 = 0
        pread(fd, &bits, 4, offset)
        bits += 1
        pwrite(fd, &bits, 4, offset)
        close(fd)
        let bad = try Parity.run(bundle: try ReleaseModel(path: dir), against: source, probes: 4, length: nil, seed: 1)
        XCTAssertFalse(bad.passed)
        XCTAssertGreaterThan(bad.metrics.maxAbsDiff, 0)
        XCTAssertLessThan(bad.metrics.maxAbsDiff, 1e-3, "one ulp moves logits a little")
        XCTAssertEqual(bad.differingTensors, ["model.transformer.layers.1.linear1.weight (1 element)"])
        XCTAssertTrue(bad.text.contains("parity FAILED: max |Δlogit|"), bad.text)
    }

    func testCastBundlesWithinTheirLimitsAndOverridesBite() throws {
        let source = try ReleaseModel(path: TestSupport.fixture("golden/ar_gelu.pt"))
        for dtype in [DType.bf16, .f16] {
            let b = try ReleaseModel(path: try bundle("golden/ar_gelu.pt", dtype: dtype, name: dtype.name))
            let r = try Parity.run(bundle: b, against: source, probes: 8, length: nil, seed: 0)
            XCTAssertEqual(r.thresholds.kind, dtype == .bf16 ? .bf16 : .f16)
            XCTAssertTrue(r.passed, r.text)
            XCTAssertGreaterThan(r.metrics.maxAbsDiff, 0)
            var strict = r.thresholds
            strict.maxMeanKL = r.metrics.meanKL / 2
            XCTAssertFalse(try Parity.run(bundle: b, against: source, probes: 8, length: nil, seed: 0, thresholds: strict).passed)
        }
    }

    func testGoldenFiles() throws {
        let model = try ReleaseModel(path: try bundle("golden/mdlm_gelu.pt"))
        let golden = TestSupport.fixture("golden/mdlm_gelu.golden.safetensors")
        let r = try Parity.golden(bundle: model, goldenPath: golden, tolerance: 1e-4)
        XCTAssertTrue(r.passed, r.text)
        XCTAssertEqual(r.probes, 3)
        XCTAssertFalse(try Parity.golden(bundle: model, goldenPath: golden, tolerance: 1e-9).passed)
        let odd = TestSupport.fixture("golden/ar_odd.golden.safetensors")
        XCTAssertThrowsError(try Parity.golden(bundle: model, goldenPath: odd, tolerance: 1e-4)) {
            XCTAssertEqual($0 as? ParityError, .goldenLayout(file: odd, vocabSize: model.config.vocabSize))
        }
    }
}

/// The trained Arabic fixture: every dtype passes its default limits on held-out text; a quantizer whose
/// scales are off by 2× fails them.
final class TrainedModelParityTests: XCTestCase {
    func testDefaultsHoldOnHeldOutTextAndABrokenQuantizerFails() throws {
        let scratch = try TestSupport.temporaryDirectory()
        defer { removeTree(scratch) }
        let path = TestSupport.fixture("trained/arafusion_tiny_ar.pt")
        let source = try ReleaseModel(path: path)
        let heldout = try Parity.probeIDs(file: TestSupport.fixture("trained/heldout.safetensors"))
        XCTAssertEqual(heldout.count, 64)
        let forms: [(name: String, options: BundleOptions)] = [("BF16", .init(dtype: .bf16)), ("F16", .init(dtype: .f16)),
                                                               ("I8", .init(quantization: .init(.int8))), ("int4", .init(quantization: .init(.int4, groupSize: 32)))]
        for (name, options) in forms {
            let dir = scratch + "/" + name
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: false)
            try BundleWriter.write(source, tokenizer: nil, options: options, into: dir, progress: .silent)
            let r = try Parity.run(bundle: try ReleaseModel(path: dir), against: source, probes: 1, length: nil, seed: 0, probeIDs: heldout)
            XCTAssertTrue(r.passed, r.text)
            XCTAssertEqual(r.probes, 64)
            XCTAssertEqual(r.seed, nil)
        }
        // Double every scale of the int8 bundle: the limits catch it.
        let dir = scratch + "/I8"
        let st = try SafetensorsFile(path: dir + "/model.safetensors")
        var tensors = try st.tensorNames.map { (name: $0, tensor: try st.tensor(named: $0)) }
        for i in tensors.indices where tensors[i].name.hasSuffix("_scale") {
            tensors[i].tensor = try Tensor(float32: try tensors[i].tensor.floats().map { $0 * 2 }, shape: tensors[i].tensor.shape)
        }
        try SafetensorsWriter.write(tensors, metadata: st.metadata, to: dir + "/model.safetensors")
        let broken = try Parity.run(bundle: try ReleaseModel(path: dir), against: source, probes: 1, length: nil, seed: 0, probeIDs: heldout)
        XCTAssertFalse(broken.passed, broken.text)
        XCTAssertEqual(broken.thresholds.kind, .int8)
        XCTAssertTrue(broken.failures.contains { $0.hasPrefix("mean KL") }, broken.text)
    }

    /// Quantized matrices (int8, int4 groups, GGUF Q8_0, Q4_K and Q6_K blocks) are decoded a run of rows at a time by
    /// the products instead of copied whole to float32: every product matrix of each form has a decoder whose rows are
    /// the float copy's rows, and the logits are the same bits as a pass over the float copies.
    func testQuantizedMatricesDecodedByTheProductsGiveTheFloatCopiesLogits() throws {
        let scratch = try TestSupport.temporaryDirectory()
        defer { removeTree(scratch) }
        let source = try ReleaseModel(path: TestSupport.fixture("trained/arafusion_tiny_ar.pt"),
                                      tokenizer: try TokenizerFiles(directory: TestSupport.fixture("gguf/bytelevel")))
        var paths: [String] = []
        for (name, options) in [("int8", BundleOptions(quantization: .init(.int8))), ("int4", BundleOptions(quantization: .init(.int4, groupSize: 32)))] {
            let dir = scratch + "/" + name
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: false)
            try BundleWriter.write(source, tokenizer: nil, options: options, into: dir, progress: .silent)
            paths.append(dir)
        }
        for scheme in GGUFScheme.all where ["q8_0", "q4_k_m", "q6_k"].contains(scheme.name) {
            paths.append(scratch + "/\(scheme.name).gguf")
            try GGUFExport.write(source, options: GGUFOptions(scheme: scheme), to: paths.last!, replacing: false, progress: Progress(enabled: false))
        }
        var rng = SplitMix64(seed: 5)
        let ids = (0..<3).map { _ in (0..<24).map { _ in Int(rng.next() % UInt64(source.config.vocabSize)) } }
        for path in paths {
            let model = try ReleaseModel(path: path)
            let gguf = path.hasSuffix(".gguf") ? try GGUFFile(path: path) : nil
            // A bundle quantizes the products but the input projection (bf16, as is the tied embedding); a GGUF file
            // stores each matrix in a block type or, where the scheme falls back, a float type.
            var kinds: [ModelFamily.LayerTensor] = [.outProjWeight, .linear1Weight, .linear2Weight]
            var products: [String] = []
            if gguf != nil {
                kinds.append(.inProjWeight)
                products.append(ModelFamily.embedding)
            }
            for i in 0..<model.config.layers { products += kinds.map { $0.name(layer: i) } }
            var decoders = 0
            for training in products {
                let stored = model.names.first { $0.training == training }!.source
                let blocks = try gguf.map { try $0.entry(named: stored).type.dtype == nil } ?? true
                guard let decoder = try model.rowDecoder(training) else {
                    XCTAssertFalse(blocks, "\(path): \(training) has no decoder")
                    continue
                }
                decoders += 1
                let whole = try model.tensor(training).floats()
                XCTAssertEqual([decoder.rows, decoder.cols], try model.tensor(training).shape, training)
                let first = decoder.rows / 3, count = min(5, decoder.rows - first)
                var rows = [Float](repeating: .nan, count: count * decoder.cols)
                rows.withUnsafeMutableBufferPointer { decoder.decode(first, count, $0.baseAddress!) }
                let want: [Float] = Array(whole[(first * decoder.cols)..<((first + count) * decoder.cols)])
                XCTAssertEqual(rows.map { $0.bitPattern }, want.map { $0.bitPattern }, "\(path): \(training)")
            }
            XCTAssertGreaterThanOrEqual(decoders, 3 * model.config.layers, path)
            let decoded = try ForwardPass(model).logits(ids)
            let copied = try ForwardPass(config: model.config, llamaCppGELU: model.computesLlamaCppGELU, inputRounding: model.llamaCppInputRounding,
                                         tensor: model.tensor).logits(ids)
            XCTAssertEqual(decoded.count, 3 * 24 * model.config.vocabSize)
            XCTAssertEqual(decoded.map(\.bitPattern), copied.map(\.bitPattern), path)
        }
    }

    /// A source that keeps its logits (a release's) computes its reference once for every bundle checked against it,
    /// and the reports are the same bits as when each computes its own.
    func testAKeptReferenceIsComputedOnceAndChangesNothing() throws {
        let scratch = try TestSupport.temporaryDirectory()
        defer { removeTree(scratch) }
        let path = TestSupport.fixture("trained/arafusion_tiny_ar.pt")
        var bundles: [ReleaseModel] = []
        for (i, options) in [BundleOptions(dtype: .bf16), BundleOptions(quantization: .init(.int8))].enumerated() {
            let dir = scratch + "/\(i)"
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: false)
            try BundleWriter.write(try ReleaseModel(path: path), tokenizer: nil, options: options, into: dir, progress: .silent)
            bundles.append(try ReleaseModel(path: dir))
        }
        func reports(keeping: Bool) throws -> (texts: [String], batches: Int) {
            let source = try ReleaseModel(path: path)
            if keeping { source.keepLogits() }
            let texts = try bundles.map { try Parity.run(bundle: $0, against: source, probes: 12, length: 32, seed: 3, batchLogitBytes: 4 * 32 * 512 * 4).text }
            return (texts, source.computedLogitBatches)
        }
        let fresh = try reports(keeping: false), kept = try reports(keeping: true)
        XCTAssertEqual(fresh.batches, 2 * 3, "three batches of four probes for each bundle")
        XCTAssertEqual(kept.batches, 3, "computed for the first bundle only")
        XCTAssertEqual(kept.texts, fresh.texts)
    }

    func testGoldenLogitsOfTheTrainedModel() throws {
        let model = try ReleaseModel(path: TestSupport.fixture("trained/arafusion_tiny_ar.pt"))
        let r = try Parity.golden(bundle: model, goldenPath: TestSupport.fixture("trained/heldout.golden.safetensors"), tolerance: 1e-4)
        XCTAssertTrue(r.passed, r.text)
        XCTAssertLessThan(r.metrics.referencePerplexity, 60, "a trained model: held-out perplexity far below the vocabulary of 512")
    }
}
