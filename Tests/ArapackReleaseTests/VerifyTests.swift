import ArapackFormats
@testable import ArapackRelease
import ArapackTensor
import ArapackTestSupport
import Foundation
import XCTest

/// Archives are deterministic and readable by tar; verify finds every kind of damage, in a folder and in an
/// archive read as a stream; the tokenizer checks refuse inconsistent special tokens.
final class VerifyTests: XCTestCase {
    var scratch = ""

    override func setUpWithError() throws { scratch = try TestSupport.temporaryDirectory() }
    override func tearDown() { removeTree(scratch) }

    /// A bundle of the training-dict fixture with the tokenizer, in `scratch/name`.
    func makeBundle(_ name: String, source: String = "torch/valid/training_dict.pt") throws -> String {
        let tok = try TokenizerFiles(directory: TestSupport.fixture("tokenizer/valid"))
        let model = try ReleaseModel(path: TestSupport.fixture(source), tokenizer: tok)
        let dir = scratch + "/" + name
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        try BundleWriter.write(model, tokenizer: tok, options: .init(), into: dir, progress: .silent)
        return dir
    }

    func archive(_ dir: String, to path: String) throws -> String {
        try ReleaseArchive.write(folder: dir, files: try BundleFolder.files(dir), name: "release", to: path, mtime: 0, replacing: false, progress: .silent)
    }

    /// manifest.json is one type read and written by the same code: decoding a written manifest and writing it
    /// again gives the file's bytes; its fields are the bundle's.
    func testManifestReadsBackToTheBytesWritten() throws {
        let dir = try makeBundle("m")
        let path = dir + "/" + Manifest.fileName
        let manifest = try Manifest(path: path)
        XCTAssertEqual(manifest.json.serialized(pretty: true) + "\n", try String(contentsOfFile: path, encoding: .utf8))
        XCTAssertEqual(manifest.formatVersion, 1)
        XCTAssertEqual(manifest.modelType, "arafusion_ar")
        XCTAssertEqual(manifest.tiedGroups, [["model.lm_head.weight", "model.token_embedding.weight"]])
        XCTAssertEqual(manifest.files.map(\.path), try BundleFolder.files(dir).filter { $0 != Manifest.fileName })
        let weights = try XCTUnwrap(manifest.files.first { $0.path == "model.safetensors" })
        XCTAssertEqual(weights.sha256, try SHA256.hex(ofFile: dir + "/model.safetensors"))
        XCTAssertNil(manifest.quantization)
        // A files entry with a size that is not an integer is named by its place.
        let text = try String(contentsOfFile: path, encoding: .utf8)
        let broken = text.replacingOccurrences(of: "\"size\": \(weights.size)", with: "\"size\": \"\(weights.size)\"")
        XCTAssertNotEqual(broken, text)
        try broken.write(toFile: path, atomically: false, encoding: .utf8)
        let index = try XCTUnwrap(manifest.files.firstIndex { $0.path == "model.safetensors" })
        XCTAssertThrowsError(try Manifest(path: path)) {
            guard case let .manifest(file, problem)? = $0 as? BundleError else { return XCTFail("\($0)") }
            XCTAssertEqual(file, path)
            XCTAssertEqual([problem.path, problem.expected], ["files[\(index)].size", "an integer"])
        }
    }

