import ArapackFormats
import ArapackTensor
#if canImport(Glibc)
import Glibc
#endif

/// Why a signature could not be made or read (exit 2): the folder holds what cannot be signed, or the signature
/// file is not an OpenSSF model-signing signature.
public enum SignatureError: Error, Equatable, CustomStringConvertible, Sendable {
    case unsignableFile(path: String, detail: String)
    case malformed(file: String, field: String, detail: String)

    public var description: String {
        switch self {
        case let .unsignableFile(path, detail): return "\(path): \(detail)"
        case let .malformed(file, field, detail): return "\(file): \(field): \(detail)"
        }
    }
}

/// A signature that parses but does not match the bundle (exit 1): each problem names the file or check.
public struct SignatureMismatch: Error, CustomStringConvertible, Sendable {
    public let problems: [String]
    public var description: String { problems.joined(separator: "; ") }
}

/// OpenSSF model signing (the `model-signing` package, v1.x) in its key-based form: a Sigstore bundle
/// (`application/vnd.dev.sigstore.bundle.v0.3+json`) holding a DSSE envelope over an in-toto statement whose
/// predicate (`https://model_signing/signature/v1.0`) lists every file of the model folder with its SHA-256,
/// the subject digest being SHA-256 over those digests in name order. The folder is hashed as `model_signing`
/// hashes it (`files` serialization; `.git`, `.github`, `.gitattributes`, `.gitignore` and the signature
/// itself left out; symlinks refused). arapack adds its provenance to the predicate under `arapack`, a field
/// the format's verifiers ignore: signed with everything else, checked by `arapack verify`.
public enum ModelSignature {
    public static let defaultFileName = "model.sig"
    static let mediaType = "application/vnd.dev.sigstore.bundle.v0.3+json"
    static let payloadType = "application/vnd.in-toto+json"
    static let statementType = "https://in-toto.io/Statement/v1"
    static let predicateType = "https://model_signing/signature/v1.0"
    /// What `model_signing` leaves out by default (its git paths).
    static let ignoredPaths = [".gitattributes", ".git", ".gitignore", ".github"]
    /// Limits on what a signature file may hold.
    static let maximumFileSize = 16 << 20
    static let maximumResources = 100_000
    static let maximumDepth = 16

    /// One signed file: its path relative to the folder (`/`-separated) and SHA-256 (hex).
    public struct Resource: Equatable, Sendable {
        public var name: String
        public var sha256: String
    }

    /// What a signature says, once parsed (not yet verified).
    public struct Contents {
        public var payload: [UInt8]
        public var signature: [UInt8]
        public var keyHint: String?
        public var modelName: String
        public var resources: [Resource]
        public var ignorePaths: [String]
        public var provenance: JSONValue?
    }

    /// Signs the folder `folder` with `key` and writes the signature atomically to `signaturePath` (left out of
    /// what is signed when it lies inside the folder). `name` is the model's name in the statement (the folder's
    /// own name unless it is a temporary that will be renamed); `provenance` joins the predicate. Returns the
    /// files signed.
    @discardableResult
    public static func sign(folder: String, name: String? = nil, key: ECDSAKey, signaturePath: String,
                            provenance: Provenance?) throws -> [Resource] {
        let resources = try hash(folder: folder, ignoring: ignoredPaths, signaturePath: signaturePath)
        let inside = relativeName(of: signaturePath, inside: folder)
        let statement = Self.statement(name: name ?? splitPath(trimmed(folder)).1, resources: resources,
                                       ignoring: ignoredPaths + (inside.map { [$0] } ?? []), provenance: provenance?.json)
        let payload = Array(statement.serialized(pretty: true).utf8)
        let signature = try key.sign(pae(payload))
        let hint = try key.publicKeyPEM().withUnsafeBytes { SHA256.hex(of: $0) }
        let bundle = JSONValue.object([
            .init("mediaType", .string(mediaType)),
            .init("verificationMaterial", .object([
                .init("publicKey", .object([.init("hint", .string(hint))])),
                .init("tlogEntries", .array([])),
            ])),
            .init("dsseEnvelope", .object([
                .init("payload", .string(Base64.encode(payload))),
                .init("payloadType", .string(payloadType)),
                .init("signatures", .array([.object([.init("sig", .string(Base64.encode(signature))), .init("keyid", .string(""))])])),
            ])),
        ])
        try NamedOutput.write(bundle.serialized() + "\n", to: signaturePath)
        return resources
    }

