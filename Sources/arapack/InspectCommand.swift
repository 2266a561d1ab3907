import ArgumentParser
import ArapackFormats
import ArapackRelease

/// `arapack inspect SRC [--json] [--check-data]`.
struct InspectCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "inspect",
        abstract: "Describe a checkpoint, safetensors file, sharded index, bundle, bundle archive or GGUF file without changing it.",
        discussion: """
            SRC is detected from its content: a .safetensors file, a model.safetensors.index.json, a \
            folder holding either (a bundle), a bundle archive (.tar.zst, unpacked to a private folder under TMPDIR \
            while it is read), a torch.save checkpoint, a torch.distributed.checkpoint (DCP) folder or a GGUF file \
            (each tensor listed with the type and bytes the file stores). Headers are validated completely before \
            anything is shown. For a checkpoint the report lists its structure (state dict location, step, \
            config, optimizer size, tied tensors) and every global its pickle names, classified safe, \
            unknown or dangerous; a checkpoint naming any global outside the allow-list is listed, then \
            refused (exit 2). Nothing in a pickle is ever executed. \
            --check-data also reads every byte: SHA-256 of each file and NaN/Inf counts per tensor.
            """
    )

    @Argument(help: "The file or folder to inspect.")
    var source: String

    @Flag(name: .long, help: "Print a JSON document (described by Schemas/inspect.schema.json).")
    var json = false

    @Flag(name: .long, help: "Hash every file (SHA-256) and count NaN/Inf values in every floating tensor.")
    var checkData = false

    func run() throws {
        try runReportingErrors("inspect") {
            var (report, refusal): (InspectReport, Error?)
            if try SourceDetection.detect(source).format == .archive {
                // A bundle archive: unpacked to a private folder (removed on exit), described as the bundle it holds.
                let extracted = try ExtractedArchive(source)
                (report, refusal) = try InspectReport.inspect(path: extracted.bundle, checkData: checkData)
                report.path = source
                report.format = "tar.zst, holding " + report.format
                for i in report.files.indices where report.files[i].path.hasPrefix(extracted.bundle + "/") {
                    report.files[i].path = String(report.files[i].path.dropFirst(extracted.bundle.count + 1))
                }
            } else {
                (report, refusal) = try InspectReport.inspect(path: source, checkData: checkData)
            }
            print(json ? report.json.serialized(pretty: true) : report.text)
            // What a GGUF file's tokenizer does otherwise in llama.cpp than in tokenizers (docs/releases.md).
            if !json, try SourceDetection.detect(source).format == .gguf {
                for note in GGUFRelease.tokenizerNotes(try GGUFFile(path: source)) { print("note: tokenizer: " + note) }
            }
            if let refusal { throw refusal }
        }
    }
}