    func testArchiveIsDeterministicAndTarReadsIt() throws {
        let a = try archive(try makeBundle("a"), to: scratch + "/a.tar.zst")
        let b = try archive(try makeBundle("b"), to: scratch + "/b.tar.zst")
        XCTAssertEqual(a, b, "same input, same archive bytes")
        XCTAssertEqual(try SHA256.hex(ofFile: scratch + "/a.tar.zst"), a)
        XCTAssertEqual(try String(contentsOfFile: scratch + "/a.tar.zst.sha256", encoding: .utf8), "\(a)  a.tar.zst\n")
        // GNU tar lists the entries sorted, owned by 0/0, with fixed modes and mtime.
        let listing = try TestSupport.run("/bin/sh", ["-c", "zstd -dc '\(scratch)/a.tar.zst' | tar --numeric-owner -tvf -"])
        guard listing.status == 0 else { throw XCTSkip("zstd and tar are needed: \(listing.stderr)") }
        let lines = listing.stdout.split(separator: "\n").map { $0.split(separator: " ", omittingEmptySubsequences: true) }
        let tokenizer = ["special_tokens_map.json", "tokenizer.json", "tokenizer_config.json"]
        XCTAssertEqual(lines.map { String($0.last!) },
                       ["release/", "release/.gitattributes", "release/README.md", "release/base_tokenizer/"]
                       + tokenizer.map { "release/base_tokenizer/" + $0 }
                       + ["release/config.json", "release/configuration_arafusion.py", "release/generation_config.json", "release/manifest.json",
                          "release/model.safetensors", "release/modeling_arafusion.py"]
                       + tokenizer.map { "release/" + $0 } + ["release/training_metadata.json"])
        let folders: Set<Substring> = ["release/", "release/base_tokenizer/"]
        XCTAssertTrue(lines.allSatisfy { folders.contains($0.last!) ? $0[0] == "drwxr-xr-x" : $0[0] == "-rw-r--r--" }, listing.stdout)
        XCTAssertTrue(lines.allSatisfy { $0[1] == "0/0" }, listing.stdout)
        XCTAssertTrue(listing.stdout.contains("1970-01-01 00:00"), listing.stdout)
        // And the extracted bytes are the bundle's.
        let extracted = try TestSupport.run("/bin/sh", ["-c", "zstd -dc '\(scratch)/a.tar.zst' | tar -xOf - release/model.safetensors | sha256sum"])
        XCTAssertTrue(extracted.stdout.hasPrefix(try SHA256.hex(ofFile: scratch + "/a/model.safetensors")))
    }

    /// zstd's worker threads share the compression, and their count changes no byte: 40 MiB is five of zstd's 8 MiB
    /// jobs. The zstd tool reads it back.
    func testArchiveBytesDoNotDependOnTheWorkerCount() throws {
        var random = SplitMix64(seed: 7)
        var data = [UInt8](repeating: 0, count: 40 << 20)
        for i in stride(from: 0, to: data.count, by: 8) {
            // Compressible, like weights: four random bits per byte.
            withUnsafeBytes(of: random.next() & 0x0F0F_0F0F_0F0F_0F0F) { for (j, b) in $0.enumerated() { data[i + j] = b } }
        }
        var digests: [String] = []
        for workers in [1, 2, 3] {
            let path = scratch + "/w\(workers).zst"
            let out = try AtomicFileWriter(destination: path, hashing: true)
            let z = try ZstdWriter(out, workers: workers)
            for start in stride(from: 0, to: data.count, by: 3 << 20) { try z.write(Array(data[start..<min(data.count, start + (3 << 20))])) }
            try z.finish()
            try out.sync()
            try out.commit(replacing: false)
            digests.append(out.sha256!)
        }
        XCTAssertEqual(Set(digests).count, 1, "\(digests)")
        XCTAssertLessThan(try fileSize(scratch + "/w1.zst"), data.count * 3 / 4, "compressed")
        let back = try TestSupport.run("/bin/sh", ["-c", "zstd -dc '\(scratch)/w2.zst' | sha256sum"])
        XCTAssertEqual(back.status, 0, back.stderr)
        XCTAssertTrue(back.stdout.hasPrefix(data.withUnsafeBytes { SHA256.hex(of: $0) }), back.stdout)
    }

