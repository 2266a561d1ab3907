import ArapackFormats
import ArapackModel
@testable import ArapackRelease
import ArapackTensor
import ArapackTestSupport
import Foundation
import XCTest

/// Every checkpoint form becomes a bundle holding exactly the tensors PyTorch recorded; the model family's
/// checks refuse what is not a consistent AraFusion model.
final class ConvertTests: XCTestCase {
    var scratch = ""

    override func setUpWithError() throws { scratch = try TestSupport.temporaryDirectory() }
    override func tearDown() { removeTree(scratch) }

    /// A config file stating only the head count (which no tensor shape reveals).
    func headsConfig(_ heads: Int = 4) throws -> String {
        let path = scratch + "/heads-\(heads).json"
        try writeText("{\"n_heads\": \(heads)}", to: path)
        return path
    }

    /// Converts `source` into a fresh bundle folder and returns its path.
    @discardableResult
    func bundle(_ source: String, config: String? = nil, tokenizer: String? = nil, options: BundleOptions = .init(),
                name: String = UUID().uuidString) throws -> String {
        let tok = try tokenizer.map { try TokenizerFiles(directory: $0) }
        let model = try ReleaseModel(path: source, configFile: config, tokenizer: tok)
        let dir = scratch + "/" + name
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: false)
        try BundleWriter.write(model, tokenizer: tok, options: options, into: dir, progress: .silent)
        return dir
    }

    /// Asserts the bundle at `dir` stores exactly `expected` (training name → torch's recorded bytes), tied.
    func assertBundle(_ dir: String, equals expected: [String: JSONValue], _ label: String) throws {
        let st = try SafetensorsFile(path: dir + "/model.safetensors")
        XCTAssertEqual(st.metadata, ["format": "pt", "model.lm_head.weight": "model.token_embedding.weight"], label)
        XCTAssertEqual(Set(st.tensorNames), Set(expected.keys.filter { $0 != "lm_head.weight" }.map { "model." + $0 }), label)
        for (name, record) in expected where name != "lm_head.weight" {
            let t = try st.tensor(named: "model." + name)
            XCTAssertEqual(t.dtype.name, record["dtype"]?.stringValue, "\(label) \(name)")
            XCTAssertEqual(t.shape, record["shape"]?.elements?.compactMap(\.intValue), "\(label) \(name)")
            XCTAssertEqual(t.bytes, TestSupport.bytes(hex: record["hex"]!.stringValue!), "\(label) \(name)")
        }
        // The LM head torch recorded equals the stored embedding (the tie is kept, not invented).
        XCTAssertEqual(try st.tensor(named: "model.token_embedding.weight").bytes, TestSupport.bytes(hex: expected["lm_head.weight"]!["hex"]!.stringValue!), label)
        // The manifest's digests are the files' digests.
        let manifest = try TestSupport.loadJSON(dir + "/manifest.json")
        for f in manifest["files"]?.elements ?? [] {
            XCTAssertEqual(try SHA256.hex(ofFile: dir + "/" + f["path"]!.stringValue!), f["sha256"]?.stringValue, "\(label) \(f)")
        }
    }

    func testEveryTorchCheckpointFormConvertsExactly() throws {
        let files = try XCTUnwrap(TestSupport.loadJSON(TestSupport.fixture("torch/valid.json"))["files"]?.members)
        // The wrapper each file's keys carry, as torch wrote them (FSDP1's also inside every wrapped layer).
        let prefixes = ["ddp_module_prefix.pt": "module.", "compile_orig_mod_prefix.pt": "_orig_mod.", "ddp_compile_stacked_prefix.pt": "module._orig_mod.",
                        "fsdp1_wrapped_names.pt": "_fsdp_wrapped_module."]
        var converted: [String] = []
        for file in files where !["all_dtypes.pt", "views.pt"].contains(file.key) {
            let prefix = prefixes[file.key] ?? ""
            let tensors = try XCTUnwrap(file.value["tensors"]?.members)
            let inner = file.key == "fsdp1_wrapped_names.pt" ? "._fsdp_wrapped_module." : nil
            let expected = Dictionary(uniqueKeysWithValues: tensors.map { entry in
                let name = String(entry.key.dropFirst(prefix.count))
                return (inner.map { name.replacingOccurrences(of: $0, with: ".") } ?? name, entry.value)
            })
            XCTAssertTrue(tensors.allSatisfy { $0.key.hasPrefix(prefix) })
            if let inner { XCTAssertTrue(tensors.contains { $0.key.contains(inner) }, "FSDP1 wraps every layer") }
            let dir = try bundle(TestSupport.fixture("torch/valid/" + file.key), config: try headsConfig())
            try assertBundle(dir, equals: expected, file.key)
            converted.append(file.key)
        }
        XCTAssertEqual(converted.count, 12, "bare, training dict, bf16, big-endian, three prefix forms, deflated, FSDP2, FSDP1 full and FSDP1 names, ZIP64")
    }

    func testDCPShardedAndReplicatedConvertExactly() throws {
        let checkpoints = try XCTUnwrap(TestSupport.loadJSON(TestSupport.fixture("dcp/valid.json"))["checkpoints"]?.members)
        XCTAssertEqual(checkpoints.count, 2)
        for ckpt in checkpoints {
            let expected = Dictionary(uniqueKeysWithValues: try XCTUnwrap(ckpt.value["model"]?.members).map { ($0.key, $0.value) })
            let dir = try bundle(TestSupport.fixture("dcp/valid/" + ckpt.key), config: try headsConfig())
            try assertBundle(dir, equals: expected, ckpt.key)
        }
    }

    func testConfigAndMetadataComeFromTheCheckpoint() throws {
        let dir = try bundle(TestSupport.fixture("release/valid/mdlm_relu.pt"))
        let config = try TestSupport.loadJSON(dir + "/config.json")
        XCTAssertEqual(config["model_type"]?.stringValue, "arafusion_mdlm")
        XCTAssertEqual(config["architectures"]?.elements?.first?.stringValue, "MDLMForMaskedDiffusion")
        XCTAssertEqual(config["hidden_act"]?.stringValue, "relu")
        XCTAssertEqual(config["is_causal"]?.boolValue, false)
        XCTAssertEqual(config["num_attention_heads"]?.intValue, 6)
        XCTAssertEqual(config["num_hidden_layers"]?.intValue, 3)
        XCTAssertEqual(config["hidden_size"]?.intValue, 48)
        XCTAssertEqual(config["intermediate_size"]?.intValue, 80)
        XCTAssertEqual(config["max_position_embeddings"]?.intValue, 12)
        XCTAssertEqual(config["vocab_size"]?.intValue, 96)
        let metadata = try TestSupport.loadJSON(dir + "/training_metadata.json")
        XCTAssertEqual(metadata.members?.map(\.key), ["config", "step", "train_loss", "tokens_seen"])
        XCTAssertEqual(metadata["step"]?.intValue, 7)
        let manifest = try TestSupport.loadJSON(dir + "/manifest.json")
        XCTAssertEqual(manifest["source"]?["step"]?.intValue, 7)
        XCTAssertEqual(manifest["source"]?["sha256"]?.stringValue, try SHA256.hex(ofFile: TestSupport.fixture("release/valid/mdlm_relu.pt")))
        // 96·48 + 12·48 + 3·(3·48·48 + 3·48 + 48·48 + 48 + 80·48 + 80 + 48·80 + 48 + 4·48) + 2·48, tied matrix once.
        XCTAssertEqual(manifest["parameter_count"]?.intValue, 96 * 48 + 12 * 48 + 3 * (4 * 48 * 48 + 4 * 48 + 2 * 80 * 48 + 80 + 48 + 4 * 48) + 2 * 48)
        let bundleDocs = [dir + "/manifest.json"]
        try TestSupport.validateAgainstSchema("manifest.schema.json", bundleDocs)
        try TestSupport.validateAgainstSchema("config.schema.json", [dir + "/config.json"])
        try TestSupport.validateAgainstSchema("training_metadata.schema.json", [dir + "/training_metadata.json"])
    }

    func testKeyNormalisationStripsEveryWrapper() {
        XCTAssertEqual(ModelFamily.normalize("module._orig_mod.ln_f.weight"), "ln_f.weight")
        XCTAssertEqual(ModelFamily.normalize("_orig_mod.module.ln_f.weight"), "ln_f.weight")
        XCTAssertEqual(ModelFamily.normalize("_fsdp_wrapped_module.transformer.layers.0._fsdp_wrapped_module._checkpoint_wrapped_module.linear1.weight"),
                       "transformer.layers.0.linear1.weight")
        XCTAssertEqual(ModelFamily.normalize("transformer.layers.0.linear1.weight"), "transformer.layers.0.linear1.weight")
        XCTAssertEqual(ModelFamily.normalize("transformer.module.x"), "transformer.module.x", "only a leading module. is DDP's")
    }

    func testInconsistentCheckpointsAreRefusedNamingTheProblem() throws {
        let table = try XCTUnwrap(TestSupport.loadJSON(TestSupport.fixture("release/hostile.json")).members)
        let cases = [
            "config_more_layers.pt": "ConfigError.conflict", "heads_not_dividing.pt": "ConfigError.headsDoNotDivide",
            "integer_weight.pt": "ReleaseModelError.tensors", "misshapen_tensor.pt": "ReleaseModelError.tensors",
            "missing_tensor.pt": "ReleaseModelError.tensors", "not_a_model.pt": "ReleaseModelError.notAraFusion",
            "unexpected_tensor.pt": "ReleaseModelError.tensors",
        ]
        XCTAssertEqual(Set(table.map(\.key)), Set(cases.keys))
        for row in table {
            XCTAssertThrowsError(try ReleaseModel(path: TestSupport.fixture("release/hostile/" + row.key)), row.key) { error in
                XCTAssertEqual(TestSupport.caseName(error), cases[row.key], row.key)
            }
        }
        let bare = TestSupport.fixture("torch/valid/bare_state_dict.pt")
        XCTAssertThrowsError(try ReleaseModel(path: bare)) { XCTAssertEqual($0 as? ConfigError, .headsNotInferable(source: bare)) }
        let training = TestSupport.fixture("torch/valid/training_dict.pt"), eight = try headsConfig(8)
        XCTAssertThrowsError(try ReleaseModel(path: training, configFile: eight)) {
            XCTAssertEqual($0 as? ConfigError, .conflict(source: training, field: "num_attention_heads", first: "4", firstOrigin: "the checkpoint's config",
                                                         second: "8", secondOrigin: eight))
        }
    }

    func testUntiedModelIsRefusedUnlessAllowed() throws {
        let path = TestSupport.fixture("release/valid/untied.pt")
        XCTAssertThrowsError(try ReleaseModel(path: path)) {
            guard case let .untied(p, head, embedding, difference)? = $0 as? ReleaseModelError else { return XCTFail("\($0)") }
            XCTAssertEqual([p, head, embedding], [path, "lm_head.weight", "token_embedding.weight"])
            XCTAssertTrue(difference.hasPrefix("max |difference| 0.25"), difference)
        }
        let model = try ReleaseModel(path: path, allowUntied: true)
        XCTAssertFalse(model.tied)
        let dir = scratch + "/untied"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: false)
        try BundleWriter.write(model, tokenizer: nil, options: .init(), into: dir, progress: .silent)
        let st = try SafetensorsFile(path: dir + "/model.safetensors")
        XCTAssertEqual(st.metadata, ["format": "pt"])
        let source = try TorchCheckpoint(path: path)
        XCTAssertTrue(try st.tensor(named: "model.lm_head.weight").isBitIdentical(to: try source.tensor(named: "lm_head.weight")))
        XCTAssertFalse(try st.tensor(named: "model.lm_head.weight").isBitIdentical(to: try st.tensor(named: "model.token_embedding.weight")))
        XCTAssertEqual(try TestSupport.loadJSON(dir + "/config.json")["tie_word_embeddings"], .bool(false))
        XCTAssertTrue(try BundleVerifier.verify(path: dir, progress: .silent).passed)
    }

    func testBundleToTorchToBundleIsByteIdentical() throws {
        let tokenizer = TestSupport.fixture("tokenizer/valid")
        let first = try bundle(TestSupport.fixture("torch/valid/training_dict.pt"), tokenizer: tokenizer, name: "first")
        let checkpoint = scratch + "/back.pt"
        try TrainingExport.writeTorch(try ReleaseModel(path: first), dtype: nil, to: checkpoint, replacing: false)
        let back = try TorchCheckpoint(path: checkpoint)
        XCTAssertEqual(back.sharedGroups, [["token_embedding.weight", "lm_head.weight"]], "the tied pair shares one storage")
        XCTAssertEqual(back.summary.step, 2)
        let second = try bundle(checkpoint, tokenizer: tokenizer, name: "second")
        XCTAssertEqual(try BundleFolder.files(first), try BundleFolder.files(second))
        for name in try BundleFolder.files(first) where name != "manifest.json" && name != ModelCard.fileName {
            XCTAssertEqual(try SHA256.hex(ofFile: first + "/" + name), try SHA256.hex(ofFile: second + "/" + name), name)
        }
        // The model cards differ only in the line naming the source; the manifests only in the source and the card.
        func lines(_ dir: String) throws -> [Substring] { try String(contentsOfFile: dir + "/README.md", encoding: .utf8).split(separator: "\n") }
        let (cardA, cardB) = (try lines(first), try lines(second))
        XCTAssertEqual(cardA.filter { !$0.hasPrefix("Source: ") }, cardB.filter { !$0.hasPrefix("Source: ") })
        XCTAssertNotEqual(cardA, cardB)
        func trimmed(_ dir: String) throws -> [JSONValue.Member] {
            try TestSupport.loadJSON(dir + "/manifest.json").members!.filter { $0.key != "source" }.map { m in
                m.key == "files" ? .init("files", .array(m.value.elements!.filter { $0["path"] != .string("README.md") })) : m
            }
        }
        XCTAssertNotEqual(try TestSupport.loadJSON(first + "/manifest.json")["source"], try TestSupport.loadJSON(second + "/manifest.json")["source"])
        XCTAssertEqual(try trimmed(first), try trimmed(second))
    }

    func testBundleToDCPReadsBackExactly() throws {
        let first = try bundle(TestSupport.fixture("release/valid/mdlm_relu.pt"))
        let model = try ReleaseModel(path: first)
        let dcp = scratch + "/dcp"
        try FileManager.default.createDirectory(atPath: dcp, withIntermediateDirectories: false)
        try TrainingExport.writeDCP(model, dtype: nil, into: dcp)
        let back = try DCPCheckpoint(directory: dcp)
        let source = try TorchCheckpoint(path: TestSupport.fixture("release/valid/mdlm_relu.pt"))
        XCTAssertEqual(Set(back.tensorNames), Set(source.tensorNames))
        for name in source.tensorNames {
            XCTAssertTrue(try back.tensor(named: name).isBitIdentical(to: try source.tensor(named: name)), name)
        }
        XCTAssertEqual(try bundle(dcp, config: try headsConfig(6)).isEmpty, false, "a DCP folder arapack wrote converts again")
    }

    func testDTypeCastsAndShards() throws {
        let source = TestSupport.fixture("torch/valid/training_dict.pt")
        let bf16 = try bundle(source, options: .init(dtype: .bf16))
        let ckpt = try TorchCheckpoint(path: source)
        let st = try SafetensorsFile(path: bf16 + "/model.safetensors")
        for name in ckpt.tensorNames where name != "lm_head.weight" {
            let t = try st.tensor(named: "model." + name)
            XCTAssertEqual(t.dtype, .bf16)
            let bits = t.withUnsafeBytes { raw in (0..<t.elementCount).map { raw.loadUnaligned(fromByteOffset: 2 * $0, as: UInt16.self) } }
            XCTAssertEqual(bits, try ckpt.tensor(named: name).floats().map(FloatConversion.bf16Bits), name)
        }
        XCTAssertEqual(try TestSupport.loadJSON(bf16 + "/config.json")["torch_dtype"]?.stringValue, "bfloat16")
        // The per-tensor report: every narrowed tensor, its error against float32 and its size before and after.
        let records = try XCTUnwrap(TestSupport.loadJSON(bf16 + "/manifest.json")["quantization"]?["tensors"]?.elements)
        XCTAssertEqual(records.count, 28)
        let ln = try XCTUnwrap(records.first { $0["name"]?.stringValue == "model.ln_f.weight" })
        let exact = try ckpt.tensor(named: "ln_f.weight").floats()
        let maxError = exact.map { Double(abs($0 - FloatConversion.float(bf16Bits: FloatConversion.bf16Bits($0)))) }.max()!
        XCTAssertEqual(ln["max_abs_error"]?.doubleValue, maxError)
        XCTAssertEqual(ln["bytes_before"]?.intValue, 128)
        XCTAssertEqual(ln["bytes_after"]?.intValue, 64)
        XCTAssertGreaterThan(ln["snr_db"]?.doubleValue ?? 0, 40)
        XCTAssertTrue(try BundleVerifier.verify(path: bf16, progress: .silent).passed)

        // Widening back to f32 from the bf16 bundle gives exactly the bf16 values.
        let wide = try bundle(bf16, options: .init(dtype: .f32))
        let w = try SafetensorsFile(path: wide + "/model.safetensors").tensor(named: "model.ln_f.weight")
        XCTAssertEqual(try w.floats(), try st.tensor(named: "model.ln_f.weight").floats())

        // Shards: every shard under the limit unless one tensor alone exceeds it; the index covers all.
        let sharded = try bundle(source, options: .init(maxShardSize: 20_000))
        let files = try directoryEntries(sharded)
        XCTAssertTrue(files.contains("model.safetensors.index.json"))
        XCTAssertFalse(files.contains("model.safetensors"))
        let index = try ShardedSafetensors(indexPath: sharded + "/model.safetensors.index.json")
        XCTAssertGreaterThan(index.shards.count, 3)
        let single = try SafetensorsFile(path: try bundle(source) + "/model.safetensors")
        XCTAssertEqual(index.tensorNames.sorted(), single.tensorNames.sorted())
        for name in single.tensorNames { XCTAssertTrue(try index.tensor(named: name).isBitIdentical(to: try single.tensor(named: name))) }
        XCTAssertTrue(try BundleVerifier.verify(path: sharded, progress: .silent).passed)
    }

    func testFloat16OverflowIsRefusedNamingTheTensor() throws {
        let source = try TorchCheckpoint(path: TestSupport.fixture("torch/valid/training_dict.pt"))
        var tensors = try source.tensorNames.map { (name: $0, tensor: try source.tensor(named: $0)) }
        let i = tensors.firstIndex { $0.name == "transformer.layers.1.linear2.bias" }!
        var values = try tensors[i].tensor.floats()
        values[3] = 70_000
        tensors[i].tensor = try Tensor(float32: values, shape: tensors[i].tensor.shape)
        let path = scratch + "/big.pt"
        try TorchCheckpointWriter.write(stateDict: tensors, extra: [.init("config", source.summary.config!)], to: path)
        XCTAssertThrowsError(try bundle(path, options: .init(dtype: .f16))) {
            guard case let .float16Overflow(_, tensor, count)? = $0 as? CastError else { return XCTFail("\($0)") }
            XCTAssertEqual(tensor, "model.transformer.layers.1.linear2.bias")
            XCTAssertEqual(count, 1)
        }
        XCTAssertNoThrow(try bundle(path, options: .init(dtype: .bf16)))
    }
}
