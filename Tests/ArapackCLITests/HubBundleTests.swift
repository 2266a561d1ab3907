import ArapackFormats
import ArapackRelease
import ArapackTestSupport
import Foundation
import XCTest

/// What a native bundle carries for the Hugging Face Hub (docs/bundle.md): the transformers wrapper byte for byte as
/// kept in the repository, `auto_map`, the model card and .gitattributes, the tokenizer in both layouts; and what
/// `verify` says when any of them is changed.
final class HubBundleTests: XCTestCase {
    var scratch = ""
    override func setUpWithError() throws { scratch = try TestSupport.temporaryDirectory() }
    override func tearDown() { removeTree(scratch) }

    let gelu = TestSupport.fixture("golden/ar_gelu.pt")
    let mdlm = TestSupport.fixture("golden/mdlm_gelu.pt")
    let wrapperSources = TestSupport.repositoryRoot.appendingPathComponent("Sources/ArapackRelease/Forms/Native/Wrapper").path

    func convert(_ source: String, _ dst: String, _ options: [String] = [], status: Int32 = 0, file: StaticString = #filePath, line: UInt = #line) throws -> TestSupport.ProcessResult {
        let r = try TestSupport.run(TestSupport.arapackBinary, ["convert", source, dst] + options)
        XCTAssertEqual(r.status, status, r.stdout + r.stderr, file: file, line: line)
        return r
    }

    func text(_ path: String) throws -> String { try String(contentsOfFile: path, encoding: .utf8) }

