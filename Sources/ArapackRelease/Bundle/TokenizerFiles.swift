import ArapackFormats
import ArapackModel
#if canImport(Glibc)
import Glibc
#endif

/// The HF tokenizer files of a bundle and the checks docs/bundle.md asks for: the JSON parses, the special
/// tokens agree across tokenizer.json, tokenizer_config.json and special_tokens_map.json, and the
/// vocabulary fits the embedding.
///
/// Two layouts are read: a plain HF tokenizer folder (tokenizer.json at its top), and the published release's
/// (the HF files in base_tokenizer/, MorphBPE files such as morphbpe_config.json and morphbpe.py at the top,
/// possibly HF files at the top too). Every tokenizer.json present is checked, and the sets must agree. A
/// bundle gets the HF files at its top and in base_tokenizer/, so `AutoTokenizer.from_pretrained(bundle)` and
/// `(bundle, subfolder="base_tokenizer")` both load, plus the MorphBPE files at its top.
public final class TokenizerFiles {
    /// HF files copied into a bundle when present (tokenizer.json is required in each set).
    public static let names = ["tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json",
                               "vocab.json", "merges.txt", "tokenizer.model"]
    /// The published layout's folder of HF tokenizer files.
    public static let subfolder = "base_tokenizer"
    /// Top-level files of the published layout carried along (the MorphBPE pre-tokenizer's code and settings).
    static func isMorphBPEFile(_ name: String) -> Bool {
        name.hasPrefix("morphbpe") && !name.contains("/") && [".json", ".py", ".txt", ".model"].contains { name.hasSuffix($0) }
    }
    static let roles = ["bos", "eos", "pad", "mask"]

    public let directory: String
    /// The files present, by path inside `directory`: HF files at the top and in base_tokenizer/, MorphBPE files.
    public let files: [String]
    /// The MorphBPE pre-tokenizer's files among `files` (its code and settings, at the folder's top).
    public var morphBPEFiles: [String] { files.filter(Self.isMorphBPEFile) }
    /// Special token ids by role (`bos`, …) as the tokenizer defines them.
    public let specialIDs: [String: Int]
    /// One more than the largest token id.
    public let vocabularySize: Int

    /// Reads and cross-checks the tokenizer files in `directory` (either layout).
    public convenience init(directory: String) throws {
        var present = Self.names.filter { access(directory + "/" + $0, F_OK) == 0 }
        present += Self.names.map { Self.subfolder + "/" + $0 }.filter { access(directory + "/" + $0, F_OK) == 0 }
        present += try directoryEntries(directory).filter(Self.isMorphBPEFile)
        try self.init(directory: directory, files: present) { try readJSON(directory + "/" + $0) }
    }

    /// The largest token id accepted (ids must also fall inside the model's vocabulary).
    static let maximumID = Int(Int32.max)

    /// Cross-checks tokenizer files given by path inside `directory` (files of other kinds are ignored);
    /// `load` parses one of `files` (a folder or an archive).
    public init(directory: String, files: [String], load: (String) throws -> JSONValue) throws {
        self.directory = directory
        let sets = ["", Self.subfolder + "/"].filter { prefix in files.contains { $0.hasPrefix(prefix) && Self.names.contains(String($0.dropFirst(prefix.count))) } }
        guard !sets.isEmpty else {
            throw TokenizerError.noTokenizer(directory: directory, subfolder: Self.subfolder)
        }
        // Each file parsed once, though the copy comparison below and the checks both read it.
        var parsed: [String: JSONValue] = [:]
        func parse(_ name: String) throws -> JSONValue {
            if let v = parsed[name] { return v }
            let v = try load(name)
            parsed[name] = v
            return v
        }
        var ids: [String: Int]?, size = 0
        for prefix in sets {
            let set = Self.names.filter { files.contains(prefix + $0) }
            // The second set is usually a copy of the first (arapack writes the same bytes to both places).
            if prefix != sets[0], set == Self.names.filter({ files.contains(sets[0] + $0) }),
               try set.allSatisfy({ try parse(prefix + $0) == parse(sets[0] + $0) }) { continue }
            let checked = try Self.check(directory: directory + (prefix.isEmpty ? "" : "/" + prefix.dropLast()), files: set) { try parse(prefix + $0) }
            if let earlier = ids, earlier != checked.ids {
                throw TokenizerError.setsDisagree(directory: directory, top: earlier, subfolder: checked.ids)
            }
            ids = checked.ids
            size = max(size, checked.vocabularySize)
        }
        let extras = files.filter(Self.isMorphBPEFile).sorted()
        for name in extras where name.hasSuffix(".json") { _ = try parse(name) }
        self.files = sets.flatMap { prefix in Self.names.filter { files.contains(prefix + $0) }.map { prefix + $0 } } + extras
        specialIDs = ids!
        vocabularySize = size
    }

