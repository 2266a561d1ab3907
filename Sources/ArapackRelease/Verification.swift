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
    /// that differs from the signed statement throws `SignatureMismatch` before any parser runs.
    public func run(progress: Progress) throws -> Verification {
        var signed: (contents: ModelSignature.Contents, publicKey: String)?
        if let signature {
            let key = try ECDSAKey.publicKey(path: signature.publicKey)
            signed = (try ModelSignature.verify(folder: path, signaturePath: signature.path, key: key), signature.publicKey)
        }
        let inside = signature.flatMap { ModelSignature.relativeName(of: $0.path, inside: path) }
        var result = Verification(path: path, structural: try ReleaseForms.reading(path).verify(path: path, signature: inside, progress: progress))
        if let signed {
            result.signature = signed
            if let recorded = signed.contents.provenance {
                result.provenanceProblems = try ModelSignature.provenanceProblems(recorded, folder: path).map { "provenance: " + $0 }
            }
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

/// What `arapack verify` found, as text for the terminal or JSON for `--report` (Schemas/verify-report.schema.json).
public struct Verification {
    public var path: String
    public var structural: VerifyReport
    /// The authenticated signature and the key it verified under.
    public var signature: (contents: ModelSignature.Contents, publicKey: String)?
    public var provenanceProblems: [String] = []
    public var parity: [ParityReport] = []

    init(path: String, structural: VerifyReport) {
        self.path = path
        self.structural = structural
    }

    /// Every failure, one line each (structure, provenance, parity).
    public var failures: [String] {
        structural.problems + provenanceProblems + parity.flatMap { r in
            r.failures.map { "parity against \(r.referenceKind): \($0)" + (r.differingTensors.isEmpty ? "" : " (differs: \(r.differingTensors.joined(separator: ", ")))") }
        }
    }

    public var passed: Bool { failures.isEmpty }

    /// The report as printed.
    public var text: String {
        var lines = [structural.text]
        if let signature {
            lines.append("\nok    signature: \(signature.contents.resources.count) files of \(signature.contents.modelName.escapingControlCharacters) signed under \(signature.publicKey)")
            if let recorded = signature.contents.provenance {
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
    enum CodingKeys: String, CodingKey { case bundle, arapackVersion = "arapack_version", structural, parity, passed }
    enum StructuralKeys: String, CodingKey { case passed, checks }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(path, forKey: .bundle)
        try c.encode(arapackVersion, forKey: .arapackVersion)
        var s = c.nestedContainer(keyedBy: StructuralKeys.self, forKey: .structural)
        try s.encode(structural.passed, forKey: .passed)
        try s.encode(structural.checks, forKey: .checks)
        try c.encode(parity, forKey: .parity)
        try c.encode(structural.passed && parity.allSatisfy(\.passed), forKey: .passed)
    }
}

extension VerifyReport.Check: Encodable {
    enum CodingKeys: String, CodingKey { case name, passed, problems }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(name, forKey: .name)
        try c.encode(ok, forKey: .passed)
        try c.encode(problems, forKey: .problems)
    }
}
