/// A JSON document as parsed: objects keep their member order, numbers keep their literal text
/// so integers are read exactly and never through a Double.
///
/// Not `indirect`: arrays and objects already keep their elements in a heap buffer, so a value is stored inline
/// (24 bytes) and an array of a million small numbers costs 24 MB, not the 56 MB of a boxed case per value.
public enum JSONValue: Equatable, Sendable {
    case null
    case bool(Bool)
    /// A number as its literal text (e.g. `"12"`, `"-1.5e3"`).
    case number(String)
    case string(String)
    case array([JSONValue])
    case object([Member])

    /// One `"key": value` pair of an object.
    public struct Member: Equatable, Sendable {
        public var key: String
        public var value: JSONValue
        public init(_ key: String, _ value: JSONValue) {
            self.key = key
            self.value = value
        }
    }

    /// An integer number.
    public static func int(_ value: Int) -> JSONValue { .number(String(value)) }

    /// A floating-point number written so it reads back to the same Double.
    public static func double(_ value: Double) -> JSONValue {
        if value.isFinite, value == value.rounded(), abs(value) < 1e15 { return .number(String(Int(value)) + ".0") }
        return .number(value.isFinite ? "\(value)" : "null")
    }

    /// An object from ordered pairs.
    public static func object(_ pairs: KeyValuePairs<String, JSONValue>) -> JSONValue {
        .object(pairs.map { Member($0.key, $0.value) })
    }

    /// The value of `key` in an object (the last one if a parser kept duplicates), else nil.
    public subscript(key: String) -> JSONValue? {
        guard case let .object(members) = self else { return nil }
        return members.last(where: { $0.key == key })?.value
    }

    /// The members of an object, else nil.
    public var members: [Member]? {
        if case let .object(m) = self { return m }
        return nil
    }

    /// The elements of an array, else nil.
    public var elements: [JSONValue]? {
        if case let .array(a) = self { return a }
        return nil
    }

    /// The string, else nil.
    public var stringValue: String? {
        if case let .string(s) = self { return s }
        return nil
    }

    /// The bool, else nil.
    public var boolValue: Bool? {
        if case let .bool(b) = self { return b }
        return nil
    }

    /// The number as an exact `Int` when it is an integer literal (no fraction or exponent) that fits.
    public var intValue: Int? {
        guard case let .number(text) = self, !text.contains(where: { $0 == "." || $0 == "e" || $0 == "E" }) else { return nil }
        return Int(text)
    }

    /// The number as a Double (integers and decimals alike), else nil.
    public var doubleValue: Double? {
        if case let .number(text) = self { return Double(text) }
        return nil
    }

    /// A short name of the value's kind for error messages.
    public var kindName: String {
        switch self {
        case .null: return "null"
        case .bool: return "bool"
        case .number: return "number"
        case .string: return "string"
        case .array: return "array"
        case .object: return "object"
        }
    }
}
