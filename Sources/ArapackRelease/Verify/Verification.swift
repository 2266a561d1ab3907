import ArapackFormats

/// What `arapack verify` asks for: the bundle (or GGUF file), a signature to authenticate first, parity against a
/// source, golden logits.
public struct VerificationRequest {
    public var path: String
    /// The signature file and the public key it must verify under.
    public var signature: (path: String, publicKey: String)?
    /// Parity against the source at `against`.
    public var parity: (request: ParityRequest, against: String)?
    /// Golden logits and the tolerance on them.
    public var golden: (path: String, tolerance: Double)?

    public init(path: String) { self.path = path }

    /// Runs the request. With a signature, nothing in the bundle is parsed before its bytes are authenticated: a file
    /// that differs from the signed statement ends the run there, with a `Verification` whose signature failed and
    /// whose other checks did not run.
    public func run(progress: Progress) throws -> Verification {
        var result = Verification(path: path)
        // A release set: its signature is release.json's, which holds every other file's SHA-256.
        let releaseSet = ReleaseSetVerifier.isReleaseSet(path)
        if releaseSet && (parity != nil || golden != nil) {
            throw ParityRequest.Problem(description: "\(path) is a release set: parity and golden logits compare one artifact; name it (\(path)/NAME)")
        }
        if let signature {
            let key = try ECDSAKey.publicKey(path: signature.publicKey)
            do {
                let signed = releaseSet ? path + "/" + ReleaseIndex.fileName : path
                let contents = try ModelSignature.verify(folder: signed, signaturePath: signature.path, key: key)
                result.signature = .init(path: signature.path, publicKey: signature.publicKey, contents: contents, problems: [])
            } catch let mismatch as SignatureMismatch {
                result.signature = .init(path: signature.path, publicKey: signature.publicKey, contents: nil, problems: mismatch.problems)
                return result
            }
        }
        if releaseSet {
            result.structural = try ReleaseSetVerifier.verify(path: path, progress: progress)
            return result
        }
        let inside = signature.flatMap { ModelSignature.relativeName(of: $0.path, inside: path) }
        result.structural = try ReleaseForms.reading(path).verify(path: path, signature: inside, progress: progress)
        if let recorded = result.signature?.contents?.provenance {
            result.provenanceProblems = try ModelSignature.provenanceProblems(recorded, folder: path).map { "provenance: " + $0 }
        }
        if parity != nil || golden != nil {
            let model = try ReleaseModel(path: path)
            if let parity {
                result.parity.append(try parity.request.run(bundle: model, source: try ParityRequest.openSource(parity.against, for: model)))
            }
            if let golden {
                result.parity.append(try Parity.golden(bundle: model, goldenPath: golden.path, tolerance: golden.tolerance))
            }
        }
        return result
    }
}

/// What `arapack verify` found, as text for the terminal or JSON for `--report` / `--json`
/// (Schemas/verify-report.schema.json), whether the checks passed or not.
public struct Verification {
    /// A signature check: what was signed (when it verified) or why it failed.
    public struct SignatureCheck {
        public var path: String
        public var publicKey: String
        /// The signed statement, when the signature verified and the files matched it.
        public var contents: ModelSignature.Contents?
        public var problems: [String]
        public var passed: Bool { problems.isEmpty }
    }

    public var path: String
    /// The structural checks; nil when a failed signature stopped the run before any parser read the bundle.
    public var structural: VerifyReport?
    public var signature: SignatureCheck?
    public var provenanceProblems: [String] = []
    public var parity: [ParityReport] = []

    init(path: String) { self.path = path }

    /// Every failure, one line each (signature, structure, provenance, parity).
    public var failures: [String] {
        (signature?.problems.map { "signature: " + $0 } ?? []) + (structural?.problems ?? []) + provenanceProblems + parity.flatMap { r in
            r.failures.map { "parity against \(r.referenceKind): \($0)" + (r.differingTensors.isEmpty ? "" : " (differs: \(r.differingTensors.joined(separator: ", ")))") }
        }
    }

    public var passed: Bool { failures.isEmpty }

    /// The report as printed.
    public var text: String {
        guard let structural else {
            return "verify \(path.escapingControlCharacters)\nFAIL  signature: " + (signature?.problems ?? []).joined(separator: "; ")
                + "\nnothing else was checked: the bundle's files are read only once the signature covers them"
        }
        var lines = [structural.text]
        if let signature, let contents = signature.contents {
            lines.append("\nok    signature: \(contents.resources.count) file\(contents.resources.count == 1 ? "" : "s") of \(contents.modelName.escapingControlCharacters) signed under \(signature.publicKey)")
            if let recorded = contents.provenance {
                lines += ModelSignature.provenanceText(recorded) + provenanceProblems.map { "FAIL  " + $0 }
            } else {
                lines.append("      no arapack provenance in the signed statement")
            }
        }
        lines += parity.map { "\n" + $0.text }
        return lines.joined(separator: "\n")
    }

    /// The `--report` document (Schemas/verify-report.schema.json).
    public var json: JSONValue { try! JSONValueEncoder().encode(self) }
}

extension Verification: Encodable {
    enum CodingKeys: String, CodingKey { case bundle, arapackVersion = "arapack_version", signature, structural, provenance, parity, passed }
    enum StructuralKeys: String, CodingKey { case passed, checks }
    enum SignatureKeys: String, CodingKey { case path, publicKey = "public_key", passed, files, problems }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(path, forKey: .bundle)
        try c.encode(arapackVersion, forKey: .arapackVersion)
        if let signature {
            var s = c.nestedContainer(keyedBy: SignatureKeys.self, forKey: .signature)
            try s.encode(signature.path, forKey: .path)
            try s.encode(signature.publicKey, forKey: .publicKey)
            try s.encode(signature.passed, forKey: .passed)
            try s.encodeOrNull(signature.contents?.resources.count, forKey: .files)
            try s.encode(signature.problems, forKey: .problems)
        } else {
            try c.encodeNil(forKey: .signature)
        }
        if let structural {
            var s = c.nestedContainer(keyedBy: StructuralKeys.self, forKey: .structural)
            try s.encode(structural.passed, forKey: .passed)
            try s.encode(structural.checks, forKey: .checks)
        } else {
            try c.encodeNil(forKey: .structural)
        }
        try c.encode(provenanceProblems, forKey: .provenance)
        try c.encode(parity, forKey: .parity)
        try c.encode(passed, forKey: .passed)
    }
}

extension VerifyReport.Check: Encodable {
    enum CodingKeys: String, CodingKey { case name, passed, problems, note }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(name, forKey: .name)
        try c.encode(ok, forKey: .passed)
        try c.encode(problems, forKey: .problems)
        try c.encodeOrNull(note, forKey: .note)
    }
}