    /// Checks the folder against the signature at `signaturePath` under `key`: the signature verifies, the key
    /// hint names this key, and the folder holds exactly the signed files with the signed digests. Throws
    /// `SignatureError` when the signature cannot be read, `SignatureMismatch` naming every difference.
    public static func verify(folder: String, signaturePath: String, key: ECDSAKey) throws -> Contents {
        let contents = try read(signaturePath)
        let hint = try key.publicKeyPEM().withUnsafeBytes { SHA256.hex(of: $0) }
        if let h = contents.keyHint, h != hint {
            throw SignatureMismatch(problems: ["the signature was made with another key (its key hint \(h), \(key.file) is \(hint))"])
        }
        guard key.verify(contents.signature, of: pae(contents.payload)) else {
            throw SignatureMismatch(problems: ["the signature does not verify under \(key.file): the signed statement was changed or another key signed it"])
        }
        let actual = try hash(folder: folder, ignoring: contents.ignorePaths, signaturePath: signaturePath)
        let signed = Dictionary(contents.resources.map { ($0.name, $0.sha256) }, uniquingKeysWith: { a, _ in a })
        let present = Dictionary(actual.map { ($0.name, $0.sha256) }, uniquingKeysWith: { a, _ in a })
        var problems: [String] = []
        // A signed single file is named "." in the statement; messages name it by its own name.
        let shown = { (name: String) in (name == singleFileName ? splitPath(trimmed(folder)).1 : name).escapingControlCharacters }
        for r in contents.resources {
            guard let digest = present[r.name] else { problems.append("\(shown(r.name)) is signed but missing"); continue }
            if digest != r.sha256 { problems.append("\(shown(r.name)) differs from the signed file (SHA-256 \(digest), signed \(r.sha256))") }
        }
        for r in actual where signed[r.name] == nil { problems.append("\(shown(r.name)) is not covered by the signature (added after signing)") }
        if !problems.isEmpty { throw SignatureMismatch(problems: problems) }
        return contents
    }

    /// Parses a signature file strictly: every field the format requires, with its type, bounded sizes, base64
    /// that is canonical, relative resource names without `..`, unique, and a subject digest that matches them.
    public static func read(_ path: String) throws -> Contents {
        // MappedFile opens without blocking and refuses anything but a regular file (a FIFO is not waited on).
        let file = try MappedFile(path: path)
        guard file.count <= maximumFileSize else {
            throw SignatureError.malformed(file: path, field: "(file)", detail: "\(file.count) bytes; a signature is at most \(maximumFileSize)")
        }
        return try parse(file.withUnsafeBytes { Array($0) }, file: path)
    }

