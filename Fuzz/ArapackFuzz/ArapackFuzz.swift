import ArapackFormats
import ArapackModel
import ArapackRelease
import ArapackTensor
import Foundation
#if canImport(Glibc)
import Glibc
#endif

// Fuzz targets for the parsers that read strangers' files. Built two ways:
// - by scripts/fuzz.sh with libFuzzer and AddressSanitizer (`-sanitize=fuzzer,address -parse-as-library
//   -D FUZZING`): libFuzzer drives `LLVMFuzzerTestOneInput`; ARAPACK_FUZZ_TARGET picks the parser;
// - by a normal `swift build` (with `Replay` as @main): `arapack-fuzz TARGET FILE...` replays files (a corpus, a crash) through
//   the same code once each, so every finding can be re-run without the fuzzer.
// A target must never crash, hang or allocate without bound; throwing (refusing the input) is fine.

enum FuzzTarget: String, CaseIterable {
    case safetensors, zip, pickle, dcp, json, tokenizer, torch, tar, signature, config, gguf
    /// Token shards: the input's first byte picks the form (even: a .npy file; odd: a Megatron .idx beside a fixed
    /// 4 KiB .bin), the rest is the file; every sequence is then read against a large vocabulary.
    case tokens
    /// A release plan (TOML), parsed and printed back; the printed plan must parse to the same plan.
    case plan
    /// A training log (CSV, or JSON lines when it starts with `{`), read as a file and drawn as the four plots.
    case traininglog
    /// A release set's release.json, decoded and checked as `verify DST` checks it before opening any file; one that
    /// passes keeps every path inside DST, and prints back to the same list.
    case release
    /// A valid bundle (ARAPACK_FUZZ_BUNDLE, default the example setup.sh makes) with one JSON file replaced:
    /// the input's first byte picks the file, the rest is its content.
    case bundle
    /// Pickles built from a short program: (opcode, count) pairs, each opcode repeated up to 4,096 times, so
    /// a few bytes reach nesting thousands deep that a 16 KB raw input cannot. Each input runs on a thread
    /// with a 512 KiB stack (1/16 of the main thread's 8 MiB): recursion whose depth the file controls
    /// overflows it at ~4,096 levels (8,192 measured on 1 MiB), while the library's bounded recursion
    /// (1,000-deep tuples, ~260 KiB under AddressSanitizer) fits. Programs reach twice that overflow depth and
    /// no more: a quarter of the 64 KiB programs' work, about a thousand inputs a second under ASan.
    case deepPickle = "deep-pickle"
}

/// The bundle target's snapshots: every file of the seed bundle read once; one snapshot per replaceable JSON
/// file, holding every other file already fed and parsed, so an input costs the checks, not re-reading the
/// bundle's other JSON files.
enum BundleSeed {
    static let replaceable = ["config.json", "generation_config.json", "manifest.json", "tokenizer.json", "tokenizer_config.json",
                              "special_tokens_map.json", "training_metadata.json"]
    static let snapshots: [BundleSnapshot] = {
        let folder = getenv("ARAPACK_FUZZ_BUNDLE").map { String(cString: $0) } ?? ".build/example/arafusion-tiny"
        guard let names = try? BundleFolder.files(folder), names.contains("manifest.json") else {
            print("the bundle target needs a bundle folder: ARAPACK_FUZZ_BUNDLE (default \(folder), which setup.sh makes)")
            exit(64)
        }
        let files = names.map { name in (name: name, bytes: (try? MappedFile(path: folder + "/" + name).withUnsafeBytes { Array($0) }) ?? []) }
        return replaceable.map { replaced in
            guard let s = try? BundleSnapshot(path: "fuzz-bundle", files: files, replaceable: [replaced]) else { exit(64) }
            return s
        }
    }()
}

