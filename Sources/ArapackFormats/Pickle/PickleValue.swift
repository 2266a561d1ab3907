/// A module-qualified name a pickle refers to (`GLOBAL`, `STACK_GLOBAL`, `INST`).
public struct PickleGlobal: Hashable, Sendable, CustomStringConvertible {
    public var module: String
    public var name: String
    public init(_ module: String, _ name: String) {
        self.module = module
        self.name = name
    }
    /// `module.name`.
    public var description: String { "\(module).\(name)" }
}

/// A mutable list (lists are filled after they are memoized, and memo references share them).
public final class PickleList {
    public var items: [PickleValue]
    init(_ items: [PickleValue] = []) { self.items = items }
}

/// A mutable dict keeping insertion order; `state` holds what a BUILD set on it (OrderedDict `_metadata`).
public final class PickleDict {
    public private(set) var entries: [(key: PickleValue, value: PickleValue)] = []
    private var stringIndex: [String: Int] = [:]
    public var state: PickleValue?

    init() {}

    func set(_ key: PickleValue, _ value: PickleValue) {
        if case let .string(s) = key, let i = stringIndex[s] {
            entries[i].value = value
            return
        }
        if case let .string(s) = key { stringIndex[s] = entries.count }
        entries.append((key, value))
    }

    func removeAll() {
        entries = []
        stringIndex = [:]
        state = nil
    }

    /// The value of a string key.
    public subscript(key: String) -> PickleValue? { stringIndex[key].map { entries[$0].value } }

    /// The string keys in order (other keys are skipped).
    public var stringKeys: [String] { entries.compactMap { if case let .string(s) = $0.key { return s } else { return nil } } }
}

/// An inert record of `callable(*args)` (REDUCE) or `cls.__new__(cls, *args)` (NEWOBJ), with what BUILD
/// set. Nothing is ever called: readers interpret the records they know.
public final class PickleObject {
    public let callable: PickleGlobal
    /// Emptied by the arena when it goes (objects holding objects would otherwise be freed recursively).
    public internal(set) var args: [PickleValue]
    public var state: PickleValue?
    init(callable: PickleGlobal, args: [PickleValue]) {
        self.callable = callable
        self.args = args
    }
}

/// The containers of one unpickled value. A pickle can build cycles (a list appended to itself through
/// the memo), which reference counting never frees; when the arena goes, it empties every container it
/// made, breaking them. Whoever keeps a value keeps its arena (`PickleMachine.Result.arena`).
public final class PickleArena: @unchecked Sendable {
    private var lists: [PickleList] = []
    private var dicts: [PickleDict] = []
    private var objects: [PickleObject] = []

    /// Containers made so far (lists, dicts, objects).
    var count: Int { lists.count + dicts.count + objects.count }

    func list(_ items: [PickleValue] = []) -> PickleList {
        let l = PickleList(items)
        lists.append(l)
        return l
    }

    func dict() -> PickleDict {
        let d = PickleDict()
        dicts.append(d)
        return d
    }

    func object(callable: PickleGlobal, args: [PickleValue]) -> PickleObject {
        let o = PickleObject(callable: callable, args: args)
        objects.append(o)
        return o
    }

    deinit {
        for l in lists { l.items = [] }
        for d in dicts { d.removeAll() }
        for o in objects { o.state = nil; o.args = [] }
    }
}

/// A value built by the pickle machine.
public indirect enum PickleValue {
    case none
    case bool(Bool)
    case int(Int)
    /// An integer too wide for `Int`: little-endian two's complement bytes.
    case bigInt([UInt8])
    case float(Double)
    case string(String)
    case bytes([UInt8])
    case tuple([PickleValue])
    case list(PickleList)
    case dict(PickleDict)
    case global(PickleGlobal)
    case object(PickleObject)
    /// A persistent id (BINPERSID) as given; readers resolve it (torch: a storage reference).
    case persistent(PickleValue)

    public var stringValue: String? { if case let .string(s) = self { return s } else { return nil } }
    public var intValue: Int? { if case let .int(i) = self { return i } else { return nil } }
    public var tupleValue: [PickleValue]? { if case let .tuple(t) = self { return t } else { return nil } }
    public var dictValue: PickleDict? { if case let .dict(d) = self { return d } else { return nil } }
    public var objectValue: PickleObject? { if case let .object(o) = self { return o } else { return nil } }
    /// Elements of a tuple or list.
    public var sequence: [PickleValue]? {
        switch self {
        case let .tuple(t): return t
        case let .list(l): return l.items
        default: return nil
        }
    }

    /// A short name of the value's kind for error messages.
    public var kindName: String {
        switch self {
        case .none: return "None"
        case .bool: return "bool"
        case .int, .bigInt: return "int"
        case .float: return "float"
        case .string: return "str"
        case .bytes: return "bytes"
        case .tuple: return "tuple"
        case .list: return "list"
        case .dict: return "dict"
        case let .global(g): return "global \(g)"
        case let .object(o): return "\(o.callable) object"
        case .persistent: return "persistent id"
        }
    }
}