    /// `read` for bytes already in memory (`file` names them in errors).
    public static func parse(_ bytes: [UInt8], file: String) throws -> Contents {
        func bad(_ field: String, _ detail: String) -> SignatureError { .malformed(file: file, field: field, detail: detail) }
        func string(_ v: JSONValue?, _ field: String) throws -> String {
            guard let s = v?.stringValue else { throw bad(field, v == nil ? "missing" : "must be a string, found \(v!.kindName)") }
            return s
        }
        func base64(_ v: JSONValue?, _ field: String) throws -> [UInt8] {
            guard let b = Base64.decode(try string(v, field)) else { throw bad(field, "not canonical base64") }
            return b
        }
        let root: JSONValue
        do { root = try JSONParser.parse(bytes) } catch { throw bad("(file)", "not valid JSON: \(error)") }
        guard root.members != nil else { throw bad("(file)", "must be a JSON object, found \(root.kindName)") }
        let media = try string(root["mediaType"], "mediaType")
        guard media == mediaType else { throw bad("mediaType", "\"\(media.escapingControlCharacters)\" is not \(mediaType)") }
        let hint = try root["verificationMaterial"]?["publicKey"]?["hint"].map { try string($0, "verificationMaterial.publicKey.hint") }
        if let hint, !isHexDigest(hint) { throw bad("verificationMaterial.publicKey.hint", "must be a SHA-256 in lower-case hex") }
        guard let envelope = root["dsseEnvelope"], envelope.members != nil else {
            throw bad("dsseEnvelope", "missing (only DSSE-envelope bundles are model-signing signatures)")
        }
        let type = try string(envelope["payloadType"], "dsseEnvelope.payloadType")
        guard type == payloadType else { throw bad("dsseEnvelope.payloadType", "\"\(type.escapingControlCharacters)\" is not \(payloadType)") }
        let payload = try base64(envelope["payload"], "dsseEnvelope.payload")
        guard let signatures = envelope["signatures"]?.elements, signatures.count == 1 else {
            throw bad("dsseEnvelope.signatures", "must hold exactly one signature")
        }
        let signature = try base64(signatures[0]["sig"], "dsseEnvelope.signatures[0].sig")
        guard (8...256).contains(signature.count) else { throw bad("dsseEnvelope.signatures[0].sig", "\(signature.count) bytes is no ECDSA signature") }

        let statement: JSONValue
        do { statement = try JSONParser.parse(payload) } catch { throw bad("dsseEnvelope.payload", "the statement is not valid JSON: \(error)") }
        guard try string(statement["_type"], "statement._type") == statementType else { throw bad("statement._type", "not \(statementType)") }
        guard try string(statement["predicateType"], "statement.predicateType") == predicateType else {
            throw bad("statement.predicateType", "not \(predicateType)")
        }
        guard let subjects = statement["subject"]?.elements, subjects.count == 1 else { throw bad("statement.subject", "must hold exactly one subject") }
        let modelName = try string(subjects[0]["name"], "statement.subject[0].name")
        let rootDigest = try string(subjects[0]["digest"]?["sha256"], "statement.subject[0].digest.sha256")
        guard isHexDigest(rootDigest) else { throw bad("statement.subject[0].digest.sha256", "must be a SHA-256 in lower-case hex") }
        guard let predicate = statement["predicate"], predicate.members != nil else { throw bad("statement.predicate", "missing") }
        guard let serialization = predicate["serialization"], serialization.members != nil else { throw bad("predicate.serialization", "missing") }
        let method = try string(serialization["method"], "predicate.serialization.method")
        guard method == "files" else { throw bad("predicate.serialization.method", "\"\(method.escapingControlCharacters)\" is not supported (only \"files\")") }
        guard try string(serialization["hash_type"], "predicate.serialization.hash_type") == "sha256" else {
            throw bad("predicate.serialization.hash_type", "only sha256 is supported")
        }
        if let symlinks = serialization["allow_symlinks"], symlinks.boolValue != false {
            throw bad("predicate.serialization.allow_symlinks", "must be false (arapack never follows symlinks)")
        }
        var ignore: [String] = []
        for (i, p) in (serialization["ignore_paths"]?.elements ?? []).enumerated() {
            let path = try string(p, "predicate.serialization.ignore_paths[\(i)]")
            guard isRelativePath(path) else { throw bad("predicate.serialization.ignore_paths[\(i)]", "not a relative path inside the folder") }
            ignore.append(path)
        }
        guard let list = predicate["resources"]?.elements else { throw bad("predicate.resources", "missing") }
        guard list.count <= maximumResources else { throw bad("predicate.resources", "\(list.count) files; at most \(maximumResources)") }
        var resources: [Resource] = []
        var names = Set<String>()
        let digest = SHA256()
        for (i, r) in list.enumerated() {
            let field = "predicate.resources[\(i)]"
            guard try string(r["algorithm"], field + ".algorithm") == "sha256" else { throw bad(field + ".algorithm", "only sha256 is supported") }
            let name = try string(r["name"], field + ".name")
            // A signed single file is one resource named "." (the file relative to itself, as model_signing names it).
            guard isRelativePath(name) || (name == singleFileName && list.count == 1) else {
                throw bad(field + ".name", "\"\(name.escapingControlCharacters)\" is not a relative path inside the folder")
            }
            guard names.insert(name).inserted else { throw bad(field + ".name", "\"\(name.escapingControlCharacters)\" is listed twice") }
            let hex = try string(r["digest"], field + ".digest")
            guard isHexDigest(hex) else { throw bad(field + ".digest", "must be a SHA-256 in lower-case hex") }
            digest.update(hexBytes(hex))
            resources.append(Resource(name: name, sha256: hex))
        }
        guard digest.hexDigest() == rootDigest else {
            throw bad("statement.subject[0].digest.sha256", "does not match the resources' digests (the statement is inconsistent)")
        }
        return Contents(payload: payload, signature: signature, keyHint: hint, modelName: modelName, resources: resources,
                        ignorePaths: ignore, provenance: predicate["arapack"])
    }