/// Expands (opcode, 12-bit count) triples into a protocol-2 pickle of at most 16 KiB: up to 8,000 levels
/// of nested lists, twice what overflows the small stack when walked by recursion.
func deepPickle(_ bytes: UnsafeRawBufferPointer) -> [UInt8] {
    var program: [UInt8] = [0x80, 0x02]
    var i = 0
    while i + 2 < bytes.count, program.count < 16 << 10 {
        program += repeatElement(bytes[i], count: (Int(bytes[i + 1] & 0x0F) << 8 | Int(bytes[i + 2])) + 1)
        i += 3
    }
    program.append(0x2e)
    return program
}

/// The stack the deep-pickle target runs on (see `FuzzTarget.deepPickle`).
let smallStackBytes = 512 << 10

/// Runs `body` on a new thread with a `smallStackBytes` stack and waits for it.
func onSmallStack(_ body: @escaping () -> Void) {
    final class Box { let body: () -> Void; init(_ b: @escaping () -> Void) { body = b } }
    var attributes = pthread_attr_t()
    pthread_attr_init(&attributes)
    defer { pthread_attr_destroy(&attributes) }
    pthread_attr_setstacksize(&attributes, smallStackBytes)
    var thread = pthread_t()
    let box = Unmanaged.passRetained(Box(body)).toOpaque()
    guard pthread_create(&thread, &attributes, { raw in
        Unmanaged<Box>.fromOpaque(raw!).takeRetainedValue().body()
        return nil
    }, box) == 0 else { fatalError("pthread_create failed") }
    pthread_join(thread, nil)
}

/// DEFLATE entries inflate up to 64 KiB here (1 GiB by default): a 1 KB input can declare and inflate to
/// a megabyte, which would slow fuzzing tenfold without reaching other code; the limit path is still hit.
let fuzzInflateLimit = 64 << 10

/// The union of arapack's allow-lists (checkpoint and DCP), built once.
let everyAllowList = TorchGlobals.checkpointAllowList.union(DCPGlobals.allowList)

/// Where the tokens target writes each input as a file (the readers map files by path).
let tokenScratch: String = {
    let dir = (getenv("TMPDIR").map { String(cString: $0) } ?? "/tmp") + "/arapack-fuzz-tokens"
    mkdir(dir, 0o755)
    return dir
}()

