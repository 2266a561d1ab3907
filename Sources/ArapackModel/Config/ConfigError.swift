import ArapackFormats

/// A config that cannot be an AraFusion model's. `origin` is the file or flag that stated a value, `source`
/// the model being assembled (both as the user named them).
public enum ConfigError: Error, Equatable, CustomStringConvertible, Sendable {
    case notAnObject(origin: String, found: String)
    case nullSize(origin: String, field: String)
    case unknownModelType(origin: String, modelType: String)
    case gpt2Activation(origin: String, activation: String)
    case gpt2Flag(origin: String, field: String, required: Bool, found: String)
    /// Two sources state different values for one field.
    case conflict(source: String, field: String, first: String, firstOrigin: String, second: String, secondOrigin: String)
    case headsNotInferable(source: String)
    case missing(source: String, field: String)
    case notPositiveInteger(source: String, field: String, found: String, origin: String)
    case outOfBounds(source: String, field: String, value: Int, origin: String, bounds: ClosedRange<Int>)
    case activation(source: String, found: String, origin: String)
    case layerNormEps(source: String, found: String, origin: String)
    case dropout(source: String, found: String, origin: String)
    case causalNotBoolean(source: String)
    case headsDoNotDivide(source: String, hiddenSize: Int, hiddenOrigin: String, heads: Int, headsOrigin: String)
    case specialTokenOutsideVocabulary(source: String, role: String, id: Int, vocabSize: Int)

    public var description: String {
        switch self {
        case let .notAnObject(origin, found): return "\(origin): a config must be a JSON object, found \(found)"
        case let .nullSize(origin, field): return "\(origin): \(field) is null; it must be a positive integer"
        case let .unknownModelType(origin, type):
            return "\(origin): model_type \"\(type)\" is not an AraFusion model (\(ModelConfig.causalModelType) or \(ModelConfig.bidirectionalModelType))"
        case let .gpt2Activation(origin, act):
            return "\(origin): activation_function \"\(act)\" is not one of the family's: \"gelu\" (exact erf) or \"relu\""
        case let .gpt2Flag(origin, field, required, found): return "\(origin): \(field) must be \(required) for the AraFusion model, found \(found)"
        case let .conflict(source, field, first, firstOrigin, second, secondOrigin):
            return "\(source): \(field) is \(first) in \(firstOrigin) but \(second) in \(secondOrigin)"
        case let .headsNotInferable(source):
            return "\(source): the number of attention heads cannot be inferred from the tensors; pass --config with n_heads (or num_attention_heads)"
        case let .missing(source, field): return "\(source): \(field) is not stated by any config and cannot be inferred"
        case let .notPositiveInteger(source, field, found, origin): return "\(source): \(field) must be a positive integer, found \(found) in \(origin)"
        case let .outOfBounds(source, field, value, origin, bounds):
            return "\(source): \(field) \(value) in \(origin) is outside \(bounds.lowerBound)...\(bounds.upperBound), the sizes arapack accepts"
        case let .activation(source, found, origin): return "\(source): hidden_act must be \"gelu\" or \"relu\", found \"\(found)\" in \(origin)"
        case let .layerNormEps(source, found, origin): return "\(source): layer_norm_eps must be a finite number in (0, 1], found \(found) in \(origin)"
        case let .dropout(source, found, origin): return "\(source): dropout must be a number in [0, 1], found \(found) in \(origin)"
        case let .causalNotBoolean(source): return "\(source): is_causal (causal) must be true or false"
        case let .headsDoNotDivide(source, hidden, hiddenOrigin, heads, headsOrigin):
            return "\(source): hidden_size \(hidden) (\(hiddenOrigin)) is not divisible by num_attention_heads \(heads) (\(headsOrigin))"
        case let .specialTokenOutsideVocabulary(source, role, id, vocab): return "\(source): \(role)_token_id \(id) is outside the vocabulary of \(vocab)"
        }
    }
}
