import ArapackFormats
import ArapackTestSupport
import Foundation
import XCTest

/// docs/ci-recipe.md, run as written: its plan (the `toml` block) and its job's `Release` and `Verify` steps (the
/// `yaml` block, read by a YAML parser) run with bash as GitHub Actions runs a step (`bash -eo pipefail`), arapack on
/// the PATH, in a folder laid out as the plan expects: the trained twin as checkpoints/final.pt, a tokenizer llama.cpp
/// reproduces, held-out shards in data/val. The release appears with every artifact the plan names and each verifies.
final class ReleaseRecipeTests: XCTestCase {
    func testTheCIRecipeRunsAsWritten() throws {
        let python = try TestSupport.interopPython(importing: ["yaml"])
        let recipe = TestSupport.repositoryRoot.appendingPathComponent("docs/ci-recipe.md").path
        let extract = try TestSupport.run(python, ["-c", """
            import json, re, sys, yaml
            text = open(sys.argv[1], encoding="utf-8").read()
            blocks = dict((m.group(1), m.group(2)) for m in re.finditer(r"```(toml|yaml)\\n(.*?)```", text, re.S))
            job = yaml.safe_load(blocks["yaml"])["jobs"]["release"]
            steps = {s["name"]: s.get("run") for s in job["steps"]}
            print(json.dumps({"plan": blocks["toml"], "release": steps["Release"], "verify": steps["Verify"],
                              "names": [s["name"] for s in job["steps"]]}))
            """, recipe])
        XCTAssertEqual(extract.status, 0, extract.stderr)
        let recipeParts = try JSONParser.parse(Array(extract.stdout.utf8))
        XCTAssertEqual(recipeParts["names"], .array(["Checkout", "Install arapack", "Release", "Verify", "Upload"].map { .string($0) }))

        let work = try TestSupport.temporaryDirectory()
        defer { removeTree(work) }
        for folder in ["checkpoints", "tokenizer", "data/val"] {
            try FileManager.default.createDirectory(atPath: work + "/" + folder, withIntermediateDirectories: true)
        }
        try FileManager.default.copyItem(atPath: TestSupport.fixture("trained/arafusion_tiny_ar.pt"), toPath: work + "/checkpoints/final.pt")
        for name in try FileManager.default.contentsOfDirectory(atPath: TestSupport.fixture("gguf/metaspace")) {
            try FileManager.default.copyItem(atPath: TestSupport.fixture("gguf/metaspace/" + name), toPath: work + "/tokenizer/" + name)
        }
        try FileManager.default.copyItem(atPath: TestSupport.fixture("tokens/heldout_u32.npy"), toPath: work + "/data/val/heldout_u32.npy")
        try writeText(try XCTUnwrap(recipeParts["plan"]?.stringValue), to: work + "/release.toml")

        let bin = splitPath(TestSupport.arapackBinary).0
        let path = bin + ":" + (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin")
        for step in ["release", "verify"] {
            let script = try XCTUnwrap(recipeParts[step]?.stringValue)
            let r = try TestSupport.run("/bin/bash", ["--noprofile", "--norc", "-eo", "pipefail", "-c", "cd \"$1\" && " + script, "recipe", work],
                                        environment: ["PATH": path])
            XCTAssertEqual(r.status, 0, "\(step): " + r.stdout + r.stderr)
            if step == "release" {
                XCTAssertTrue(r.stdout.contains("\"name\": \"AraFusion-AR-381M-GGUF/AraFusion-AR-381M-Q8_0.gguf\""), r.stdout)
            } else {
                XCTAssertTrue(r.stdout.hasPrefix("verify release\nok    release.json\nok    files\n") && r.stdout.hasSuffix("\npassed\n"), r.stdout)
                for target in ["AraFusion-AR-381M", "AraFusion-AR-381M.tar.zst", "AraFusion-AR-381M-int8", "AraFusion-AR-381M-gpt2"] {
                    XCTAssertTrue(r.stdout.contains("\nok    \(target): manifest\n"), target + " in " + r.stdout)
                }
                XCTAssertTrue(r.stdout.contains("\nok    AraFusion-AR-381M-GGUF/AraFusion-AR-381M-Q8_0.gguf: metadata ⇄ tensors\n"), r.stdout)
            }
        }
        XCTAssertEqual(try directoryEntries(work + "/release"), ["AraFusion-AR-381M", "AraFusion-AR-381M-GGUF", "AraFusion-AR-381M-gpt2",
                                                                 "AraFusion-AR-381M-int8", "AraFusion-AR-381M.tar.zst", "AraFusion-AR-381M.tar.zst.sha256",
                                                                 "release.json"])
    }
}