    /// The in-toto statement over `resources` (sorted by name, as `model_signing` writes them).
    static func statement(name: String, resources: [Resource], ignoring: [String], provenance: JSONValue?) -> JSONValue {
        let root = SHA256()
        for r in resources { root.update(hexBytes(r.sha256)) }
        var predicate: [JSONValue.Member] = [
            .init("resources", .array(resources.map {
                .object([.init("algorithm", .string("sha256")), .init("digest", .string($0.sha256)), .init("name", .string($0.name))])
            })),
            .init("serialization", .object([
                .init("method", .string("files")),
                .init("ignore_paths", .array(ignoring.map { .string($0) })),
                .init("hash_type", .string("sha256")),
                .init("allow_symlinks", .bool(false)),
            ])),
        ]
        if let provenance { predicate.append(.init("arapack", provenance)) }
        return .object([
            .init("_type", .string(statementType)),
            .init("subject", .array([.object([.init("name", .string(name)), .init("digest", .object([.init("sha256", .string(root.hexDigest()))]))])])),
            .init("predicateType", .string(predicateType)),
            .init("predicate", .object(predicate)),
        ])
    }

    /// DSSE's pre-authentication encoding: `DSSEv1 <len(type)> <type> <len(body)> <body>`.
    public static func pae(_ payload: [UInt8]) -> [UInt8] {
        Array("DSSEv1 \(payloadType.utf8.count) \(payloadType) \(payload.count) ".utf8) + payload
    }

    /// The one resource of a signed single file (a GGUF): the file relative to itself, as model_signing names it.
    static let singleFileName = "."

    /// The signature beside a single file that `sign` writes by default: `FILE.sig`.
    public static func defaultSignaturePath(of path: String) -> String {
        let p = trimmed(path)
        return (try? FileKind(atPath: p)) == .directory ? p + "/" + defaultFileName : p + ".sig"
    }

    /// Every regular file under `folder` (relative `/`-separated names, sorted), with its SHA-256, leaving out
    /// `ignoring` (a path or a folder prefix) and the signature file. Symlinks, FIFOs, devices and sockets are
    /// refused before anything is opened; nesting is bounded.
    static func hash(folder: String, ignoring: [String], signaturePath: String) throws -> [Resource] {
        let root = trimmed(folder)
        switch try FileKind(atPath: root) {
        case .regular: return [Resource(name: singleFileName, sha256: try SHA256.hex(ofFile: root))]
        case .symlink: throw SignatureError.unsignableFile(path: root, detail: "a symlink; signatures cover regular files only")
        case .other: throw SignatureError.unsignableFile(path: root, detail: "not a regular file (a FIFO, device or socket)")
        case .directory: break
        }
        let signatureName = relativeName(of: signaturePath, inside: root)
        var out: [Resource] = []
        func walk(_ relative: String, depth: Int) throws {
            let path = relative.isEmpty ? root : root + "/" + relative
            guard depth <= maximumDepth else { throw SignatureError.unsignableFile(path: path, detail: "folders nested deeper than \(maximumDepth)") }
            for entry in try directoryEntries(path) {
                let name = relative.isEmpty ? entry : relative + "/" + entry
                if name == signatureName || ignoring.contains(where: { name == $0 || name.hasPrefix($0 + "/") }) { continue }
                switch try FileKind(atPath: root + "/" + name) {
                case .directory: try walk(name, depth: depth + 1)
                case .regular: out.append(Resource(name: name, sha256: try SHA256.hex(ofFile: root + "/" + name)))
                case .symlink: throw SignatureError.unsignableFile(path: root + "/" + name, detail: "a symlink; signatures cover regular files only")
                case .other: throw SignatureError.unsignableFile(path: root + "/" + name, detail: "not a regular file (a FIFO, device or socket)")
                }
            }
        }
        try walk("", depth: 0)
        return out.sorted { $0.name.utf8.lexicographicallyPrecedes($1.name.utf8) }
    }

