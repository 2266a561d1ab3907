import ArapackFormats
import ArapackRelease
import ArgumentParser

/// `arapack verify BUNDLE [--parity --against SRC] [--golden FILE] [--report FILE.json]`.
struct VerifyCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "verify",
        abstract: "Check a release bundle (folder or .tar.zst), GGUF file or release set against its manifest, the model family and, with --parity, its source.",
        discussion: """
            Structural checks, reading every byte once: each file's size and SHA-256 against manifest.json, no \
            file missing or unlisted; config.json complete and consistent with the tensor shapes; every tensor \
            present with its shape and nothing else; the tie (no stored LM head and the alias recorded when \
            tie_word_embeddings is true); dtype agreeing across manifest, config and tensors; no NaN or Inf; the \
            tokenizer's special ids and vocabulary agreeing with config.json; training_metadata.json present. \
            An archive is read as a stream and never unpacked to disk. A GGUF file (from --to gguf) is parsed \
            strictly, then checked: its gpt2 metadata against the tensors, the tie stored once, tensor types, NaN/Inf, \
            and its tokenizer (tokens for every embedding row, token types, special ids, merges or scores).

            A release set (a folder holding release.json, from arapack release) is checked whole: release.json \
            read strictly; every file it lists present as a regular file with its size and SHA-256, and nothing \
            unlisted; then every artifact and archive as verify checks it alone, each check named after it \
            (NAME: manifest, …). With --signature DST/release.json.sig --public-key PUB.pem, release.json's \
            signature is checked first. --parity and --golden take one artifact (DST/NAME).

            --signature SIG --public-key PUB.pem also checks an OpenSSF model-signing signature (key mode) of the \
            folder, made by arapack sign or by model_signing sign key: the signature verifies under PUB.pem and \
            the folder holds exactly the signed files with the signed SHA-256s (each difference named). When the \
            signed statement carries arapack's provenance (source SHA-256, arapack version, options, parity \
            result), it is printed and checked against manifest.json.

            --parity --against SRC runs the reference forward pass (float32; the same bits on every machine, \
            batch and thread count: see ARAPACK_ISA in arapack --help) of the bundle and of SRC \
            on --probes sequences of --seq-len ids drawn from --seed, and compares the logits: max |Δlogit|, \
            NMSE, mean and max KL(SRC ‖ bundle), top-1 agreement, perplexity of each side. A bundle in the \
            source's dtype must be bit-identical (a failure names the tensors that differ); bf16 and f16 bundles \
            have default limits that --max-mean-kl / --min-top1 override. --golden FILE compares against \
            logits computed elsewhere (ids I64 [N, L], logits F32 [N, L, V]) within --tolerance. Parity compares \
            models that compute the same function (sizes, activation, eps, causality, tie), whatever their \
            training-only settings (a GPT-2 export's dropout is 0).

            Exit status: 0 all checks passed; 1 a check or parity failed (each failure named); 2 the bundle or \
            source could not be read; 64 usage error.
            """
    )

    @Argument(help: "The bundle folder or its .tar.zst archive, a GGUF file, or a release set's folder.")
    var bundle: String

    @Flag(help: "Also compare the bundle's logits with --against SRC.")
    var parity = false

    @Option(help: "The checkpoint (any form) the bundle was made from, for --parity.")
    var against: String?

    @Option(help: "Golden logits (safetensors with ids and logits) to compare the bundle's against.")
    var golden: String?

    @Option(help: "Absolute tolerance on logits for --golden.")
    var tolerance = 1e-4

    @OptionGroup var parityOptions: ParityOptions

    @Option(help: "Also write the results as JSON (Schemas/verify-report.schema.json), whether the checks pass or fail; '-' is standard output. A link is written through, a FIFO or device written in order.")
    var report: String?

    @Flag(help: "Print the JSON report (Schemas/verify-report.schema.json) on standard output instead of the text.")
    var json = false

    @Option(help: "An OpenSSF model-signing signature of the bundle folder to check (with --public-key): made by arapack sign or by model_signing sign key.")
    var signature: String?

    @Option(help: "The EC P-256 public key (PEM) the signature must verify under.")
    var publicKey: String?

    @Flag(help: "No progress line.")
    var quiet = false

    func validate() throws {
        if parity && against == nil { throw ValidationError("--parity needs --against SRC (the checkpoint the bundle was made from)") }
        if against != nil && !parity { throw ValidationError("--against applies to --parity") }
        if (signature == nil) != (publicKey == nil) { throw ValidationError("--signature and --public-key go together") }
        if signature != nil && bundle.hasSuffix(".tar.zst") { throw ValidationError("--signature checks a bundle folder; unpack the archive first") }
        if !(tolerance >= 0) { throw ValidationError("--tolerance must be a non-negative number") }
    }

    func run() throws {
        let progress = Progress(enabled: !quiet && Progress.standardErrorIsTerminal)
        try runReportingErrors("verify") {
            var request = VerificationRequest(path: bundle)
            if let signature, let publicKey { request.signature = (signature, publicKey) }
            if let against { request.parity = (parityOptions.request, against) }
            if let golden { request.golden = (golden, parityOptions.maxAbsDiff ?? tolerance) }
            let result = try request.run(progress: progress)
            let document = result.json.serialized(pretty: true) + "\n"
            if json || report == NamedOutput.standardOutput { print(document, terminator: "") } else { print(result.text) }
            if let report, report != NamedOutput.standardOutput { try NamedOutput.write(document, to: report) }
            if let first = result.failures.first {
                printError("arapack verify: \(bundle): \(first)" + (result.failures.count > 1 ? " (and \(result.failures.count - 1) more)" : ""))
                throw ExitStatus.verificationFailed
            }
        }
    }
}
