/// `Codable` over `JSONValue`: a type encodes to the same ordered JSON this package writes everywhere
/// (members in the order `encode(to:)` gives them, numbers as `JSONValue.int` / `.double` write them) and
/// decodes from a document the strict parser has already accepted. A `JSONValue` inside a type passes through
/// as it is, so free-form parts (a source record, a report) need no schema of their own.
public struct JSONValueEncoder {
    public init() {}

    public func encode<T: Encodable>(_ value: T) throws -> JSONValue {
        let node = EncodedNode()
        try node.encode(value, codingPath: [])
        return node.json
    }
}

extension KeyedEncodingContainer {
    /// Writes `value`, or `null` when it is nil: arapack's documents state every key (synthesized `Encodable` leaves
    /// an absent optional out).
    public mutating func encodeOrNull<T: Encodable>(_ value: T?, forKey key: Key) throws {
        if let value { try encode(value, forKey: key) } else { try encodeNil(forKey: key) }
    }
}

public struct JSONValueDecoder {
    public init() {}

    /// Decodes `T` from `json`; an error names the field (`files[2].size`) and what was expected.
    public func decode<T: Decodable>(_ type: T.Type, from json: JSONValue) throws -> T {
        try ValueDecoder(json: json, codingPath: []).decodeValue(type)
    }
}

/// Why a JSON document does not decode as a type: the path of the field and what was expected there.
public struct JSONDecodingError: Error, Equatable, CustomStringConvertible, Sendable {
    public let path: String
    public let expected: String
    public var description: String { "\(path.isEmpty ? "the document" : path): expected \(expected)" }

    init(_ codingPath: [CodingKey], _ expected: String) {
        var text = ""
        for key in codingPath {
            if let i = key.intValue { text += "[\(i)]" } else { text += (text.isEmpty ? "" : ".") + key.stringValue }
        }
        path = text
        self.expected = expected
    }
}

private struct IndexKey: CodingKey {
    let intValue: Int?
    let stringValue: String
    init(_ i: Int) { intValue = i; stringValue = String(i) }
    init?(intValue: Int) { self.init(intValue) }
    init?(stringValue: String) { return nil }
}

// MARK: encoding

/// One value being encoded: a leaf, or an object / array filled by containers.
private final class EncodedNode {
    enum Kind { case empty, leaf(JSONValue), object([(String, EncodedNode)]), array([EncodedNode]) }
    var kind = Kind.empty

    var json: JSONValue {
        switch kind {
        case .empty: return .null
        case let .leaf(v): return v
        case let .object(members): return .object(members.map { .init($0.0, $0.1.json) })
        case let .array(items): return .array(items.map(\.json))
        }
    }

    func encode<T: Encodable>(_ value: T, codingPath: [CodingKey]) throws {
        switch value {
        case let v as JSONValue: kind = .leaf(v)
        case let v as String: kind = .leaf(.string(v))
        case let v as Bool: kind = .leaf(.bool(v))
        case let v as Int: kind = .leaf(.int(v))
        case let v as any FixedWidthInteger: kind = .leaf(.number(String(describing: v)))
        case let v as Double: kind = .leaf(.double(v))
        case let v as Float: kind = .leaf(.double(Double(v)))
        default: try value.encode(to: NodeEncoder(node: self, codingPath: codingPath))
        }
    }

    func member(_ key: String) -> EncodedNode {
        let child = EncodedNode()
        if case var .object(members) = kind {
            members.removeAll { $0.0 == key }
            members.append((key, child))
            kind = .object(members)
        } else {
            kind = .object([(key, child)])
        }
        return child
    }

    func appended() -> EncodedNode {
        let child = EncodedNode()
        if case var .array(items) = kind { items.append(child); kind = .array(items) } else { kind = .array([child]) }
        return child
    }
}

private struct NodeEncoder: Encoder {
    let node: EncodedNode
    let codingPath: [CodingKey]
    var userInfo: [CodingUserInfoKey: Any] { [:] }

    func container<Key: CodingKey>(keyedBy type: Key.Type) -> KeyedEncodingContainer<Key> {
        if case .object = node.kind {} else { node.kind = .object([]) }
        return KeyedEncodingContainer(KeyedNodeEncoder<Key>(node: node, codingPath: codingPath))
    }

