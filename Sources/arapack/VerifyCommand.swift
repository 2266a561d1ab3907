import ArapackFormats
import ArapackRelease
import ArgumentParser

/// `arapack verify BUNDLE`.
struct VerifyCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "verify",
        abstract: "Check a release bundle (folder or .tar.zst) against its manifest and the model family.",
        discussion: """
            Checks, reading every byte once: each file's size and SHA-256 against manifest.json, no file missing \
            or unlisted; config.json complete and consistent with the tensor shapes; every tensor present with \
            its shape and nothing else; the tie (no stored LM head and the alias recorded when \
            tie_word_embeddings is true); dtype agreeing across manifest, config and tensors; no NaN or Inf; the \
            tokenizer's special ids and vocabulary agreeing with config.json; training_metadata.json present. \
            An archive is read as a stream and never unpacked to disk.

            Exit status: 0 all checks passed; 1 a check failed (each failure named); 2 the bundle could not be read.
            """
    )

    @Argument(help: "The bundle folder or its .tar.zst archive.")
    var bundle: String

    @Flag(help: "No progress line.")
    var quiet = false

    func run() throws {
        let progress = Progress(enabled: !quiet && Progress.standardErrorIsTerminal)
        try runReportingErrors("verify") {
            let report = try BundleVerifier.verify(path: bundle, progress: progress)
            print(report.text)
            if let first = report.problems.first {
                printError("arapack verify: \(bundle): \(first)" + (report.problems.count > 1 ? " (and \(report.problems.count - 1) more)" : ""))
                throw ExitStatus.verificationFailed
            }
        }
    }
}
