import ArapackFormats

/// Assembles a `ModelConfig` from every place that says something about it (configs in any dialect, the tensor shapes,
/// the tokenizer, flags), refusing disagreements, then validates it (`resolve`): bounds, defaults, the family's rules.
public struct ConfigAssembly {
    public typealias Field = ModelConfig.Field

    /// The integer fields.
    static let integerFields: Set<Field> = [.vocabSize, .hiddenSize, .layers, .heads, .intermediateSize, .maxPositions, .bos, .eos, .pad, .mask]
    /// Bounds on every size, checked before anything is sized from a config (ROBUSTNESS.md): within
    /// them no shape, byte count or parameter count can overflow. The released model is far inside (76,800 / 1,024 /
    /// 24 / 16 / 4,096 / 512).
    public static let bounds: [Field: ClosedRange<Int>] = [
        .vocabSize: 1...(1 << 24), .hiddenSize: 1...(1 << 16), .layers: 1...1024,
        .heads: 1...(1 << 16), .intermediateSize: 1...(1 << 20), .maxPositions: 1...(1 << 20),
    ]
    /// The family's special token ids (docs/model-family.md), used when nothing else states them.
    static let defaultSpecialIDs: [(Field, Int)] = [(.bos, 1), (.eos, 2), (.mask, 62), (.pad, 5)]

    private var values: [Field: (value: JSONValue, origin: String)] = [:]
    /// Fields that fell back to a default (reported to the user).
    public private(set) var assumed: [String] = []
    private let source: String

    public init(source: String) { self.source = source }

    /// Adds a config object in any dialect: a GPT2Config (`model_type` gpt2), config.json's names (it states
    /// hidden_size or num_hidden_layers), else the training script's names, with config.json's for what those do not
    /// name (`--config '{"num_attention_heads": 16}'`). Names of no dialect are ignored.
    public mutating func add(_ config: JSONValue, origin: String) throws {
        guard let members = config.members else { throw ConfigError.notAnObject(origin: origin, found: config.kindName) }
        if config["model_type"]?.stringValue == GPT2ConfigKey.modelType {
            try Self.checkGPT2(config, origin: origin)
            // GPT2Config's n_inner may be null (4 × n_embd); the shapes then state it.
            try add(GPT2Config(config)!, origin: origin, nullable: [.nInner])
            try add(.causal, .bool(true), origin: origin + " model_type gpt2")
            return
        }
        let hfStyle = members.contains { $0.key == Field.hiddenSize.stringValue || $0.key == Field.layers.stringValue }
        if !hfStyle { try add(TrainingConfig(config)!, origin: origin) }
        try add(DialectConfig<Field>(config)!, origin: origin)
        if hfStyle, values[.causal] == nil, let type = config["model_type"]?.stringValue {
            switch type {
            case ModelConfig.causalModelType: try add(.causal, .bool(true), origin: origin + " model_type")
            case ModelConfig.bidirectionalModelType: try add(.causal, .bool(false), origin: origin + " model_type")
            default: throw ConfigError.unknownModelType(origin: origin, modelType: type)
            }
        }
    }

    /// Adds what a config in one dialect states; a null is an error for a size, unless the dialect allows it.
    mutating func add<Key: ConfigDialect>(_ config: DialectConfig<Key>, origin: String, nullable: Set<Key> = []) throws {
        for (key, value) in config.values {
            if value == .null {
                if nullable.contains(key) || !Self.integerFields.contains(key.field) { continue }
                throw ConfigError.nullSize(origin: origin, field: key.stringValue)
            }
            try add(key.field, value, origin: origin)
        }
    }

    /// Refuses a GPT2Config whose GPT2LMHeadModel would compute something else than the AraFusion AR model.
    public static func checkGPT2(_ config: JSONValue, origin: String) throws {
        if let act = config[GPT2ConfigKey.activationFunction.stringValue]?.stringValue, act != "gelu" && act != "relu" {
            throw ConfigError.gpt2Activation(origin: origin, activation: act)
        }
        for (field, required) in [("scale_attn_weights", true), ("scale_attn_by_inverse_layer_idx", false), ("add_cross_attention", false)] {
            if let v = config[field], v != .null, v.boolValue != required {
                throw ConfigError.gpt2Flag(origin: origin, field: field, required: required, found: v.serialized())
            }
        }
    }