    func unkeyedContainer() -> UnkeyedEncodingContainer {
        if case .array = node.kind {} else { node.kind = .array([]) }
        return UnkeyedNodeEncoder(node: node, codingPath: codingPath)
    }

    func singleValueContainer() -> SingleValueEncodingContainer { SingleNodeEncoder(node: node, codingPath: codingPath) }
}

private struct KeyedNodeEncoder<Key: CodingKey>: KeyedEncodingContainerProtocol {
    let node: EncodedNode
    let codingPath: [CodingKey]

    mutating func encodeNil(forKey key: Key) throws { node.member(key.stringValue).kind = .leaf(.null) }
    mutating func encode<T: Encodable>(_ value: T, forKey key: Key) throws {
        try node.member(key.stringValue).encode(value, codingPath: codingPath + [key])
    }
    mutating func nestedContainer<NestedKey: CodingKey>(keyedBy keyType: NestedKey.Type, forKey key: Key) -> KeyedEncodingContainer<NestedKey> {
        NodeEncoder(node: node.member(key.stringValue), codingPath: codingPath + [key]).container(keyedBy: keyType)
    }
    mutating func nestedUnkeyedContainer(forKey key: Key) -> UnkeyedEncodingContainer {
        NodeEncoder(node: node.member(key.stringValue), codingPath: codingPath + [key]).unkeyedContainer()
    }
    mutating func superEncoder() -> Encoder { NodeEncoder(node: node.member("super"), codingPath: codingPath) }
    mutating func superEncoder(forKey key: Key) -> Encoder { NodeEncoder(node: node.member(key.stringValue), codingPath: codingPath + [key]) }
}

private struct UnkeyedNodeEncoder: UnkeyedEncodingContainer {
    let node: EncodedNode
    let codingPath: [CodingKey]
    var count: Int { if case let .array(items) = node.kind { return items.count }; return 0 }

    mutating func encodeNil() throws { node.appended().kind = .leaf(.null) }
    mutating func encode<T: Encodable>(_ value: T) throws {
        let key = IndexKey(count)
        try node.appended().encode(value, codingPath: codingPath + [key])
    }
    mutating func nestedContainer<NestedKey: CodingKey>(keyedBy keyType: NestedKey.Type) -> KeyedEncodingContainer<NestedKey> {
        let key = IndexKey(count)
        return NodeEncoder(node: node.appended(), codingPath: codingPath + [key]).container(keyedBy: keyType)
    }
    mutating func nestedUnkeyedContainer() -> UnkeyedEncodingContainer {
        let key = IndexKey(count)
        return NodeEncoder(node: node.appended(), codingPath: codingPath + [key]).unkeyedContainer()
    }
    mutating func superEncoder() -> Encoder { NodeEncoder(node: node.appended(), codingPath: codingPath) }
}

private struct SingleNodeEncoder: SingleValueEncodingContainer {
    let node: EncodedNode
    let codingPath: [CodingKey]
    mutating func encodeNil() throws { node.kind = .leaf(.null) }
    mutating func encode<T: Encodable>(_ value: T) throws { try node.encode(value, codingPath: codingPath) }
}

// MARK: decoding

private struct ValueDecoder: Decoder {
    let json: JSONValue
    let codingPath: [CodingKey]
    var userInfo: [CodingUserInfoKey: Any] { [:] }

    func decodeValue<T: Decodable>(_ type: T.Type) throws -> T {
        func expect<V>(_ v: V?, _ what: String) throws -> T {
            guard let v else { throw JSONDecodingError(codingPath, what) }
            return v as! T
        }
        switch type {
        case is JSONValue.Type: return json as! T
        case is String.Type: return try expect(json.stringValue, "a string")
        case is Bool.Type: return try expect(json.boolValue, "true or false")
        case is Int.Type: return try expect(json.intValue, "an integer")
        case is Double.Type: return try expect(json.doubleValue, "a number")
        case is Float.Type: return try expect(json.doubleValue.map { Float($0) }, "a number")
        case let integer as any FixedWidthInteger.Type: return try expect(json.intValue.flatMap { integer.init(exactly: $0) }, "an integer that fits \(type)")
        default: return try T(from: self)
        }
    }

    func container<Key: CodingKey>(keyedBy type: Key.Type) throws -> KeyedDecodingContainer<Key> {
        guard let members = json.members else { throw JSONDecodingError(codingPath, "an object") }
        return KeyedDecodingContainer(KeyedValueDecoder<Key>(members: members, codingPath: codingPath))
    }