    /// Where each file goes in a bundle: (path inside `directory`, path inside the bundle). The HF set goes
    /// both to the top and to base_tokenizer/ (each side taken from the source's own copy when it has one).
    public var copies: [(from: String, to: String)] {
        let top = Self.names.filter { files.contains($0) }
        let base = Self.names.filter { files.contains(Self.subfolder + "/" + $0) }
        let topSource = top.isEmpty ? base.map { (Self.subfolder + "/" + $0, $0) } : top.map { ($0, $0) }
        let baseSource = base.isEmpty ? top.map { ($0, Self.subfolder + "/" + $0) } : base.map { (Self.subfolder + "/" + $0, Self.subfolder + "/" + $0) }
        return (topSource + baseSource + files.filter(Self.isMorphBPEFile).map { ($0, $0) }).map { (from: $0.0, to: $0.1) }
    }

    /// The checks of one set of HF files (`files` by name, `load` parses one); its special ids and vocabulary size.
    static func check(directory: String, files: [String], load: (String) throws -> JSONValue) throws -> (ids: [String: Int], vocabularySize: Int) {
        guard files.contains("tokenizer.json") else { throw TokenizerError.noTokenizer(directory: directory, subfolder: nil) }
        let (idOf, vocabularySize) = try vocabulary(try load("tokenizer.json"), file: directory + "/tokenizer.json")

        // Token strings per role from each side file; where both name one, they must agree.
        var tokenOf: [String: (token: String, origin: String)] = [:]
        for file in ["tokenizer_config.json", "special_tokens_map.json"] where files.contains(file) {
            let json = try load(file)
            for role in Self.roles {
                guard let v = json[role + "_token"], v != .null else { continue }
                guard let token = v.stringValue ?? v["content"]?.stringValue else {
                    throw TokenizerError.specialTokenForm(file: directory + "/" + file, role: role)
                }
                if let earlier = tokenOf[role], earlier.token != token {
                    throw TokenizerError.specialTokenConflict(directory: directory, role: role, first: earlier.token, firstFile: earlier.origin, second: token, secondFile: file)
                }
                tokenOf[role] = (token, file)
            }
            if file == "tokenizer_config.json", let decoder = json["added_tokens_decoder"]?.members {
                for m in decoder {
                    guard let content = m.value["content"]?.stringValue, let id = Int(m.key) else { continue }
                    guard idOf[content] == id else {
                        throw TokenizerError.decoderDisagrees(directory: directory, token: content, id: id, tokenizerID: idOf[content])
                    }
                }
            }
        }
        var ids: [String: Int] = [:]
        for (role, t) in tokenOf {
            guard let id = idOf[t.token] else {
                throw TokenizerError.specialTokenUnknown(directory: directory, role: role, token: t.token, file: t.origin)
            }
            ids[role] = id
        }
        return (ids, vocabularySize)
    }

