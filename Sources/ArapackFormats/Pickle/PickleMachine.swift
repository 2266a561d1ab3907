/// Caps that keep a hostile pickle from exhausting memory. Lengths are also checked against the bytes
/// that remain before anything is allocated.
public struct PickleLimits: Sendable {
    public var memoEntries = 1 << 22
    public var stackDepth = 1 << 22
    public var markDepth = 1 << 16
    public var integerBytes = 1 << 12
    /// Values nested inside values (tuples in tuples, persistent ids of persistent ids): freeing or walking
    /// such a chain recurses, so a chain 100,000 deep would overflow the stack. Lists, dicts and objects
    /// are freed by their arena one by one and do not count.
    public var valueNesting = 1000
    /// Bytes in any one string or bytes object. A checkpoint's strings are names, paths and config values (the
    /// longest in a 70B-sized training checkpoint's pickle is under 100 bytes); a long one is only a way to make
    /// a small compressed file cost memory (ROBUSTNESS.md).
    public var stringBytes = 16 << 20
    /// Lists, dicts and objects built, about 100 bytes each. A 70B-sized training checkpoint's pickle builds about
    /// 15,000; DCP metadata builds a few per chunk (2.9 million at 512 ranks of a 70B model), so the default is wide
    /// and a torch.save pickle, whose size is capped, gets a tighter one (`TorchArchive`).
    public var containers = 1 << 24
    public init() {}

    /// The limits for a checkpoint's `data.pkl`: half a million containers (about 50 MB), 35 times what a 70B-sized
    /// training checkpoint builds.
    public static var checkpoint: PickleLimits {
        var limits = PickleLimits()
        limits.containers = 1 << 19
        return limits
    }

    /// The limits for a DCP `.metadata` of `bytes` (read as it lies, not compressed): one container per 8 bytes
    /// (at least 65,536, at most the default). torch writes 17-25 bytes per container (a chunk's record, its dict,
    /// its storage entry; measured on 64-rank metadata of 700 tensors), so real metadata gets 2-3× headroom, and a
    /// file of empty dicts (1 byte each, ~130 bytes built) costs at most ~16 × its size.
    public static func metadata(bytes: Int) -> PickleLimits {
        var limits = PickleLimits()
        limits.containers = min(limits.containers, max(1 << 16, bytes / 8))
        return limits
    }
}

/// A pickle interpreter that builds values and inert records and never calls anything.
///
/// Protocols 2–5 (the opcodes `torch.save` and DCP metadata use). Globals are checked when they are
/// named — by `GLOBAL`, or by `STACK_GLOBAL` from strings on the stack, however they got there — against
/// `allowed`; with `allowed == nil` every global is accepted as an inert record (for scanning). A few
/// constructors are rebuilt as plain values: `collections.OrderedDict` and `builtins.dict` as dicts,
/// `builtins.set`/`frozenset` as lists, `_codecs.encode(s, "latin1")` as bytes, `torch.Size` as a tuple.
public struct PickleMachine {
    /// What `load` returns.
    public struct Result {
        /// The unpickled value.
        public var value: PickleValue
        /// Every global the pickle names, in order of first reference, with the byte offset.
        public var globals: [(global: PickleGlobal, offset: Int)]
        /// Owns the containers `value` is made of; keep it as long as `value` is used.
        public var arena: PickleArena
    }

    /// Unpickles `bytes`. Throws `PickleError` on anything malformed, unsupported, over a limit, or
    /// (when `allowed` is given) on the first global outside it.
    public static func load(_ bytes: UnsafeRawBufferPointer, allowed: Set<PickleGlobal>?, limits: PickleLimits = PickleLimits()) throws -> Result {
        var m = PickleMachine(bytes: bytes, allowed: allowed, limits: limits)
        let value = try m.run()
        return Result(value: value, globals: m.globalsSeen, arena: m.arena)
    }

    private let bytes: UnsafeRawBufferPointer
    /// Every container built, so cycles a pickle makes (a list holding itself) are broken when done.
    private let arena = PickleArena()
    private let allowed: Set<PickleGlobal>?
    private let limits: PickleLimits
    private var position = 0
    private var stack: [PickleValue] = []
    /// For each stack entry, how deeply values nest inside it (see `PickleLimits.valueNesting`).
    private var nesting: [Int] = []
    private var marks: [Int] = []
    private var memo: [Int: (value: PickleValue, nesting: Int)] = [:]
    private var globalsSeen: [(global: PickleGlobal, offset: Int)] = []
    private var globalSet = Set<PickleGlobal>()
    private var opcodeOffset = 0