    func testEveryNativeBundleCarriesTheRepositorysWrapperAndAutoMap() throws {
        let sources = try directoryEntries(wrapperSources)
        XCTAssertEqual(sources, ["configuration_arafusion.py", "modeling_arafusion.py"])
        for (i, c) in [(gelu, ["--tokenizer", TestSupport.fixture("tokenizer/valid")]), (gelu, ["--dtype", "bf16"]), (mdlm, ["--dtype", "int8"])].enumerated() {
            let dst = scratch + "/b\(i)"
            _ = try convert(c.0, dst, c.1)
            for name in sources {
                XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: dst + "/" + name)),
                               try Data(contentsOf: URL(fileURLWithPath: wrapperSources + "/" + name)), "\(name) in bundle \(i)")
            }
            let manifest = try TestSupport.loadJSON(dst + "/manifest.json")
            let listed = Set(manifest["files"]!.elements!.compactMap { $0["path"]?.stringValue })
            XCTAssertTrue(listed.isSuperset(of: sources + ["README.md", ".gitattributes"]), "\(listed)")
            let config = try TestSupport.loadJSON(dst + "/config.json")
            let causal = c.0 == gelu
            XCTAssertEqual(config["auto_map"], causal
                ? .object([.init("AutoConfig", .string("configuration_arafusion.AraFusionARConfig")),
                           .init("AutoModelForCausalLM", .string("modeling_arafusion.ARAr381MForCausalLM"))])
                : .object([.init("AutoConfig", .string("configuration_arafusion.AraFusionMDLMConfig")),
                           .init("AutoModel", .string("modeling_arafusion.MDLMForMaskedDiffusion")),
                           .init("AutoModelForMaskedLM", .string("modeling_arafusion.MDLMForMaskedDiffusion"))]))
            let card = try text(dst + "/README.md")
            XCTAssertTrue(card.hasPrefix("---\nlicense: apache-2.0\nlanguage:\n- ar\nlibrary_name: transformers\npipeline_tag: \(causal ? "text-generation" : "fill-mask")\n"), card)
            XCTAssertTrue(card.contains("- custom_code\n"), card)
            XCTAssertTrue(card.contains("trust_remote_code=True"), card)
            XCTAssertTrue(card.contains("| parameters | \(manifest["parameter_count"]!.intValue!) (the tied embedding / LM head counted once) |"), card)
            if i == 2 { XCTAssertTrue(card.contains("## Quantization") && card.contains("model.transformer.layers.0.linear1.weight"), card) }
            XCTAssertEqual(try text(dst + "/.gitattributes"), "*.safetensors filter=lfs diff=lfs merge=lfs -text\n*.tar.zst filter=lfs diff=lfs merge=lfs -text\n")
            XCTAssertEqual(try TestSupport.arapack("verify", dst).status, 0)
        }
        // Deterministic: the same conversion under another folder of the same name gives the same bytes.
        try FileManager.default.createDirectory(atPath: scratch + "/again", withIntermediateDirectories: false)
        _ = try convert(gelu, scratch + "/again/b0", ["--tokenizer", TestSupport.fixture("tokenizer/valid")])
        for name in try BundleFolder.files(scratch + "/b0") {
            XCTAssertEqual(try SHA256.hex(ofFile: scratch + "/b0/" + name), try SHA256.hex(ofFile: scratch + "/again/b0/" + name), name)
        }
    }

    /// The wrapper imports torch, transformers and its own configuration module, nothing else.
    func testTheWrapperImportsOnlyTorchAndTransformers() throws {
        for name in try directoryEntries(wrapperSources) {
            let imports = try text(wrapperSources + "/" + name).split(separator: "\n")
                .filter { $0.hasPrefix("import ") || $0.hasPrefix("from ") }
                .map { line -> String in
                    let module = line.split(separator: " ")[1]
                    return module.hasPrefix(".") ? String(module) : String(module.split(separator: ".")[0])
                }
            XCTAssertFalse(imports.isEmpty, name)
            XCTAssertTrue(Set(imports).isSubset(of: ["torch", "transformers", ".configuration_arafusion"]), "\(name): \(imports)")
        }
    }

    func testVerifyReportsAChangedWrapperAutoMapOrCard() throws {
        let dst = scratch + "/b"
        _ = try convert(gelu, dst, ["--base-model", "arafusion/ar-381m"])
        XCTAssertTrue(try text(dst + "/README.md").contains("\nbase_model: arafusion/ar-381m\n"))
        try TestSupport.verifyEdited(dst, file: "modeling_arafusion.py", edits: [
            ("import torch\n", "import torch\nimport os\n", "modeling_arafusion.py differs from the wrapper arapack"),
        ]) { edit, r in
            XCTAssertEqual(r.status, 1, r.stdout)
            XCTAssertTrue(r.stdout.contains("FAIL  wrapper: " + edit.fragment), r.stdout)
        }
        try TestSupport.verifyEdited(dst, file: "config.json", edits: [
            ("\"modeling_arafusion.ARAr381MForCausalLM\"", "\"modeling_other.ARAr381MForCausalLM\"", "names modeling_other.py, which is not in the bundle"),
            ("\"modeling_arafusion.ARAr381MForCausalLM\"", "\"modeling_arafusion.Evil\"", "names class Evil, which modeling_arafusion.py does not define"),
            ("\"auto_map\"", "\"no_auto_map\"", "config.json has no auto_map"),
        ]) { edit, r in
            XCTAssertEqual(r.status, 1, r.stdout)
            XCTAssertTrue(r.stdout.contains(edit.fragment), edit.fragment + ": " + r.stdout)
        }
        try TestSupport.verifyEdited(dst, file: "README.md", edits: [
            ("license: apache-2.0\n", "", "the front matter states no license"),
            ("---\nlicense", "license", "does not begin with a YAML front matter block"),
            ("language:\n", "language:\nlanguage:\n", "front matter key language appears twice"),
            ("library_name: transformers\n", "library_name transformers\n", "is not a \"key: value\" entry"),
        ]) { edit, r in
            XCTAssertEqual(r.status, 1, r.stdout)
            XCTAssertTrue(r.stdout.contains("FAIL  model card: README.md: "), r.stdout)
            XCTAssertTrue(r.stdout.contains(edit.fragment), edit.fragment + ": " + r.stdout)
        }
    }

    func testModelCardFlags() throws {
        let card = scratch + "/card.md"
        try writeText("---\nlicense: mit\nbase_model: someone/model\ntags:\n- arafusion\n---\n\n# My release\n", to: card)
        _ = try convert(gelu, scratch + "/own", ["--model-card", card])
        XCTAssertEqual(try text(scratch + "/own/README.md"), try text(card), "the user's card, as written")
        XCTAssertEqual(try TestSupport.arapack("verify", scratch + "/own").status, 0)
        try writeText("# no front matter\n", to: card)
        var r = try convert(gelu, scratch + "/bad", ["--model-card", card], status: 2)
        XCTAssertTrue(r.stderr.contains("card.md: the card does not begin with a YAML front matter block"), r.stderr)
        XCTAssertEqual(r.stderr.split(separator: "\n").count, 1, r.stderr)
        XCTAssertFalse(FileManager.default.fileExists(atPath: scratch + "/bad"), "nothing at DST")
        r = try convert(gelu, scratch + "/bad", ["--model-card", card, "--license", "mit"], status: 64)
        r = try convert(gelu, scratch + "/bad", ["--license", "mit"])
        XCTAssertTrue(try text(scratch + "/bad/README.md").hasPrefix("---\nlicense: mit\n"))
    }

    /// The published layout (base_tokenizer/ plus MorphBPE files) is kept; a plain folder goes to both places;
    /// a bundle converted from a bundle keeps its tokenizer files; the two sets must agree.
    func testTokenizerLayouts() throws {
        let published = scratch + "/published"
        try FileManager.default.createDirectory(atPath: published + "/base_tokenizer", withIntermediateDirectories: true)
        let plain = TestSupport.fixture("tokenizer/valid")
        let names = try directoryEntries(plain).filter { $0.hasSuffix(".json") }
        for name in names { try FileManager.default.copyItem(atPath: plain + "/" + name, toPath: published + "/base_tokenizer/" + name) }
        try writeText("{\"max_morphemes\": 3}\n", to: published + "/morphbpe_config.json")
        try writeText("print('morphbpe')\n", to: published + "/morphbpe.py")
        try writeText("not part of the tokenizer\n", to: published + "/notes.txt")
        _ = try convert(gelu, scratch + "/pub", ["--tokenizer", published])
        let files = try BundleFolder.files(scratch + "/pub")
        for name in names {
            XCTAssertTrue(files.contains(name) && files.contains("base_tokenizer/" + name), name)
            XCTAssertEqual(try SHA256.hex(ofFile: scratch + "/pub/" + name), try SHA256.hex(ofFile: plain + "/" + name))
        }
        XCTAssertTrue(files.contains("morphbpe_config.json") && files.contains("morphbpe.py"), "\(files)")
        XCTAssertFalse(files.contains("notes.txt"))
        let card = try text(scratch + "/pub/README.md")
        XCTAssertNotNil(card.range(of: #"AutoTokenizer\.from_pretrained\("\./AraFusion-AR-\d+K", subfolder="base_tokenizer"\)"#,
                                   options: .regularExpression), card)

        // Bundle to bundle (and through its archive): the tokenizer files travel, MorphBPE included.
        _ = try convert(scratch + "/pub", scratch + "/again", ["--dtype", "bf16"])
        XCTAssertEqual(try BundleFolder.files(scratch + "/again").filter { $0.contains("tokenizer") || $0.hasPrefix("morphbpe") },
                       files.filter { $0.contains("tokenizer") || $0.hasPrefix("morphbpe") })
        XCTAssertEqual(try TestSupport.arapack("verify", scratch + "/again").status, 0)

        // Sets that disagree, or a malformed MorphBPE config, are refused naming the file.
        try writeText(try text(published + "/base_tokenizer/tokenizer_config.json").replacingOccurrences(of: "\"</s>\"", with: "\"<s>\""),
                      to: published + "/base_tokenizer/tokenizer_config.json")
        for name in names { try FileManager.default.copyItem(atPath: plain + "/" + name, toPath: published + "/" + name) }
        var r = try convert(gelu, scratch + "/x", ["--tokenizer", published], status: 2)
        XCTAssertTrue(r.stderr.contains("base_tokenizer"), r.stderr)
        for name in names { try FileManager.default.removeItem(atPath: published + "/base_tokenizer/" + name) }
        try writeText("{\"max_morphemes\": ", to: published + "/morphbpe_config.json")
        r = try convert(gelu, scratch + "/x", ["--tokenizer", published], status: 2)
        XCTAssertTrue(r.stderr.contains("morphbpe_config.json"), r.stderr)
        XCTAssertFalse(FileManager.default.fileExists(atPath: scratch + "/x"))
    }
}