    /// Adds the fields tensor shapes determine.
    public mutating func addShapes(_ shapes: [String: [Int]]) throws {
        for (field, v) in ModelFamily.fieldsFromShapes(shapes).sorted(by: { $0.key.stringValue < $1.key.stringValue }) {
            try add(field, .int(v), origin: "the tensor shapes")
        }
    }

    /// Adds one field; a different value already stated elsewhere is an error naming both.
    public mutating func add(_ field: Field, _ value: JSONValue, origin: String) throws {
        if let existing = values[field] {
            guard Self.same(existing.value, value) else {
                throw ConfigError.conflict(source: source, field: field.stringValue, first: Self.show(existing.value), firstOrigin: existing.origin,
                                           second: Self.show(value), secondOrigin: origin)
            }
            return
        }
        values[field] = (value, origin)
    }

    /// Whether `field` has been stated.
    public func has(_ field: Field) -> Bool { values[field] != nil }

    /// The config, with defaults for what may be defaulted and errors for what may not.
    public mutating func resolve() throws -> ModelConfig {
        func int(_ f: Field) throws -> Int {
            guard let v = values[f] else {
                if f == .heads { throw ConfigError.headsNotInferable(source: source) }
                throw ConfigError.missing(source: source, field: f.stringValue)
            }
            guard let i = v.value.intValue, i > 0 || f.stringValue.hasSuffix("_token_id") && i >= 0 else {
                throw ConfigError.notPositiveInteger(source: source, field: f.stringValue, found: String(Self.show(v.value).prefix(40)), origin: v.origin)
            }
            if let range = Self.bounds[f], !range.contains(i) {
                throw ConfigError.outOfBounds(source: source, field: f.stringValue, value: i, origin: v.origin, bounds: range)
            }
            return i
        }
        func origin(_ f: Field) -> String { values[f]?.origin ?? "the defaults" }
        func defaulted(_ f: Field, _ d: JSONValue) -> JSONValue {
            if let v = values[f] { return v.value }
            assumed.append("\(f.stringValue)=\(Self.show(d))")
            return d
        }
        for (f, d) in Self.defaultSpecialIDs where values[f] == nil {
            values[f] = (.int(d), "the AraFusion defaults")
        }
        let act = defaulted(.activation, .string("gelu")).stringValue ?? ""
        guard act == "gelu" || act == "relu" else {
            throw ConfigError.activation(source: source, found: String(act.escapingControlCharacters.prefix(40)), origin: origin(.activation))
        }
        guard let eps = defaulted(.layerNormEps, .double(1e-5)).doubleValue, eps.isFinite, eps > 0, eps <= 1 else {
            throw ConfigError.layerNormEps(source: source, found: String(Self.show(values[.layerNormEps]?.value ?? .null).prefix(40)), origin: origin(.layerNormEps))
        }
        if let d = values[.dropout], !(d.value.doubleValue.map { $0.isFinite && (0...1).contains($0) } ?? false) {
            throw ConfigError.dropout(source: source, found: String(Self.show(d.value).prefix(40)), origin: d.origin)
        }
        guard let causal = defaulted(.causal, .bool(true)).boolValue else { throw ConfigError.causalNotBoolean(source: source) }
        let config = ModelConfig(
            vocabSize: try int(.vocabSize), hiddenSize: try int(.hiddenSize), layers: try int(.layers),
            heads: try int(.heads), intermediateSize: try int(.intermediateSize),
            maxPositions: try int(.maxPositions), activation: act, layerNormEps: eps,
            dropout: values[.dropout]?.value.doubleValue ?? 0, causal: causal,
            tieWordEmbeddings: values[.tieWordEmbeddings]?.value.boolValue ?? true,
            bos: try int(.bos), eos: try int(.eos), pad: try int(.pad), mask: try int(.mask))
        guard config.hiddenSize % config.heads == 0 else {
            throw ConfigError.headsDoNotDivide(source: source, hiddenSize: config.hiddenSize, hiddenOrigin: origin(.hiddenSize), heads: config.heads,
                                               headsOrigin: origin(.heads))
        }
        for (name, id) in [("bos", config.bos), ("eos", config.eos), ("pad", config.pad), ("mask", config.mask)] where id >= config.vocabSize {
            throw ConfigError.specialTokenOutsideVocabulary(source: source, role: name, id: id, vocabSize: config.vocabSize)
        }
        return config
    }

    public static func same(_ a: JSONValue, _ b: JSONValue) -> Bool {
        if let x = a.doubleValue, let y = b.doubleValue { return x == y }
        return a == b
    }

    public static func show(_ v: JSONValue) -> String { v.serialized() }
}