    private init(bytes: UnsafeRawBufferPointer, allowed: Set<PickleGlobal>?, limits: PickleLimits) {
        self.bytes = bytes
        self.allowed = allowed
        self.limits = limits
    }

    // MARK: reading

    private mutating func take(_ n: Int) throws -> UnsafeRawBufferPointer {
        guard n >= 0, n <= bytes.count - position else { throw PickleError.truncated(offset: position) }
        defer { position += n }
        return UnsafeRawBufferPointer(rebasing: bytes[position..<(position + n)])
    }

    private mutating func u8() throws -> Int { Int(try take(1)[0]) }
    private mutating func u16() throws -> Int { Int(UInt16(littleEndian: try take(2).loadUnaligned(as: UInt16.self))) }
    private mutating func u32() throws -> Int { Int(UInt32(littleEndian: try take(4).loadUnaligned(as: UInt32.self))) }
    private mutating func i32() throws -> Int { Int(Int32(littleEndian: try take(4).loadUnaligned(as: Int32.self))) }
    private mutating func u64() throws -> Int {
        let v = UInt64(littleEndian: try take(8).loadUnaligned(as: UInt64.self))
        guard v <= UInt64(bytes.count) else { throw PickleError.truncated(offset: position) }
        return Int(v)
    }

    private mutating func line() throws -> String {
        guard let end = bytes[position...].firstIndex(of: 0x0A) else { throw PickleError.truncated(offset: position) }
        let text = String(decoding: UnsafeRawBufferPointer(rebasing: bytes[position..<end]), as: UTF8.self)
        position = end + 1
        return text
    }

    /// The next `n` bytes as one string or bytes object's contents, `n` within `limits.stringBytes`.
    private mutating func text(_ n: Int) throws -> UnsafeRawBufferPointer {
        guard n <= limits.stringBytes else { throw PickleError.limitExceeded(offset: opcodeOffset, what: "bytes in one string", limit: limits.stringBytes) }
        return try take(n)
    }

    private mutating func utf8(_ n: Int) throws -> String {
        let raw = try text(n)
        guard let s = String(validating: raw, as: UTF8.self) else {
            throw PickleError.malformed(offset: position - n, detail: "string is not valid UTF-8")
        }
        return s
    }

    // MARK: stack

    private mutating func push(_ v: PickleValue, nesting n: Int = 0) throws {
        guard stack.count < limits.stackDepth else { throw PickleError.limitExceeded(offset: opcodeOffset, what: "stack depth", limit: limits.stackDepth) }
        guard arena.count <= limits.containers else {
            throw PickleError.limitExceeded(offset: opcodeOffset, what: "lists, dicts and objects", limit: limits.containers)
        }
        guard n <= limits.valueNesting else {
            throw PickleError.limitExceeded(offset: opcodeOffset, what: "values nested in values (tuples, persistent ids)", limit: limits.valueNesting)
        }
        stack.append(v)
        nesting.append(n)
    }

    private mutating func pop() throws -> PickleValue { try popNested().value }

    /// The top value and how deeply values nest in it.
    private mutating func popNested() throws -> (value: PickleValue, nesting: Int) {
        guard let v = stack.popLast(), marks.last.map({ stack.count >= $0 }) ?? true else {
            throw PickleError.malformed(offset: opcodeOffset, detail: "stack underflow")
        }
        return (v, nesting.removeLast())
    }

    private mutating func popToMark() throws -> [PickleValue] { try popToMarkNested().values }

    /// The values above the last MARK and the deepest nesting among them.
    private mutating func popToMarkNested() throws -> (values: [PickleValue], nesting: Int) {
        guard let mark = marks.popLast(), mark <= stack.count else {
            throw PickleError.malformed(offset: opcodeOffset, detail: "no MARK on the stack")
        }
        defer {
            stack.removeSubrange(mark...)
            nesting.removeSubrange(mark...)
        }
        return (Array(stack[mark...]), nesting[mark...].max() ?? 0)
    }