    func testTarHeaderFieldsAndLongNames() throws {
        let h = try ReleaseArchive.header(name: "b/config.json", size: 478, mode: 0o644, directory: false, mtime: 1_700_000_000, file: "x")
        XCTAssertEqual(h.count, 512)
        XCTAssertEqual(String(decoding: h[124..<135], as: UTF8.self), "00000000736", "size in octal")
        XCTAssertEqual(String(decoding: h[136..<147], as: UTF8.self), String(1_700_000_000, radix: 8).leftPadded(11))
        let long = String(repeating: "d", count: 120) + "/" + String(repeating: "f", count: 90)
        let lh = try ReleaseArchive.header(name: long, size: 0, mode: 0o644, directory: false, mtime: 0, file: "x")
        XCTAssertEqual(String(decoding: lh[345..<465], as: UTF8.self), String(repeating: "d", count: 120), "prefix field")
        XCTAssertThrowsError(try ReleaseArchive.header(name: String(repeating: "x", count: 300), size: 0, mode: 0o644, directory: false, mtime: 0, file: "x"))
        let huge = try ReleaseArchive.header(name: "b/m", size: 9 << 30, mode: 0o644, directory: false, mtime: 0, file: "x")
        XCTAssertEqual(huge[124], 0x80, "sizes of 8 GiB and more use base-256")
    }

    func testVerifyPassesOnAFolderAndItsArchive() throws {
        let dir = try makeBundle("good")
        _ = try archive(dir, to: scratch + "/good.tar.zst")
        for path in [dir, scratch + "/good.tar.zst"] {
            let report = try BundleVerifier.verify(path: path, progress: .silent)
            XCTAssertTrue(report.passed, report.text)
            XCTAssertEqual(report.checks.map(\.name), ["manifest", "config", "tensors", "NaN/Inf", "tokenizer", "wrapper", "model card", "training metadata"])
        }
    }

    /// Copies the good bundle, damages it with `damage`, and returns the problems verify reports for the
    /// folder and for an archive of it (which must agree).
    func problems(_ label: String, _ damage: (String) throws -> Void) throws -> [String] {
        let dir = try makeBundle("damaged-" + label)
        try damage(dir)
        let fromFolder = try BundleVerifier.verify(path: dir, progress: .silent).problems
        _ = try archive(dir, to: scratch + "/\(label).tar.zst")
        let fromArchive = try BundleVerifier.verify(path: scratch + "/\(label).tar.zst", progress: .silent).problems
        XCTAssertEqual(fromFolder.map { $0.replacingOccurrences(of: dir, with: "") }, fromArchive.map { $0.replacingOccurrences(of: scratch + "/\(label).tar.zst", with: "") }, label)
        return fromFolder
    }

    func testVerifyNamesEachKindOfDamage() throws {
        // One flipped bit in the weights: digest mismatch named.
        var p = try problems("bitflip") { dir in
            let fd = open(dir + "/model.safetensors", O_RDWR)
            defer { close(fd) }
            var b: UInt8 = 0
            pread(fd, &b, 1, 5000)
            b ^= 1
            pwrite(fd, &b, 1, 5000)
        }
        XCTAssertEqual(p.count, 1, "\(p)")
        XCTAssertTrue(p[0].contains("model.safetensors has SHA-256"), "\(p)")

        // A NaN written into a weight (and the manifest updated to match): the NaN check names the tensor.
        p = try problems("nan") { dir in
            let st = try SafetensorsFile(path: dir + "/model.safetensors")
            let e = try st.entry(named: "model.ln_f.weight")
            let offset = st.header.dataStart + e.dataRange.lowerBound + 8
            let fd = open(dir + "/model.safetensors", O_RDWR)
            var nan = Float.nan.bitPattern.littleEndian
            pwrite(fd, &nan, 4, off_t(offset))
            close(fd)
            try Self.rewriteManifest(dir)
        }
        XCTAssertEqual(p, ["NaN/Inf: tensor \"model.ln_f.weight\" holds 1 NaN/Inf value(s)"])

        // config.json claiming another layer count than the tensors.
        p = try problems("config") { try Self.editConfig($0, "\"num_hidden_layers\": 2", "\"num_hidden_layers\": 3") }
        XCTAssertTrue(p.contains { $0.contains("num_hidden_layers is 3 in config.json but 2 in the tensor shapes") }, "\(p)")

        // A file removed, a file added.
        p = try problems("files") { dir in
            unlink(dir + "/special_tokens_map.json")
            try writeText("x", to: dir + "/notes.txt")
        }
        XCTAssertTrue(p.contains("manifest: special_tokens_map.json is listed but missing"), "\(p)")
        XCTAssertTrue(p.contains("manifest: notes.txt is in the bundle but not in the manifest"), "\(p)")

        // The tie alias dropped from the safetensors metadata.
        p = try problems("alias") { dir in
            let st = try SafetensorsFile(path: dir + "/model.safetensors")
            let tensors = try st.tensorNames.map { (name: $0, tensor: try st.tensor(named: $0)) }
            try SafetensorsWriter.write(tensors, metadata: [:], to: dir + "/model.safetensors")
            try Self.rewriteManifest(dir)
        }
        XCTAssertEqual(p, ["tensors: __metadata__ does not record model.lm_head.weight → model.token_embedding.weight"])

        // A tokenizer whose eos disagrees with config.json.
        p = try problems("tokenizer") { try Self.editConfig($0, "\"eos_token_id\": 2", "\"eos_token_id\": 3") }
        XCTAssertTrue(p.contains { $0.contains("tokenizer:") && $0.contains("eos_token_id is 2 in the tokenizer but 3 in config.json") }, "\(p)")
    }

