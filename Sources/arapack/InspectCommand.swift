import ArgumentParser
import ArapackFormats

/// `arapack inspect SRC [--json] [--check-data]`.
struct InspectCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "inspect",
        abstract: "Describe a checkpoint, safetensors file or sharded index without changing it.",
        discussion: """
            SRC is detected from its content: a .safetensors file, a model.safetensors.index.json, a \
            folder holding either, a torch.save checkpoint, or a torch.distributed.checkpoint (DCP) folder. Headers are validated completely before \
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
            let (report, refusal) = try InspectReport.inspect(path: source, checkData: checkData)
            print(json ? report.json.serialized(pretty: true) : report.text)
            if let refusal { throw refusal }
        }
    }
}
