import ArapackFormats
import ArapackRelease
import ArgumentParser

/// `arapack sign BUNDLE --key KEY.pem`.
struct SignCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sign",
        abstract: "Sign a bundle folder or GGUF file in the OpenSSF model-signing format (key mode) with an EC P-256 key.",
        discussion: """
            Writes a Sigstore bundle (application/vnd.dev.sigstore.bundle.v0.3+json) holding a DSSE envelope over \
            an in-toto statement that lists every file of the folder with its SHA-256, as the model-signing \
            package (v1.x) does: `model_signing verify key BUNDLE --signature SIG --public_key PUB.pem` accepts it, \
            and `arapack verify BUNDLE --signature SIG --public-key PUB.pem` checks it. Left out of what is signed, \
            as model_signing leaves them out: the signature file itself and the git paths (.git, .github, \
            .gitattributes, .gitignore); arapack's manifest.json, which the signature covers, still lists \
            .gitattributes with its SHA-256. The statement also carries arapack's provenance (the source's \
            SHA-256, arapack's version, the bundle's dtype and model type from manifest.json). Symlinks and \
            non-regular files are refused. A single file (a GGUF) is signed as model_signing signs one: a single \
            resource named "." and the file's name as the model's; its signature goes to FILE.sig by default. A \
            checkpoint is refused: convert it into a release first. ECDSA nonces are random (OpenSSL 3.0 has no RFC 6979), so signing \
            twice gives two different signatures of the same statement. The key never reaches any output.

            Exit status: 0 signed; 2 the bundle or key could not be used; 64 usage error.
            """
    )

    @Argument(help: "The bundle folder or GGUF file to sign.")
    var bundle: String

    @Option(help: "The EC P-256 private key (PEM, PKCS#8 or SEC1, encrypted or not).")
    var key: String

    @OptionGroup var keyOptions: SigningKeyOptions

    @Option(help: "Where to write the signature (default: BUNDLE/model.sig for a folder, FILE.sig for a GGUF file; '-' is standard output). A link is written through.")
    var signature: String?

    @Flag(help: "Print what was signed as JSON (Schemas/sign-result.schema.json).")
    var json = false

    func run() throws {
        try runReportingErrors("sign") {
            let folder = trimmingTrailingSlashes(bundle)
            let form = try ReleaseForms.reading(folder)
            let path = signature ?? ModelSignature.defaultSignaturePath(of: folder)
            let isBundle = form is any BundleForm
            let signed = try ModelSignature.sign(folder: folder, key: try keyOptions.load(key), signaturePath: path,
                                                 provenance: isBundle ? try ModelSignature.provenance(folder: folder, options: nil, parity: nil) : nil)
            let what = isBundle ? "\(signed.count) files of \(folder)" : folder
            if json {
                print(SignResult(release: folder, signature: path, files: signed.map(\.name)).json.serialized(pretty: true))
            } else {
                print("signed \(what): \(path) (ECDSA P-256, SHA-256)")
            }
        }
    }
}

/// The key's password option `sign` and `convert --sign` share, and how the key is loaded.
struct SigningKeyOptions: ParsableArguments {
    @Option(help: "A file holding the password of an encrypted key (its first line is the password).")
    var keyPasswordFile: String?

    /// The private key at `path` (PEM, PKCS#8 or SEC1), decrypted with the password file's first line when given.
    func load(_ path: String) throws -> ECDSAKey {
        try ECDSAKey.privateKey(path: path, passwordFile: keyPasswordFile)
    }
}

/// What `sign --json` prints (Schemas/sign-result.schema.json).
struct SignResult: Encodable {
    let release: String
    let signature: String
    /// The signed files' names inside the release ("." for a single file).
    let files: [String]

    var json: JSONValue { try! JSONValueEncoder().encode(self) }
}