    func unkeyedContainer() throws -> UnkeyedDecodingContainer {
        guard let items = json.elements else { throw JSONDecodingError(codingPath, "an array") }
        return UnkeyedValueDecoder(items: items, codingPath: codingPath)
    }

    func singleValueContainer() throws -> SingleValueDecodingContainer { SingleValueDecoder(decoder: self) }
}

private struct KeyedValueDecoder<Key: CodingKey>: KeyedDecodingContainerProtocol {
    let members: [JSONValue.Member]
    let codingPath: [CodingKey]
    var allKeys: [Key] { members.compactMap { Key(stringValue: $0.key) } }

    func value(_ key: Key) throws -> JSONValue {
        guard let m = members.last(where: { $0.key == key.stringValue }) else { throw JSONDecodingError(codingPath + [key], "a value (the field is missing)") }
        return m.value
    }
    func contains(_ key: Key) -> Bool { members.contains { $0.key == key.stringValue } }
    func decodeNil(forKey key: Key) throws -> Bool { try value(key) == .null }
    func decode<T: Decodable>(_ type: T.Type, forKey key: Key) throws -> T {
        try ValueDecoder(json: try value(key), codingPath: codingPath + [key]).decodeValue(type)
    }
    func nestedContainer<NestedKey: CodingKey>(keyedBy type: NestedKey.Type, forKey key: Key) throws -> KeyedDecodingContainer<NestedKey> {
        try ValueDecoder(json: try value(key), codingPath: codingPath + [key]).container(keyedBy: type)
    }
    func nestedUnkeyedContainer(forKey key: Key) throws -> UnkeyedDecodingContainer {
        try ValueDecoder(json: try value(key), codingPath: codingPath + [key]).unkeyedContainer()
    }
    func superDecoder() throws -> Decoder { ValueDecoder(json: .object(members), codingPath: codingPath) }
    func superDecoder(forKey key: Key) throws -> Decoder { ValueDecoder(json: try value(key), codingPath: codingPath + [key]) }
}

private struct UnkeyedValueDecoder: UnkeyedDecodingContainer {
    let items: [JSONValue]
    let codingPath: [CodingKey]
    var currentIndex = 0
    var count: Int? { items.count }
    var isAtEnd: Bool { currentIndex >= items.count }

    init(items: [JSONValue], codingPath: [CodingKey]) {
        self.items = items
        self.codingPath = codingPath
    }

    mutating func next() throws -> ValueDecoder {
        guard !isAtEnd else { throw JSONDecodingError(codingPath + [IndexKey(currentIndex)], "another element") }
        defer { currentIndex += 1 }
        return ValueDecoder(json: items[currentIndex], codingPath: codingPath + [IndexKey(currentIndex)])
    }
    mutating func decodeNil() throws -> Bool {
        guard !isAtEnd, items[currentIndex] == .null else { return false }
        currentIndex += 1
        return true
    }
    mutating func decode<T: Decodable>(_ type: T.Type) throws -> T { try next().decodeValue(type) }
    mutating func nestedContainer<NestedKey: CodingKey>(keyedBy type: NestedKey.Type) throws -> KeyedDecodingContainer<NestedKey> {
        try next().container(keyedBy: type)
    }
    mutating func nestedUnkeyedContainer() throws -> UnkeyedDecodingContainer { try next().unkeyedContainer() }
    mutating func superDecoder() throws -> Decoder { try next() }
}

private struct SingleValueDecoder: SingleValueDecodingContainer {
    let decoder: ValueDecoder
    var codingPath: [CodingKey] { decoder.codingPath }
    func decodeNil() -> Bool { decoder.json == .null }
    func decode<T: Decodable>(_ type: T.Type) throws -> T { try decoder.decodeValue(type) }
}

extension JSONValue: Codable {
    /// Through `JSONValueEncoder` / `JSONValueDecoder` a `JSONValue` passes as it is; other coders see the
    /// serialized text.
    public init(from decoder: Decoder) throws {
        if let d = decoder as? ValueDecoder { self = d.json; return }
        self = try JSONParser.parse(Array(try decoder.singleValueContainer().decode(String.self).utf8))
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.singleValueContainer()
        try c.encode(serialized())
    }
}