    func testDamagedArchivesAreUnreadable() throws {
        let dir = try makeBundle("src")
        _ = try archive(dir, to: scratch + "/a.tar.zst")
        let bytes = try Array(Data(contentsOf: URL(fileURLWithPath: scratch + "/a.tar.zst")))
        try Data(bytes.prefix(bytes.count / 2)).write(to: URL(fileURLWithPath: scratch + "/truncated.tar.zst"))
        XCTAssertThrowsError(try BundleVerifier.verify(path: scratch + "/truncated.tar.zst", progress: .silent)) {
            XCTAssertEqual($0 as? ArchiveError, .zstdTruncated(file: scratch + "/truncated.tar.zst"))
        }
        var corrupt = bytes
        corrupt[bytes.count - 6] ^= 0xFF  // inside the zstd content checksum
        try Data(corrupt).write(to: URL(fileURLWithPath: scratch + "/corrupt.tar.zst"))
        XCTAssertThrowsError(try BundleVerifier.verify(path: scratch + "/corrupt.tar.zst", progress: .silent)) {
            guard case let .zstd(file, _)? = $0 as? ArchiveError else { return XCTFail("\($0)") }
            XCTAssertEqual(file, scratch + "/corrupt.tar.zst")
        }
    }

    func testTarEntriesEscapingTheFolderAreRefused() throws {
        final class Collect: ArchiveReader.Visitor {
            func begin(name: String, size: Int) throws {}
            func data(_ bytes: UnsafeRawBufferPointer) throws {}
            func end() throws {}
        }
        for bad in ["a/../../etc/passwd", "/abs/file", "a/b/c/d", "a/x\nb"] {
            var tar = try ReleaseArchive.header(name: "a/", size: 0, mode: 0o755, directory: true, mtime: 0, file: "t")
            tar += try ReleaseArchive.header(name: bad, size: 0, mode: 0o644, directory: false, mtime: 0, file: "t")
            tar += [UInt8](repeating: 0, count: 1024)
            var parser = TarParser(file: "t", visitor: Collect())
            if bad.contains("\n") {
                XCTAssertNoThrow(try tar.withUnsafeBytes { try parser.feed($0) }, "a newline is odd but not an escape")
            } else {
                XCTAssertThrowsError(try tar.withUnsafeBytes { try parser.feed($0) }, bad)
            }
        }
    }