    /// tokenizer.json's model checked (merges are pairs, ids in range, an id held by one added token) and its
    /// vocabulary: the id of each token (added tokens first) and the vocabulary size (the largest id + 1).
    static func vocabulary(_ tokenizer: JSONValue, file: String) throws -> (idOf: [String: Int], size: Int) {
        guard let model = tokenizer["model"], model.members != nil else {
            throw TokenizerError.modelNotObject(file: file, found: tokenizer["model"]?.kindName ?? "nothing")
        }
        if let merges = model["merges"] {
            guard let list = merges.elements else { throw TokenizerError.mergesNotArray(file: file, found: merges.kindName) }
            for (i, m) in list.enumerated() {
                let pair = m.stringValue.map { $0.split(separator: " ", omittingEmptySubsequences: false).count == 2 }
                    ?? (m.elements.map { $0.count == 2 && $0.allSatisfy { $0.stringValue != nil } } ?? false)
                guard pair else { throw TokenizerError.mergeNotPair(file: file, index: i) }
            }
        }
        var idOf: [String: Int] = [:]
        var contentOf: [Int: String] = [:]
        var largest = -1
        func checked(_ value: JSONValue?, _ what: String) throws -> Int {
            guard let id = value?.intValue, (0...Self.maximumID).contains(id) else {
                throw TokenizerError.badID(file: file, entry: what, found: value.map { String($0.serialized().prefix(30)) } ?? "nothing", maximum: Self.maximumID)
            }
            return id
        }
        for (i, t) in (tokenizer["added_tokens"]?.elements ?? []).enumerated() {
            guard let content = t["content"]?.stringValue else {
                throw TokenizerError.addedTokenWithoutContent(file: file, index: i)
            }
            let id = try checked(t["id"], "added_tokens[\(i)]")
            if let other = contentOf[id], other != content {
                throw TokenizerError.sharedID(file: file, first: other, second: content, id: id)
            }
            contentOf[id] = content
            idOf[content] = id
            largest = max(largest, id)
        }
        if let vocab = model["vocab"] {
            // BPE / WordPiece: {token: id}; Unigram: [[token, score], …] (ids are positions).
            if let members = vocab.members {
                for m in members {
                    let id = try checked(m.value, "vocabulary entry \"\(m.key.escapingControlCharacters)\"")
                    if idOf[m.key] == nil { idOf[m.key] = id }
                    largest = max(largest, id)
                }
            } else if let items = vocab.elements {
                for (i, item) in items.enumerated() {
                    if let token = item.elements?.first?.stringValue, idOf[token] == nil { idOf[token] = i }
                }
                largest = max(largest, items.count - 1)
            }
        }
        return (idOf, largest + 1)
    }

    /// The path of the (first) tokenizer.json: at the top, else in base_tokenizer/.
    public var tokenizerJSON: String {
        directory + "/" + (files.contains("tokenizer.json") ? "tokenizer.json" : Self.subfolder + "/tokenizer.json")
    }

    /// Token strings by id (vocabulary and added tokens), for display.
    public func tokenStrings() throws -> [Int: String] {
        let tokenizer = try readJSON(tokenizerJSON)
        var out: [Int: String] = [:]
        for m in tokenizer["model"]?["vocab"]?.members ?? [] { if let id = m.value.intValue { out[id] = m.key } }
        for t in tokenizer["added_tokens"]?.elements ?? [] {
            if let id = t["id"]?.intValue, let s = t["content"]?.stringValue { out[id] = s }
        }
        return out
    }

    /// Adds the tokenizer's special ids to a config assembly (so any disagreement with a config is reported).
    public func contribute(to assembly: inout ConfigAssembly) throws {
        for (role, id) in specialIDs.sorted(by: { $0.key < $1.key }) {
            guard let field = ModelConfig.Field(rawValue: role + "_token_id") else { continue }
            try assembly.add(field, .int(id), origin: "the tokenizer (\(directory))")
        }
    }

    /// Checks the tokenizer against a model config: special ids equal, vocabulary within the embedding rows.
    public func check(against config: ModelConfig, configOrigin: String) throws {
        guard vocabularySize <= config.vocabSize else {
            throw TokenizerError.vocabularyTooLarge(directory: directory, tokens: vocabularySize, rows: config.vocabSize)
        }
        let configIDs = ["bos": config.bos, "eos": config.eos, "pad": config.pad, "mask": config.mask]
        for (role, id) in specialIDs.sorted(by: { $0.key < $1.key }) where configIDs[role] != id {
            throw TokenizerError.specialIDDiffers(directory: directory, role: role, tokenizerID: id, configID: configIDs[role]!, configOrigin: configOrigin)
        }
    }
}

