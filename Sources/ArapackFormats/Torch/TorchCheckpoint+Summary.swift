import ArapackTensor

/// What `inspect` says about a checkpoint beyond its tensor table.
public struct CheckpointSummary: Sendable {
    /// Where the state dict sits (nil: the file is a bare state dict).
    public var stateDictKey: String?
    /// Top-level keys of the training dict with the kind of each value.
    public var topLevel: [(key: String, kind: String)]
    /// `step` (or `global_step`, `iteration`) when the dict records one.
    public var step: Int?
    /// `config` as JSON, when present.
    public var config: JSONValue?
    /// Tensors outside the state dict (optimizer moments, EMA copies, …) and their bytes.
    public var otherTensors: Int
    public var otherTensorBytes: Int
    /// Whether an optimizer state is present (`optimizer`, `optimizer_state_dict` or `optim`).
    public var hasOptimizer: Bool
    /// Groups of state-dict names that share one storage view.
    public var sharedGroups: [[String]]
}

/// A global a pickle names, as the globals report lists it.
public struct GlobalReportRow: Sendable {
    public var global: String
    public var safety: TorchGlobals.Safety
    public var offset: Int

    /// The row for a global met at `offset`, classified.
    init(_ seen: (global: PickleGlobal, offset: Int)) {
        global = seen.global.description
        safety = TorchGlobals.classify(seen.global)
        offset = seen.offset
    }
}

extension TorchCheckpoint {
    /// Every global `data.pkl` of the checkpoint at `path` names, gathered without refusing any (nothing
    /// is ever called), classified for the report.
    public static func scanGlobals(path: String) throws -> [GlobalReportRow] {
        let archive = try ZipArchive(path: path)
        let result = try TorchArchive.unpickle(try TorchArchive.pickleEntry(of: archive, file: path), of: archive, file: path, allowed: nil)
        return result.globals.map(GlobalReportRow.init)
    }

    /// The structure of the training dict; tensors outside the state dict are counted, not read.
    public var summary: CheckpointSummary {
        var top: [(String, String)] = []
        var step: Int?
        var config: JSONValue?
        var hasOptimizer = false
        var others = 0, otherBytes = 0
        if case let .dict(d) = root, stateDictKey != nil || !d.entries.isEmpty {
            for (k, v) in d.entries {
                guard case let .string(key) = k else { continue }
                if stateDictKey == nil, Self.isTensor(v) { continue }
                top.append((key, v.kindName))
                if ["step", "global_step", "iteration"].contains(key), step == nil { step = v.intValue }
                if key == "config" { config = v.json(budget: 10_000) }
                if ["optimizer", "optimizer_state_dict", "optim"].contains(key) { hasOptimizer = true }
                if key != stateDictKey, stateDictKey != nil {
                    var seen = Set<ObjectIdentifier>()
                    var budget = 1_000_000
                    Self.countTensors(v, file: path, count: &others, bytes: &otherBytes, seen: &seen, budget: &budget)
                }
            }
        }
        return CheckpointSummary(stateDictKey: stateDictKey, topLevel: stateDictKey == nil ? [] : top, step: step, config: config,
                                 otherTensors: others, otherTensorBytes: otherBytes, hasOptimizer: hasOptimizer, sharedGroups: sharedGroups)
    }

    /// Counts the tensors (and their bytes) anywhere inside `v`, walking with a work list rather than
    /// recursion (a pickle can nest lists and dicts as deep as it likes), each container once, at most
    /// `budget` nodes.
    private static func countTensors(_ v: PickleValue, file: String, count: inout Int, bytes: inout Int, seen: inout Set<ObjectIdentifier>, budget: inout Int) {
        var work = [v]
        while let next = work.popLast(), budget > 0 {
            budget -= 1
            if let ref = try? TorchTensorRef(next, file: file, name: "") {
                count += 1
                bytes += Shape.byteCount(ref.shape, dtype: ref.dtype) ?? 0
                continue
            }
            switch next {
            case let .dict(d):
                guard seen.insert(ObjectIdentifier(d)).inserted else { continue }
                work += d.entries.reversed().map(\.value)
            case let .list(l):
                guard seen.insert(ObjectIdentifier(l)).inserted else { continue }
                work += l.items.reversed()
            case let .tuple(t):
                work += t.reversed()
            default: continue
            }
        }
    }
}

extension PickleValue {
    /// Strings longer than this (UTF-8 bytes) are rendered as a placeholder, not copied.
    public static let jsonStringLimit = 4096

    /// A JSON rendering of plain values (dicts with string keys, sequences, numbers, strings, bools, None);
    /// anything else becomes a descriptive string. Stops after `budget` nodes (the rest elided as "…"), so
    /// shared structures stay cheap; 32 levels deep; strings of at most `jsonStringLimit` bytes.
    public func json(budget: Int) -> JSONValue {
        var left = budget
        return json(&left, depth: 0)
    }

    private func json(_ left: inout Int, depth: Int) -> JSONValue {
        left -= 1
        guard left >= 0, depth < 32 else { return .string("…") }
        switch self {
        case .none: return .null
        case let .bool(b): return .bool(b)
        case let .int(i): return .int(i)
        case let .float(f): return .metric(f)
        case let .string(s): return s.utf8.count <= Self.jsonStringLimit ? .string(s) : .string("<str of \(s.utf8.count) bytes>")
        case let .dict(d):
            var members: [JSONValue.Member] = []
            for e in d.entries {
                guard left > 0 else { members.append(.init("…", .string("…"))); break }
                members.append(.init(e.key.stringValue ?? "\(e.key.kindName)", e.value.json(&left, depth: depth + 1)))
            }
            return .object(members)
        case .tuple, .list:
            var items: [JSONValue] = []
            for v in sequence ?? [] {
                guard left > 0 else { items.append(.string("…")); break }
                items.append(v.json(&left, depth: depth + 1))
            }
            return .array(items)
        default: return .string("<\(kindName)>")
        }
    }
}