    /// Pushes what a constructor made from arguments nested `argsNesting` deep: a value rebuilt from them as a
    /// tuple (`torch.Size`) nests as deeply as they did; objects, lists and dicts belong to the arena.
    private mutating func pushConstructed(_ v: PickleValue, from argsNesting: Int) throws {
        if case .tuple = v { try push(v, nesting: argsNesting) } else { try push(v) }
    }

    /// Pushes a tuple of `items`, one level deeper than the deepest of them.
    private mutating func pushTuple(_ items: [(value: PickleValue, nesting: Int)]) throws {
        try push(.tuple(items.map(\.value)), nesting: 1 + (items.map(\.nesting).max() ?? 0))
    }

    private mutating func memoize(_ index: Int) throws {
        guard let top = stack.last else { throw PickleError.malformed(offset: opcodeOffset, detail: "memoize on an empty stack") }
        guard memo.count < limits.memoEntries || memo[index] != nil else {
            throw PickleError.limitExceeded(offset: opcodeOffset, what: "memo entries", limit: limits.memoEntries)
        }
        memo[index] = (top, nesting.last ?? 0)
    }

    private mutating func fetch(_ index: Int) throws {
        guard let v = memo[index] else { throw PickleError.malformed(offset: opcodeOffset, detail: "memo key \(index) was never stored") }
        try push(v.value, nesting: v.nesting)
    }

    // MARK: globals and construction

    private mutating func named(_ module: String, _ name: String) throws -> PickleValue {
        let g = PickleGlobal(module, name)
        if globalSet.insert(g).inserted { globalsSeen.append((g, opcodeOffset)) }
        if let allowed, !allowed.contains(g) { throw PickleError.refusedGlobal(global: g.description, offset: opcodeOffset) }
        return .global(g)
    }

    private func construct(_ callable: PickleValue, _ args: [PickleValue]) throws -> PickleValue {
        guard case let .global(g) = callable else {
            throw PickleError.malformed(offset: opcodeOffset, detail: "cannot call a \(callable.kindName)")
        }
        switch (g.module, g.name) {
        case ("collections", "OrderedDict"), ("builtins", "dict"), ("__builtin__", "dict"):
            let d = arena.dict()
            if let first = args.first {
                guard args.count == 1, let pairs = first.sequence else { throw PickleError.malformed(offset: opcodeOffset, detail: "\(g) takes one sequence of pairs") }
                for p in pairs {
                    guard let kv = p.sequence, kv.count == 2 else { throw PickleError.malformed(offset: opcodeOffset, detail: "\(g) item is not a pair") }
                    d.set(kv[0], kv[1])
                }
            }
            return .dict(d)
        case ("builtins", "set"), ("builtins", "frozenset"), ("__builtin__", "set"), ("__builtin__", "frozenset"):
            return .list(arena.list(args.first?.sequence ?? []))
        case ("_codecs", "encode"):
            guard args.count == 2, let s = args[0].stringValue, let enc = args[1].stringValue, ["latin1", "latin-1"].contains(enc.lowercased()) else {
                throw PickleError.malformed(offset: opcodeOffset, detail: "_codecs.encode takes (str, 'latin1')")
            }
            var out: [UInt8] = []
            out.reserveCapacity(s.unicodeScalars.count)
            for u in s.unicodeScalars {
                guard u.value < 256 else { throw PickleError.malformed(offset: opcodeOffset, detail: "latin1 string holds U+\(String(u.value, radix: 16))") }
                out.append(UInt8(u.value))
            }
            return .bytes(out)
        case ("torch", "Size"):
            return .tuple(args.first?.sequence ?? [])
        default:
            return .object(arena.object(callable: g, args: args))
        }
    }

    /// Latin-1 bytes as a String, written straight as UTF-8 (at most two bytes each; no per-Character array,
    /// which cost ~18 times the string).
    static func latin1(_ raw: UnsafeRawBufferPointer) -> String {
        String(unsafeUninitializedCapacity: raw.count * 2) { out in
            var i = 0
            for b in raw {
                if b < 0x80 {
                    out[i] = b
                    i += 1
                } else {
                    out[i] = 0xC0 | b >> 6
                    out[i + 1] = 0x80 | b & 0x3F
                    i += 2
                }
            }
            return i
        }
    }