    func testTokenizerChecks() throws {
        let valid = try TokenizerFiles(directory: TestSupport.fixture("tokenizer/valid"))
        let expected = try TestSupport.loadJSON(TestSupport.fixture("tokenizer/valid.json"))
        XCTAssertEqual(valid.vocabularySize, expected["vocab_size"]?.intValue)
        XCTAssertEqual(valid.specialIDs, ["bos": 1, "eos": 2, "pad": 5, "mask": 62])
        XCTAssertEqual(valid.files, ["tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"])
        let table = try XCTUnwrap(TestSupport.loadJSON(TestSupport.fixture("tokenizer/hostile.json")).members)
        let cases = [
            "bos_id_moved": "TokenizerError.decoderDisagrees", "eos_disagrees": "TokenizerError.specialTokenConflict",
            "mask_unknown": "TokenizerError.specialTokenConflict", "truncated_json": "BundleError.invalidJSON",
            "vocab_too_large": "TokenizerError.vocabularyTooLarge",
        ]
        XCTAssertEqual(Set(table.map(\.key)), Set(cases.keys))
        for row in table {
            let dir = TestSupport.fixture("tokenizer/hostile/" + row.key)
            XCTAssertThrowsError(try ReleaseModel(path: TestSupport.fixture("torch/valid/training_dict.pt"), tokenizer: try TokenizerFiles(directory: dir)), row.key) {
                XCTAssertEqual(TestSupport.caseName($0), cases[row.key], row.key)
            }
        }
    }

    /// Replaces `old` by `new` in config.json and updates the manifest to match.
    static func editConfig(_ dir: String, _ old: String, _ new: String) throws {
        let text = try String(contentsOfFile: dir + "/config.json", encoding: .utf8)
        XCTAssertTrue(text.contains(old))
        try writeText(text.replacingOccurrences(of: old, with: new), to: dir + "/config.json")
        try rewriteManifest(dir)
    }

    /// Recomputes manifest.json's file list after a deliberate edit (so only the edit's own check fails).
    static func rewriteManifest(_ dir: String) throws {
        let manifest = try TestSupport.loadJSON(dir + "/manifest.json")
        var members = manifest.members!
        let files = try BundleFolder.files(dir).filter { $0 != "manifest.json" }.map { name -> JSONValue in
            .object([.init("path", .string(name)), .init("size", .int(try MappedFile(path: dir + "/" + name).count)),
                     .init("sha256", .string(try SHA256.hex(ofFile: dir + "/" + name)))])
        }
        members[members.firstIndex { $0.key == "files" }!].value = .array(files)
        try writeText(JSONValue.object(members).serialized(pretty: true) + "\n", to: dir + "/manifest.json")
    }

    /// An archive that unpacks past 8 × its size + 256 MiB is refused as it unpacks (nothing left in TMPDIR).
    func testDecompressionBombArchivesAreRefusedWhileUnpacking() throws {
        let dir = try TestSupport.temporaryDirectory()
        defer { removeTree(dir) }
        try FileManager.default.createDirectory(atPath: dir + "/bomb", withIntermediateDirectories: false)
        let zeros = FileHandle(forWritingAtPath: dir + "/bomb/model.safetensors") ?? {
            _ = FileManager.default.createFile(atPath: dir + "/bomb/model.safetensors", contents: nil)
            return FileHandle(forWritingAtPath: dir + "/bomb/model.safetensors")!
        }()
        let block = Data(count: 1 << 20)
        for _ in 0..<300 { zeros.write(block) }
        zeros.closeFile()
        let pack = try TestSupport.run("/bin/sh", ["-c", "cd '\(dir)' && tar cf - bomb | zstd -q -o bomb.tar.zst"])
        XCTAssertEqual(pack.status, 0, pack.stderr)
        let size = try fileSize(dir + "/bomb.tar.zst")
        XCTAssertLessThan(size, 1 << 20, "300 MiB of zeros compress to almost nothing")
        let tmp = dir + "/tmp"
        try FileManager.default.createDirectory(atPath: tmp, withIntermediateDirectories: false)
        setenv("TMPDIR", tmp, 1)
        defer { unsetenv("TMPDIR") }
        XCTAssertThrowsError(try ExtractedArchive(dir + "/bomb.tar.zst")) {
            XCTAssertEqual($0 as? ArchiveError, .bomb(file: dir + "/bomb.tar.zst", limit: ArchiveReader.expansionLimit(archiveSize: size)))
        }
        XCTAssertEqual(try directoryEntries(tmp), [], "the extraction folder is gone")
        XCTAssertEqual(ArchiveReader.expansionLimit(archiveSize: 1 << 30), 8 << 30 + 256 << 20)
    }
}

extension String {
    func leftPadded(_ width: Int) -> String { String(repeating: "0", count: max(0, width - count)) + self }

}