    /// `path`'s name relative to `folder` when it lies inside it (compared by real paths), else nil.
    public static func relativeName(of path: String, inside folder: String) -> String? {
        func real(_ p: String) -> String? {
            guard let r = realpath(p, nil) else { return nil }
            defer { free(r) }
            return String(cString: r)
        }
        let (dir, name) = splitPath(trimmed(path))
        guard let base = real(folder), let parent = real(dir.isEmpty ? "." : dir) else { return nil }
        if parent == base { return name }
        return parent.hasPrefix(base + "/") ? String(parent.dropFirst(base.count + 1)) + "/" + name : nil
    }

    /// arapack's provenance for the bundle in `folder`, from its manifest.json on disk (`arapack sign` of an existing
    /// bundle; a conversion builds it from the manifest it holds).
    public static func provenance(folder: String, options: Provenance.Options?, parity: ParitySummary?) throws -> Provenance {
        let path = trimmed(folder) + "/" + Manifest.fileName
        return Provenance(manifest: try Manifest(path: path), manifestSHA256: try SHA256.hex(ofFile: path), options: options, parity: parity)
    }

    /// Where a signed provenance disagrees with the bundle's manifest.json (which the signature also covers).
    public static func provenanceProblems(_ recorded: JSONValue, folder: String) throws -> [String] {
        let path = trimmed(folder) + "/" + Manifest.fileName
        guard pathExists(path) else { return ["the provenance describes a bundle, but there is no manifest.json"] }
        guard let provenance = Provenance(json: recorded) else { return ["the provenance is not in the form arapack writes"] }
        return provenance.problems(against: try Manifest(path: path), manifestSHA256: try SHA256.hex(ofFile: path))
    }

    /// The provenance as lines for `verify` (names from the file escaped).
    public static func provenanceText(_ recorded: JSONValue) -> [String] {
        Provenance(json: recorded)?.lines
            ?? ["provenance  recorded, but not in the form arapack writes: " + String(recorded.serialized().prefix(200)).escapingControlCharacters]
    }

    static func trimmed(_ path: String) -> String {
        var p = trimmingTrailingSlashes(path)
        while p.hasPrefix("./") && p.count > 2 { p.removeFirst(2) }
        return p
    }

    static func isRelativePath(_ p: String) -> Bool {
        !p.isEmpty && p.utf8.count <= 4096 && !p.hasPrefix("/") && !p.unicodeScalars.contains { $0.value < 0x20 || $0 == "\\" }
            && p.split(separator: "/", omittingEmptySubsequences: false).allSatisfy { !$0.isEmpty && $0 != ".." && $0 != "." }
    }

    static func isHexDigest(_ s: String) -> Bool {
        s.utf8.count == 64 && s.utf8.allSatisfy { (48...57).contains($0) || (97...102).contains($0) }
    }

    static func hexBytes(_ s: String) -> [UInt8] {
        let u = Array(s.utf8)
        func v(_ c: UInt8) -> UInt8 { c <= 57 ? c - 48 : c - 87 }
        return stride(from: 0, to: u.count, by: 2).map { v(u[$0]) << 4 | v(u[$0 + 1]) }
    }

}