    private func integer(littleEndian raw: UnsafeRawBufferPointer) -> PickleValue {
        if raw.isEmpty { return .int(0) }
        if raw.count <= 8 {
            var v: UInt64 = 0
            for (i, b) in raw.enumerated() { v |= UInt64(b) << (8 * UInt64(i)) }
            if raw.count < 8, raw[raw.count - 1] & 0x80 != 0 { v |= ~0 << (8 * UInt64(raw.count)) }
            return .int(Int(Int64(bitPattern: v)))
        }
        return .bigInt(Array(raw))
    }

    // MARK: the loop

    private mutating func run() throws -> PickleValue {
        while true {
            opcodeOffset = position
            let byte = UInt8(try u8())
            guard let op = PickleOpcode(rawValue: byte) else { throw PickleError.unsupportedOpcode(opcode: byte, offset: opcodeOffset) }
            switch op {
            case .proto:
                let proto = try u8()
                guard proto <= 5 else { throw PickleError.malformed(offset: opcodeOffset, detail: "protocol \(proto) is newer than 5") }
            case .frame:
                _ = try u64()
            case .stop:
                guard stack.count == 1, marks.isEmpty else { throw PickleError.malformed(offset: opcodeOffset, detail: "STOP with \(stack.count) values on the stack") }
                return stack[0]
            case .pushNone, .newTrue, .newFalse, .binInt, .binInt1, .binInt2, .long1, .long4, .binFloat, .binUnicode, .shortBinUnicode,
                 .binUnicode8, .binString, .shortBinString, .binBytes, .shortBinBytes, .binBytes8, .byteArray8:
                try push(try scalar(op))
            case .emptyTuple, .tuple1, .tuple2, .tuple3, .tuple, .emptyList, .list, .append, .appends, .emptyDict, .dict, .setItem,
                 .setItems, .emptySet, .frozenSet, .addItems:
                try container(op)
            case .mark, .pop, .popMark, .dup, .binPut, .longBinPut, .memoize, .binGet, .longBinGet:
                try stackOrMemo(op)
            case .global, .stackGlobal, .reduce, .newObj, .newObjEx, .build, .binPersID, .inst:
                try object(op)
            }
        }
    }

    /// A scalar opcode's value (its argument read from the bytes).
    private mutating func scalar(_ op: PickleOpcode) throws -> PickleValue {
        switch op {
        case .pushNone: return .none
        case .newTrue: return .bool(true)
        case .newFalse: return .bool(false)
        case .binInt: return .int(try i32())
        case .binInt1: return .int(try u8())
        case .binInt2: return .int(try u16())
        case .long1: return integer(littleEndian: try take(try u8()))
        case .long4:
            let n = try i32()
            guard n >= 0, n <= limits.integerBytes else { throw PickleError.limitExceeded(offset: opcodeOffset, what: "integer bytes", limit: limits.integerBytes) }
            return integer(littleEndian: try take(n))
        case .binFloat: return .float(Double(bitPattern: UInt64(bigEndian: try take(8).loadUnaligned(as: UInt64.self))))  // big-endian
        case .binUnicode: return .string(try utf8(try u32()))
        case .shortBinUnicode: return .string(try utf8(try u8()))
        case .binUnicode8: return .string(try utf8(try u64()))
        case .binString, .shortBinString:  // latin-1
            return .string(Self.latin1(try text(op == .shortBinString ? try u8() : try i32())))
        case .binBytes: return .bytes(Array(try text(try u32())))
        case .shortBinBytes: return .bytes(Array(try text(try u8())))
        default: return .bytes(Array(try text(try u64())))  // BINBYTES8, BYTEARRAY8
        }
    }