/// Runs one input through one parser; errors are the expected outcome for most inputs.
func exercise(_ target: FuzzTarget, _ bytes: UnsafeRawBufferPointer) {
    switch target {
    case .tokens:
        guard let first = bytes.first else { return }
        let rest = UnsafeRawBufferPointer(rebasing: bytes.dropFirst())
        let base = tokenScratch + "/shard-\(getpid())"
        let path = first % 2 == 0 ? base + ".npy" : base + ".idx"
        guard (try? writeBytes(Array(rest), to: path)) != nil else { return }
        if first % 2 == 1, !pathExists(base + ".bin") { _ = try? writeBytes([UInt8](repeating: 1, count: 4096), to: base + ".bin") }
        if let shards = try? TokenShards(path: path, rawDType: nil, sequenceLength: 32) {
            for s in shards.sequences.prefix(4096) { _ = try? shards.ids(of: s, vocabulary: 1 << 20) }
        }
    case .release:
        guard let json = try? JSONParser.parse(bytes), let (index, problems) = try? ReleaseSetVerifier.indexProblems(json: json) else { return }
        if problems.isEmpty {
            for path in index.artifacts.flatMap({ [$0.name] + $0.files.map(\.path) }) where path.hasPrefix("/") || path.split(separator: "/").contains("..") {
                fatalError("release.json passed its checks with a path outside the set: \(path)")
            }
        }
        guard let again = try? ReleaseSetVerifier.indexProblems(json: JSONParser.parse(Array(index.text.utf8))), again.index == index else {
            fatalError("a release.json printed back does not decode to itself: \(index.text)")
        }
    case .plan:
        let text = String(decoding: bytes, as: UTF8.self)
        if let plan = try? ReleasePlan.parse(text, origin: "fuzz.toml") {
            guard let again = try? ReleasePlan.parse(plan.toml, origin: "fuzz.toml"), again.toml == plan.toml else {
                fatalError("a plan printed back does not parse to itself: \(plan.toml)")
            }
        }
    case .traininglog:
        let path = tokenScratch + "/log-\(getpid()).csv"
        guard (try? writeBytes(Array(bytes), to: path)) != nil else { return }
        if let log = try? TrainingLog(path: path) { _ = TrainingPlots.render(log) }
    case .gguf:
        // The strict reader, every tensor read (Q8_0 dequantized) and scanned, the metadata read as a config and as a tokenizer.
        if let file = try? MappedFile(copying: bytes, label: "fuzz.gguf"), let g = try? GGUFFile(file: file) {
            for name in g.tensorNames { _ = try? g.tensor(named: name).nonFiniteCount() }
            var assembly = ConfigAssembly(source: "fuzz.gguf")
            try? GGUFRelease.describe(g, into: &assembly)
            _ = try? assembly.resolve()
            _ = GGUFVerifier.tokenizerProblems(g, vocab: nil)
            _ = g.metadata.map(\.value.summary)
        }
    case .safetensors:
        // The strict reader, and the streaming scanner verify uses fed in uneven pieces: both must judge the header alike.
        let strict = try? SafetensorsHeader.parse(bytes, fileSize: bytes.count, file: "fuzz")
        let scanner = SafetensorsStreamScanner(file: "fuzz", size: bytes.count)
        var at = 0, piece = 1
        var streamed: SafetensorsHeader?
        do {
            while at < bytes.count {
                let n = min(piece, bytes.count - at)
                try scanner.feed(UnsafeRawBufferPointer(rebasing: bytes[at..<(at + n)]))
                at += n
                piece = piece * 3 % 1021 + 1
            }
            streamed = try scanner.finish()
        } catch {}
        if let strict, streamed == nil || streamed!.entries.map(\.name) != strict.entries.map(\.name) {
            fatalError("the streaming scanner refused or read differently a header the strict reader accepts")
        }
    case .pickle:
        _ = try? PickleMachine.load(bytes, allowed: nil)
        _ = try? PickleMachine.load(bytes, allowed: everyAllowList)
    case .json:
        if let v = try? JSONParser.parse(bytes) { _ = v.serialized(pretty: true) }
    case .tokenizer:
        _ = try? TokenizerFiles(directory: "fuzz", files: ["tokenizer.json", "tokenizer_config.json"]) { name in
            name == "tokenizer.json" ? try JSONParser.parse(bytes) : .object([.init("bos_token", .string("<s>"))])
        }
    case .zip:
        if let file = try? MappedFile(copying: bytes, label: "fuzz.zip"), let zip = try? ZipArchive(file: file, inflateLimit: fuzzInflateLimit) {
            for e in zip.entries.prefix(64) {
                _ = try? zip.storage(of: e.name)
                _ = try? zip.verifyChecksum(of: e.name)
            }
        }
    case .torch:
        if let file = try? MappedFile(copying: bytes, label: "fuzz.pt"), let ckpt = try? TorchCheckpoint(file: file, inflateLimit: fuzzInflateLimit) {
            _ = ckpt.summary
            for name in ckpt.tensorNames.prefix(64) { _ = try? ckpt.tensor(named: name) }
        }
    case .dcp:
        // Every data file the metadata names is taken to hold 1 MiB.
        if let meta = try? MappedFile(copying: bytes, label: ".metadata"),
           let dcp = try? DCPCheckpoint(directory: "fuzz", metadata: meta, fileSize: { _ in 1 << 20 }) {
            for name in dcp.tensorNames.prefix(16) { _ = try? dcp.descriptor(named: name) }
        }
    case .bundle:
        guard let selector = bytes.first else { return }
        let which = Int(selector) % BundleSeed.replaceable.count
        if let report = try? BundleSeed.snapshots[which].verify(with: [(BundleSeed.replaceable[which], Array(bytes.dropFirst()))]) {
            _ = report.text
        }
    case .config:
        // Any JSON as a config of each kind: assembled, resolved, then sized and written as both config.json forms.
        if let json = try? JSONParser.parse(bytes) {
            var assembly = ConfigAssembly(source: "fuzz")
            if (try? assembly.add(json, origin: "fuzz")) != nil, let c = try? assembly.resolve() {
                _ = c.parameterCount
                _ = ModelFamily.expectedShapes(c).count
                for form in ReleaseForms.bundles { _ = form.configJSON(c, torchDtype: "bfloat16", extra: []).serialized() }
                // A causal config written as a GPT2Config reads back as itself (dropouts are written 0).
                var expected = c
                expected.dropout = 0
                var again = ConfigAssembly(source: "fuzz")
                if c.causal, (try? again.add(GPT2Bundle().configJSON(c, torchDtype: "float32", extra: []), origin: "gpt2")) != nil, let back = try? again.resolve(), back != expected {
                    fatalError("GPT2Config round trip changed the config")
                }
            }
        }
    case .deepPickle:
        let program = deepPickle(bytes)
        onSmallStack {
            program.withUnsafeBytes { p in
                if let r = try? PickleMachine.load(p, allowed: everyAllowList), case let .dict(d) = r.value {
                    _ = d.stringKeys.count
                }
            }
        }
    case .signature:
        if let contents = try? ModelSignature.parse(Array(bytes), file: "fuzz.sig") {
            _ = ModelSignature.pae(contents.payload)
            if let p = contents.provenance { _ = ModelSignature.provenanceText(p) }
        }
    case .tar:
        final class Sink: ArchiveReader.Visitor {
            func begin(name: String, size: Int) throws {}
            func data(_ bytes: UnsafeRawBufferPointer) throws {}
            func end() throws {}
        }
        var parser = TarParser(file: "fuzz", visitor: Sink())
        if (try? parser.feed(bytes)) != nil { _ = try? parser.finish() }
    }
}

