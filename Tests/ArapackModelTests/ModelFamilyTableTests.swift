@testable import ArapackModel
import ArapackFormats
import ArapackTestSupport
import Foundation
import XCTest

/// The family's tensor names have one home: ModelFamily (the table) and NamingLayout (its mapping to GPT-2).
final class ModelFamilyTableTests: XCTestCase {
    /// A tensor name of the family spelled in a string literal anywhere else in the Swift sources fails this.
    func testTensorNamesAreSpelledOnlyInTheTable() throws {
        let pattern = try NSRegularExpression(pattern:
            #"(token_embedding|position_embedding|out_proj|linear1|linear2|norm1|norm2|ln_f|lm_head)\.(weight|bias)|in_proj_(weight|bias)|transformer\.layers\."#)
        let root = TestSupport.repositoryRoot
        var offenders: [String] = []
        for folder in ["Sources", "Fuzz", "Benchmarks/ArapackBench"] {
            let base = root.appendingPathComponent(folder)
            for case let url as URL in FileManager.default.enumerator(at: base, includingPropertiesForKeys: nil)! where url.pathExtension == "swift" {
                if ["ModelFamily.swift", "NamingLayout.swift"].contains(url.lastPathComponent) { continue }
                let text = try String(contentsOf: url, encoding: .utf8)
                for (n, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
                    let code = line.hasPrefix("///") || line.trimmingCharacters(in: .whitespaces).hasPrefix("//") ? "" : String(line)
                    // Only string literals count (comments may cite names).
                    let literals = code.split(separator: "\"", omittingEmptySubsequences: false).enumerated().filter { $0.offset % 2 == 1 }.map(\.element)
                    for literal in literals where pattern.firstMatch(in: String(literal), range: NSRange(literal.startIndex..., in: literal)) != nil {
                        offenders.append("\(url.path.dropFirst(root.path.count + 1)):\(n + 1): \(literal)")
                    }
                }
            }
        }
        XCTAssertEqual(offenders, [], "tensor names spelled outside ModelFamily / NamingLayout")
    }

    /// The table's layer tensors, names and shapes as docs/model-family.md spells them.
    func testTheLayerTableMatchesTheSpec() throws {
        let c = ModelConfig(vocabSize: 11, hiddenSize: 8, layers: 2, heads: 2, intermediateSize: 12, maxPositions: 5, activation: "gelu",
                            layerNormEps: 1e-5, dropout: 0, causal: true, tieWordEmbeddings: true, bos: 1, eos: 2, pad: 3, mask: 4)
        let shapes = Dictionary(uniqueKeysWithValues: ModelFamily.expectedShapes(c).map { ($0.name, $0.shape) })
        let spec: [String: [Int]] = [
            "token_embedding.weight": [11, 8], "position_embedding.weight": [5, 8],
            "transformer.layers.1.self_attn.in_proj_weight": [24, 8], "transformer.layers.1.self_attn.in_proj_bias": [24],
            "transformer.layers.1.self_attn.out_proj.weight": [8, 8], "transformer.layers.1.self_attn.out_proj.bias": [8],
            "transformer.layers.1.linear1.weight": [12, 8], "transformer.layers.1.linear1.bias": [12],
            "transformer.layers.1.linear2.weight": [8, 12], "transformer.layers.1.linear2.bias": [8],
            "transformer.layers.1.norm1.weight": [8], "transformer.layers.1.norm1.bias": [8],
            "transformer.layers.1.norm2.weight": [8], "transformer.layers.1.norm2.bias": [8],
            "ln_f.weight": [8], "ln_f.bias": [8], "lm_head.weight": [11, 8],
        ]
        for (name, shape) in spec { XCTAssertEqual(shapes[name], shape, name) }
        XCTAssertEqual(shapes.count, 4 + 12 * 2 + 1)
        XCTAssertEqual(ModelFamily.layerTensor("transformer.layers.1.linear2.weight")?.layer, 1)
        XCTAssertNil(ModelFamily.layerTensor("transformer.layers.x.linear2.weight"))
        XCTAssertEqual(["transformer.layers.0.self_attn.out_proj.weight", "transformer.layers.3.linear1.weight", "transformer.layers.0.linear2.weight",
                        "transformer.layers.0.self_attn.in_proj_weight", "token_embedding.weight", "lm_head.weight"].map(ModelFamily.isLinearModuleWeight),
                       [true, true, true, false, false, false])
    }

    /// Modules depend one way: arapack (CLI) → ArapackRelease → ArapackModel → ArapackFormats → ArapackTensor.
    /// A source file importing a module above its own fails this.
    func testModulesDependOneWay() throws {
        let order = ["ArapackTensor", "ArapackFormats", "ArapackModel", "ArapackRelease", "arapack"]
        let root = TestSupport.repositoryRoot.appendingPathComponent("Sources")
        var offenders: [String] = []
        for (rank, module) in order.enumerated() {
            let base = root.appendingPathComponent(module)
            for case let url as URL in FileManager.default.enumerator(at: base, includingPropertiesForKeys: nil)! where url.pathExtension == "swift" {
                for line in try String(contentsOf: url, encoding: .utf8).split(separator: "\n") where line.hasPrefix("import ") || line.hasPrefix("@testable import ") {
                    let imported = String(line.split(separator: " ").last!)
                    if let r = order.firstIndex(of: imported), r >= rank, imported != module {
                        offenders.append("\(module)/\(url.lastPathComponent) imports \(imported)")
                    }
                }
            }
        }
        XCTAssertEqual(offenders, [])
        XCTAssertFalse(FileManager.default.fileExists(atPath: root.appendingPathComponent("ArapackInference").path), "the forward pass lives in ArapackModel")
    }

    /// Config errors are cases carrying their context, so a caller (or a test) can tell them apart without
    /// reading text; the text names the model, the field, the value and where it was stated.
    func testConfigErrorsAreTypedCases() throws {
        func error(_ json: String) -> ConfigError? {
            var a = ConfigAssembly(source: "m.pt")
            do {
                try a.add(try JSONParser.parse(Array(json.utf8)), origin: "config.json")
                _ = try a.resolve()
                return nil
            } catch { return error as? ConfigError }
        }
        let base = #""vocab_size": 64, "hidden_size": 12, "num_hidden_layers": 1, "intermediate_size": 48, "max_position_embeddings": 8"#
        XCTAssertNil(error("{\(base), \"num_attention_heads\": 3}"))
        let heads = error("{\(base), \"num_attention_heads\": 5}")
        XCTAssertEqual(heads, .headsDoNotDivide(source: "m.pt", hiddenSize: 12, hiddenOrigin: "config.json", heads: 5, headsOrigin: "config.json"))
        XCTAssertEqual(heads?.description, "m.pt: hidden_size 12 (config.json) is not divisible by num_attention_heads 5 (config.json)")
        XCTAssertEqual(error("{\(base), \"num_attention_heads\": 3, \"layer_norm_eps\": -1}"),
                       .layerNormEps(source: "m.pt", found: "-1", origin: "config.json"))
        XCTAssertEqual(error("{\(base), \"num_attention_heads\": 3, \"bos_token_id\": 64}"),
                       .specialTokenOutsideVocabulary(source: "m.pt", role: "bos", id: 64, vocabSize: 64))
        guard case .outOfBounds(_, "num_hidden_layers", 1_000_000_000_000, "config.json", _)? = error(#"{"vocab_size": 64, "hidden_size": 12, "num_hidden_layers": 1000000000000, "intermediate_size": 48, "max_position_embeddings": 8, "num_attention_heads": 3}"#) else {
            return XCTFail("10^12 layers is out of bounds")
        }
        XCTAssertEqual(error("[1]"), .notAnObject(origin: "config.json", found: "array"))
    }

    /// A config field's name in any dialect (config.json, the training dict, GPT2Config, GGUF metadata) spelled in a
    /// string literal outside Sources/ArapackModel/Config fails this: each dialect's CodingKeys spell them once.
    func testConfigFieldNamesAreSpelledOnlyInTheirDialects() throws {
        let names = ModelConfig.Field.allCases.map(\.stringValue) + TrainingConfigKey.allCases.map(\.stringValue)
            + GPT2ConfigKey.allCases.map(\.stringValue) + GGUFConfigKey.allCases.map(\.stringValue)
        // Plain words (dropout, activation, causal) are other documents' keys too; the compound names are the dialects'.
        let compound = Set(names.filter { $0.contains("_") || $0.contains(".") })
        let root = TestSupport.repositoryRoot
        var offenders: [String] = []
        for folder in ["Sources/ArapackFormats", "Sources/ArapackModel", "Sources/ArapackRelease", "Sources/ArapackTensor"] {
            let base = root.appendingPathComponent(folder)
            for case let url as URL in FileManager.default.enumerator(at: base, includingPropertiesForKeys: nil)! where url.pathExtension == "swift" {
                if url.path.contains("/ArapackModel/Config/") { continue }
                let text = try String(contentsOf: url, encoding: .utf8)
                for (n, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
                    if line.trimmingCharacters(in: .whitespaces).hasPrefix("//") { continue }
                    let literals = line.split(separator: "\"", omittingEmptySubsequences: false).enumerated().filter { $0.offset % 2 == 1 }.map(\.element)
                    for literal in literals where compound.contains(String(literal)) {
                        offenders.append("\(url.path.dropFirst(root.path.count + 1)):\(n + 1): \(literal)")
                    }
                }
            }
        }
        XCTAssertEqual(offenders, [], "config field names spelled outside their dialect's CodingKeys")
    }

    /// Each dialect writes the names its consumer reads, in the order the released files have them (literals from
    /// docs/model-family.md, transformers' GPT2Config and llama.cpp's gguf-py constants), and reads them back.
    func testEachDialectWritesAndReadsItsOwnNames() throws {
        let c = ModelConfig(vocabSize: 96, hiddenSize: 32, layers: 2, heads: 4, intermediateSize: 128, maxPositions: 16, activation: "gelu",
                            layerNormEps: 1e-5, dropout: 0.1, causal: true, tieWordEmbeddings: true, bos: 1, eos: 2, pad: 5, mask: 62)
        XCTAssertEqual(c.trainingJSON.serialized(),
                       #"{"vocab_size":96,"d_model":32,"n_layers":2,"n_heads":4,"d_ff":128,"max_seq_len":16,"dropout":0.1,"activation":"gelu","causal":true,"layer_norm_eps":1e-05}"#)
        XCTAssertEqual(JSONValue.object(c.members).serialized(),
                       #"{"vocab_size":96,"hidden_size":32,"num_hidden_layers":2,"num_attention_heads":4,"intermediate_size":128,"max_position_embeddings":16,"hidden_act":"gelu","layer_norm_eps":1e-05,"dropout":0.1,"is_causal":true,"tie_word_embeddings":true,"bos_token_id":1,"eos_token_id":2,"pad_token_id":5,"mask_token_id":62}"#)
        XCTAssertEqual(GPT2Config(c).json.serialized(),
                       #"{"vocab_size":96,"n_embd":32,"n_layer":2,"n_head":4,"n_inner":128,"n_positions":16,"activation_function":"gelu","layer_norm_epsilon":1e-05,"n_ctx":16,"tie_word_embeddings":true,"bos_token_id":1,"eos_token_id":2,"pad_token_id":5,"mask_token_id":62}"#)
        XCTAssertEqual(GGUFConfigKey.sizes.map(\.stringValue), ["gpt2.context_length", "gpt2.embedding_length", "gpt2.block_count",
                                                                "gpt2.feed_forward_length", "gpt2.attention.head_count", "gpt2.attention.layer_norm_epsilon"])
        XCTAssertEqual(GGUFConfigKey.specialIDs.map(\.stringValue), ["tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id",
                                                                     "tokenizer.ggml.padding_token_id", "tokenizer.ggml.mask_token_id"])
        // Every dialect's statement of the config assembles back to it (the GPT-2 form has no dropout: 0).
        for (json, expected) in [(c.trainingJSON, c), (JSONValue.object(c.members), c), (GPT2Config(c).json, c)] {
            var a = ConfigAssembly(source: "m")
            var statement = json
            if case var .object(members) = json, members.contains(where: { $0.key == "n_embd" }) {
                members.append(.init("model_type", .string("gpt2")))
                statement = .object(members)
            }
            try a.add(statement, origin: "config")
            var want = expected
            if statement["model_type"] != nil { want.dropout = 0 }
            let got = try a.resolve()
            XCTAssertEqual(got, want, statement.serialized())
        }
        // ModelConfig decodes what it encodes.
        XCTAssertEqual(try JSONValueDecoder().decode(ModelConfig.self, from: try JSONValueEncoder().encode(c)), c)
    }
}
