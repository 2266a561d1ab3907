import ArapackFormats
#if canImport(Glibc)
import Glibc
#endif

/// The HF tokenizer files of a bundle and the checks BUNDLE.md asks for: the JSON parses, the special
/// tokens agree across tokenizer.json, tokenizer_config.json and special_tokens_map.json, and the
/// vocabulary fits the embedding.
public final class TokenizerFiles {
    /// Files copied into a bundle when present (tokenizer.json is required).
    public static let names = ["tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json",
                               "vocab.json", "merges.txt", "tokenizer.model"]
    static let roles = ["bos", "eos", "pad", "mask"]

    public let directory: String
    /// The files present, in `names` order.
    public let files: [String]
    /// Special token ids by role (`bos`, …) as the tokenizer defines them.
    public let specialIDs: [String: Int]
    /// One more than the largest token id.
    public let vocabularySize: Int

    /// Reads and cross-checks the tokenizer files in `directory`.
    public convenience init(directory: String) throws {
        let present = Self.names.filter { access(directory + "/" + $0, F_OK) == 0 }
        try self.init(directory: directory, files: present) { try readJSON(directory + "/" + $0) }
    }

    /// The largest token id accepted (ids must also fall inside the model's vocabulary).
    static let maximumID = Int(Int32.max)

    /// Cross-checks tokenizer files given by name; `load` parses one of `files` (a folder or an archive).
    public init(directory: String, files: [String], load: (String) throws -> JSONValue) throws {
        self.directory = directory
        self.files = Self.names.filter(files.contains)
        guard files.contains("tokenizer.json") else { throw ModelError(directory, "no tokenizer.json in the tokenizer folder") }
        let tokenizer = try load("tokenizer.json")
        let file = directory + "/tokenizer.json"
        guard let model = tokenizer["model"], model.members != nil else {
            throw ModelError(file, "model must be an object (the tokenizer's algorithm and vocabulary), found \(tokenizer["model"]?.kindName ?? "nothing")")
        }
        if let merges = model["merges"] {
            guard let list = merges.elements else { throw ModelError(file, "model.merges must be an array, found \(merges.kindName)") }
            for (i, m) in list.enumerated() {
                let pair = m.stringValue.map { $0.split(separator: " ", omittingEmptySubsequences: false).count == 2 }
                    ?? (m.elements.map { $0.count == 2 && $0.allSatisfy { $0.stringValue != nil } } ?? false)
                guard pair else { throw ModelError(file, "model.merges[\(i)] is not a pair of tokens (\"a b\" or [\"a\", \"b\"])") }
            }
        }
        var idOf: [String: Int] = [:]
        var contentOf: [Int: String] = [:]
        var largest = -1
        func checked(_ value: JSONValue?, _ what: String) throws -> Int {
            guard let id = value?.intValue, (0...Self.maximumID).contains(id) else {
                throw ModelError(file, "\(what) has no token id in 0...\(Self.maximumID) (found \(value.map { String($0.serialized().prefix(30)) } ?? "nothing"))")
            }
            return id
        }
        for (i, t) in (tokenizer["added_tokens"]?.elements ?? []).enumerated() {
            guard let content = t["content"]?.stringValue else {
                throw ModelError(file, "added_tokens[\(i)] lacks a content string")
            }
            let id = try checked(t["id"], "added_tokens[\(i)]")
            if let other = contentOf[id], other != content {
                throw ModelError(file, "added tokens \"\(other.escapingControlCharacters)\" and \"\(content.escapingControlCharacters)\" both have id \(id)")
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
        vocabularySize = largest + 1

        // Token strings per role from each side file; where both name one, they must agree.
        var tokenOf: [String: (token: String, origin: String)] = [:]
        for file in ["tokenizer_config.json", "special_tokens_map.json"] where files.contains(file) {
            let json = try load(file)
            for role in Self.roles {
                guard let v = json[role + "_token"], v != .null else { continue }
                guard let token = v.stringValue ?? v["content"]?.stringValue else {
                    throw ModelError(directory + "/" + file, "\(role)_token is neither a string nor {\"content\": …}")
                }
                if let earlier = tokenOf[role], earlier.token != token {
                    throw ModelError(directory, "\(role) token is \"\(earlier.token)\" in \(earlier.origin) but \"\(token)\" in \(file)")
                }
                tokenOf[role] = (token, file)
            }
            if file == "tokenizer_config.json", let decoder = json["added_tokens_decoder"]?.members {
                for m in decoder {
                    guard let content = m.value["content"]?.stringValue, let id = Int(m.key) else { continue }
                    guard idOf[content] == id else {
                        throw ModelError(directory, "tokenizer_config.json added_tokens_decoder gives \"\(content)\" id \(id) but tokenizer.json gives \(idOf[content].map(String.init) ?? "none")")
                    }
                }
            }
        }
        var ids: [String: Int] = [:]
        for (role, t) in tokenOf {
            guard let id = idOf[t.token] else {
                throw ModelError(directory, "\(role) token \"\(t.token)\" named in \(t.origin) is not in tokenizer.json's vocabulary")
            }
            ids[role] = id
        }
        specialIDs = ids
    }

    /// Token strings by id (vocabulary and added tokens), for display.
    public func tokenStrings() throws -> [Int: String] {
        let tokenizer = try readJSON(directory + "/tokenizer.json")
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
            try assembly.add(role + "_token_id", .int(id), origin: "the tokenizer (\(directory))")
        }
    }

    /// Checks the tokenizer against a model config: special ids equal, vocabulary within the embedding rows.
    public func check(against config: ModelConfig, configOrigin: String) throws {
        guard vocabularySize <= config.vocabSize else {
            throw ModelError(directory, "the tokenizer vocabulary has \(vocabularySize) tokens but the embedding has \(config.vocabSize) rows")
        }
        let configIDs = ["bos": config.bos, "eos": config.eos, "pad": config.pad, "mask": config.mask]
        for (role, id) in specialIDs.sorted(by: { $0.key < $1.key }) where configIDs[role] != id {
            throw ModelError(directory, "\(role)_token_id is \(id) in the tokenizer but \(configIDs[role]!) in \(configOrigin)")
        }
    }
}