/// Tokenizer files that disagree with themselves, with each other or with the model.
public enum TokenizerError: Error, Equatable, CustomStringConvertible, Sendable {
    /// No tokenizer.json (`subfolder`: where else it was looked for).
    case noTokenizer(directory: String, subfolder: String?)
    case setsDisagree(directory: String, top: [String: Int], subfolder: [String: Int])
    case modelNotObject(file: String, found: String)
    case mergesNotArray(file: String, found: String)
    case mergeNotPair(file: String, index: Int)
    case badID(file: String, entry: String, found: String, maximum: Int)
    case addedTokenWithoutContent(file: String, index: Int)
    case sharedID(file: String, first: String, second: String, id: Int)
    case specialTokenForm(file: String, role: String)
    case specialTokenConflict(directory: String, role: String, first: String, firstFile: String, second: String, secondFile: String)
    case decoderDisagrees(directory: String, token: String, id: Int, tokenizerID: Int?)
    case specialTokenUnknown(directory: String, role: String, token: String, file: String)
    case vocabularyTooLarge(directory: String, tokens: Int, rows: Int)
    case specialIDDiffers(directory: String, role: String, tokenizerID: Int, configID: Int, configOrigin: String)

    public var description: String {
        switch self {
        case let .noTokenizer(directory, subfolder?): return "\(directory): no tokenizer.json in the tokenizer folder (nor in its \(subfolder)/ folder)"
        case let .noTokenizer(directory, nil): return "\(directory): no tokenizer.json in the tokenizer folder"
        case let .setsDisagree(directory, top, sub):
            return "\(directory): the tokenizer at the top and the one in \(TokenizerFiles.subfolder)/ name different special tokens (\(top.sorted { $0.key < $1.key }) and \(sub.sorted { $0.key < $1.key }))"
        case let .modelNotObject(file, found): return "\(file): model must be an object (the tokenizer's algorithm and vocabulary), found \(found)"
        case let .mergesNotArray(file, found): return "\(file): model.merges must be an array, found \(found)"
        case let .mergeNotPair(file, i): return "\(file): model.merges[\(i)] is not a pair of tokens (\"a b\" or [\"a\", \"b\"])"
        case let .badID(file, entry, found, maximum): return "\(file): \(entry) has no token id in 0...\(maximum) (found \(found))"
        case let .addedTokenWithoutContent(file, i): return "\(file): added_tokens[\(i)] lacks a content string"
        case let .sharedID(file, a, b, id):
            return "\(file): added tokens \"\(a.escapingControlCharacters)\" and \"\(b.escapingControlCharacters)\" both have id \(id)"
        case let .specialTokenForm(file, role): return "\(file): \(role)_token is neither a string nor {\"content\": …}"
        case let .specialTokenConflict(directory, role, a, aFile, b, bFile): return "\(directory): \(role) token is \"\(a)\" in \(aFile) but \"\(b)\" in \(bFile)"
        case let .decoderDisagrees(directory, token, id, tokenizerID):
            return "\(directory): tokenizer_config.json added_tokens_decoder gives \"\(token)\" id \(id) but tokenizer.json gives \(tokenizerID.map(String.init) ?? "none")"
        case let .specialTokenUnknown(directory, role, token, file): return "\(directory): \(role) token \"\(token)\" named in \(file) is not in tokenizer.json's vocabulary"
        case let .vocabularyTooLarge(directory, tokens, rows): return "\(directory): the tokenizer vocabulary has \(tokens) tokens but the embedding has \(rows) rows"
        case let .specialIDDiffers(directory, role, tokenizerID, configID, configOrigin):
            return "\(directory): \(role)_token_id is \(tokenizerID) in the tokenizer but \(configID) in \(configOrigin)"
        }
    }
}