/// The target libFuzzer runs (static, so initialised on first use, not as main.swift's top-level code).
enum Selected {
    static let target: FuzzTarget = {
        let name = getenv("ARAPACK_FUZZ_TARGET").map { String(cString: $0) } ?? ""
        guard let t = FuzzTarget(rawValue: name) else {
            print("set ARAPACK_FUZZ_TARGET to one of: \(FuzzTarget.allCases.map(\.rawValue).joined(separator: ", "))")
            exit(64)
        }
        return t
    }()
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOne(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    exercise(Selected.target, UnsafeRawBufferPointer(start: data, count: data == nil ? 0 : size))
    return 0
}

#if FUZZING
// SwiftPM links an executable's entry point as `arapack_fuzz_main`; in the fuzz build it hands over to
// libFuzzer's driver.
@_silgen_name("LLVMFuzzerRunDriver")
func LLVMFuzzerRunDriver(_ argc: UnsafeMutablePointer<CInt>, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>,
                         _ callback: @convention(c) (UnsafePointer<UInt8>?, Int) -> CInt) -> CInt

@_cdecl("arapack_fuzz_main")
public func fuzzMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
    var count = argc
    var vector = argv
    return LLVMFuzzerRunDriver(&count, &vector) { data, size in fuzzOne(data, size) }
}
#else
/// Replay mode (normal builds): arapack-fuzz TARGET FILE...
@main
struct Replay {
    static func main() throws {
        let args = CommandLine.arguments
        guard args.count >= 3, let target = FuzzTarget(rawValue: args[1]) else {
            print("usage: arapack-fuzz \(FuzzTarget.allCases.map(\.rawValue).joined(separator: "|")) FILE...")
            exit(64)
        }
        var times: [(Double, String)] = []
        for path in args.dropFirst(2) {
            let file = try MappedFile(path: path)
            let start = DispatchTime.now().uptimeNanoseconds
            file.withUnsafeBytes { exercise(target, $0) }
            times.append((Double(DispatchTime.now().uptimeNanoseconds - start) / 1e6, path))
        }
        print("replayed \(args.count - 2) input(s) through \(target.rawValue)")
        // The slowest inputs, which set the fuzzing rate.
        for (ms, path) in times.sorted(by: { $0.0 > $1.0 }).prefix(3) where times.count > 1 {
            print("  \(String(format: "%.3f", ms)) ms  \(path)")
        }
    }
}
#endif