    /// Builds or fills a tuple, list, dict or set.
    private mutating func container(_ op: PickleOpcode) throws {
        func list(_ opcode: String) throws -> PickleList {
            guard case let .list(l)? = stack.last else { throw PickleError.malformed(offset: opcodeOffset, detail: "\(opcode) to a non-list") }
            return l
        }
        func dict(_ opcode: String) throws -> PickleDict {
            guard case let .dict(d)? = stack.last else {
                throw PickleError.malformed(offset: opcodeOffset, detail: "\(opcode) on a \(stack.last?.kindName ?? "empty stack")")
            }
            return d
        }
        switch op {
        case .emptyTuple: try push(.tuple([]))
        case .tuple1: try pushTuple([try popNested()])
        case .tuple2: let b = try popNested(); let a = try popNested(); try pushTuple([a, b])
        case .tuple3: let c = try popNested(); let b = try popNested(); let a = try popNested(); try pushTuple([a, b, c])
        case .tuple:
            let items = try popToMarkNested()
            try push(.tuple(items.values), nesting: 1 + items.nesting)
        case .emptyList, .emptySet: try push(.list(arena.list()))
        case .list, .frozenSet: try push(.list(arena.list(try popToMark())))
        case .emptyDict: try push(.dict(arena.dict()))
        case .dict:
            let items = try popToMark()
            let d = arena.dict()
            try setItems(d, items)
            try push(.dict(d))
        case .addItems:
            let items = try popToMark()
            guard case let .list(l) = try pop() else { throw PickleError.malformed(offset: opcodeOffset, detail: "ADDITEMS on a non-set") }
            l.items += items
            try push(.list(l))
        case .append:
            let v = try pop()
            try list("APPEND").items.append(v)
        case .appends:
            let items = try popToMark()
            try list("APPENDS").items += items
        case .setItem:
            let v = try pop(); let k = try pop()
            try dict("SETITEM").set(k, v)
        default:  // SETITEMS
            let items = try popToMark()
            try setItems(try dict("SETITEMS"), items)
        }
    }

    /// MARK, POP, DUP and the memo.
    private mutating func stackOrMemo(_ op: PickleOpcode) throws {
        switch op {
        case .mark:
            guard marks.count < limits.markDepth else { throw PickleError.limitExceeded(offset: opcodeOffset, what: "MARK depth", limit: limits.markDepth) }
            marks.append(stack.count)
        case .pop: _ = try pop()
        case .popMark: _ = try popToMark()
        case .dup:
            guard let top = stack.last else { throw PickleError.malformed(offset: opcodeOffset, detail: "DUP on an empty stack") }
            try push(top, nesting: nesting.last ?? 0)
        case .binPut: try memoize(try u8())
        case .longBinPut: try memoize(try u32())
        case .memoize: try memoize(memo.count)
        case .binGet: try fetch(try u8())
        default: try fetch(try u32())  // LONG_BINGET
        }
    }

    /// Globals (checked against the allow-list), constructed objects, BUILD and persistent ids.
    private mutating func object(_ op: PickleOpcode) throws {
        switch op {
        case .global:
            let module = try line(); let name = try line()
            try push(try named(module, name))
        case .stackGlobal:
            let n = try pop(); let m = try pop()
            guard let module = m.stringValue, let name = n.stringValue else {
                throw PickleError.malformed(offset: opcodeOffset, detail: "STACK_GLOBAL needs two strings, found \(m.kindName) and \(n.kindName)")
            }
            try push(try named(module, name))
        case .reduce, .newObj, .newObjEx:
            if op == .newObjEx { _ = try pop() }  // its keyword arguments
            let args = try popNested(); let callable = try pop()
            guard let a = args.value.tupleValue else {
                throw PickleError.malformed(offset: opcodeOffset, detail: op == .reduce ? "REDUCE arguments are a \(args.value.kindName), not a tuple"
                                            : "\(op == .newObj ? "NEWOBJ" : "NEWOBJ_EX") arguments are not a tuple")
            }
            try pushConstructed(try construct(callable, a), from: args.nesting)
        case .build:
            let state = try pop()
            guard let target = stack.last else { throw PickleError.malformed(offset: opcodeOffset, detail: "BUILD on an empty stack") }
            switch target {
            case let .object(o): o.state = state
            case let .dict(d): d.state = state
            default: throw PickleError.malformed(offset: opcodeOffset, detail: "BUILD on a \(target.kindName)")
            }
        case .binPersID:
            let id = try popNested()
            try push(.persistent(id.value), nesting: 1 + id.nesting)
        default:  // INST names a class inline: the global is checked (and reported), then the opcode refused
            let module = try line(); let name = try line()
            _ = try named(module, name)
            throw PickleError.unsupportedOpcode(opcode: op.rawValue, offset: opcodeOffset)
        }
    }

    private func setItems(_ d: PickleDict, _ items: [PickleValue]) throws {
        guard items.count % 2 == 0 else { throw PickleError.malformed(offset: opcodeOffset, detail: "odd number of items for a dict") }
        var i = 0
        while i < items.count {
            d.set(items[i], items[i + 1])
            i += 2
        }
    }
}
