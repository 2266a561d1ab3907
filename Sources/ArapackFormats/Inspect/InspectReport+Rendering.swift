import ArapackTensor

/// The report as JSON (described by Schemas/inspect.schema.json) and as a text table.
extension InspectReport {
    /// The JSON document `arapack inspect --json` prints.
    public var json: JSONValue {
        var root: [JSONValue.Member] = [
            .init("arapack_inspect_version", .int(1)),
            .init("path", .string(path)),
            .init("format", .string(format)),
            .init("files", .array(files.map { f in
                var m: [JSONValue.Member] = [.init("path", .string(f.path)), .init("bytes", .int(f.bytes))]
                if let d = f.sha256 { m.append(.init("sha256", .string(d))) }
                return .object(m)
            })),
            .init("metadata", .object(metadata.keys.sorted().map { .init($0, .string(metadata[$0]!)) })),
            .init("tensor_count", .int(tensors.count)),
            .init("parameter_count", .int(parameterCount)),
            .init("element_count", .int(elementCount)),
            .init("tensor_bytes", .int(tensorBytes)),
            .init("dtypes", .array(dtypeTotals.map { t in
                .object([.init("dtype", .string(t.name)), .init("tensors", .int(t.tensors)),
                         .init("elements", .int(t.elements)), .init("parameters", .int(t.parameters)), .init("bytes", .int(t.bytes))])
            })),
        ]
        if let c = checkpoint {
            var m: [JSONValue.Member] = [
                .init("state_dict_key", c.stateDictKey.map { .string($0) } ?? .null),
                .init("top_level", .array(c.topLevel.map { .object([.init("key", .string($0.key)), .init("kind", .string($0.kind))]) })),
                .init("step", c.step.map { .int($0) } ?? .null),
                .init("has_optimizer", .bool(c.hasOptimizer)),
                .init("other_tensors", .int(c.otherTensors)),
                .init("other_tensor_bytes", .int(c.otherTensorBytes)),
                .init("tied_groups", .array(c.sharedGroups.map { .array($0.map { .string($0) }) })),
            ]
            if let config = c.config { m.append(.init("config", config)) }
            root.append(.init("checkpoint", .object(m)))
        }
        if let globals {
            root.append(.init("globals", .array(globals.map {
                .object([.init("global", .string($0.global)), .init("safety", .string($0.safety.rawValue)), .init("offset", .int($0.offset))])
            })))
        }
        root.append(.init("tensors", .array(tensors.map { r in
            var m: [JSONValue.Member] = [
                .init("name", .string(r.name)), .init("dtype", .string(r.typeName)),
                .init("shape", .array(r.shape.map { .int($0) })), .init("bytes", .int(r.bytes)),
            ]
            if let f = r.file { m.append(.init("file", .string(f))) }
            if let n = r.nonFinite { m.append(.init("non_finite", .int(n))) }
            if let s = r.sharesWith { m.append(.init("shares_storage_with", .string(s))) }
            return .object(m)
        })))
        return .object(root)
    }

    /// The human-readable report; names from the file have their control characters escaped, so none can
    /// forge or split a line.
    public var text: String {
        var lines: [String] = []
        lines.append("path        \(path)")
        lines.append("format      \(format)")
        for f in files {
            lines.append("file        \(splitPath(f.path).1)  \(grouped(f.bytes)) bytes" + (f.sha256.map { "  sha256 \($0)" } ?? ""))
        }
        if !metadata.isEmpty {
            // Long values shortened on the terminal only (the JSON carries them whole).
            let shown = { (v: String) in v.count > 120 ? String(v.prefix(120)) + "…" : v }
            lines.append("metadata    " + metadata.keys.sorted().map { "\($0)=\(shown(metadata[$0]!))" }.joined(separator: ", "))
        }
        if let c = checkpoint {
            lines.append("checkpoint  " + (c.stateDictKey.map { "training dict, state dict under \"\($0)\"" } ?? "bare state dict")
                         + (c.step.map { ", step \($0)" } ?? ""))
            if !c.topLevel.isEmpty { lines.append("keys        " + c.topLevel.map { "\($0.key) (\($0.kind))" }.joined(separator: ", ")) }
            if c.otherTensors > 0 || c.hasOptimizer {
                lines.append("other       \(c.otherTensors) tensors outside the state dict, \(grouped(c.otherTensorBytes)) bytes (not read)"
                             + (c.hasOptimizer ? "; optimizer state present" : ""))
            }
            if let config = c.config { lines.append("config      " + config.serialized()) }
            for g in c.sharedGroups { lines.append("shared      " + g.joined(separator: " = ") + " (one storage)") }
        }
        if let globals {
            let count = { (s: TorchGlobals.Safety) in globals.filter { $0.safety == s }.count }
            lines.append("globals     \(globals.count) referenced: \(count(.safe)) safe, \(count(.unknown)) unknown, \(count(.dangerous)) dangerous")
            for g in globals where g.safety != .safe { lines.append("  \(g.safety.rawValue.uppercased())  \(g.global)  (data.pkl byte \(g.offset))") }
        }
        guard !tensors.isEmpty || files.count > 1 || globals == nil else { return lines.map(\.escapingControlCharacters).joined(separator: "\n") }
        let shared = tensors.filter { $0.sharesWith != nil }.count
        let packed = parameterCount != elementCount
        lines.append("tensors     \(tensors.count)   parameters \(grouped(parameterCount))"
                     + (packed ? "   elements \(grouped(elementCount))" : "") + "   bytes \(grouped(tensorBytes))"
                     + (shared > 0 ? "   (\(shared) shared view\(shared == 1 ? "" : "s") counted once)" : ""))
        if packed {
            lines.append("            (quantized layers: a packed int4 word holds 8 parameters; scales, zero points and shapes hold none)")
        }
        lines.append("")
        var table: [[String]] = [["name", "dtype", "shape", "bytes"] + (tensors.contains { $0.file != nil } ? ["file"] : [])
            + (tensors.contains { $0.nonFinite != nil } ? ["nan/inf"] : [])]
        for r in tensors {
            var row = [r.name, r.typeName, "[" + r.shape.map(String.init).joined(separator: ", ") + "]", grouped(r.bytes)]
            if let f = r.file { row.append(f) }
            if let n = r.nonFinite { row.append(String(n)) }
            if let s = r.sharesWith { row[3] = "= " + s }
            table.append(row)
        }
        lines += alignColumns(table, rightAligned: [3])
        lines.append("")
        var totals: [[String]] = [["dtype", "tensors", "parameters", "bytes"] + (packed ? ["elements"] : [])]
        for t in dtypeTotals {
            totals.append([t.name, String(t.tensors), grouped(t.parameters), grouped(t.bytes)] + (packed ? [grouped(t.elements)] : []))
        }
        lines += alignColumns(totals, rightAligned: [1, 2, 3, 4])
        if tensors.contains(where: { $0.nonFinite != nil }) {
            let bad = tensors.filter { ($0.nonFinite ?? 0) > 0 }
            lines.append("")
            lines.append(bad.isEmpty ? "data check  all files hashed; no NaN or Inf in any floating tensor"
                                     : "data check  NaN/Inf found in \(bad.count) tensor(s): " + bad.map(\.name).joined(separator: ", "))
        }
        return lines.map(\.escapingControlCharacters).joined(separator: "\n")
    }
}

/// `1234567` → `1,234,567`.
public func grouped(_ n: Int) -> String {
    let digits = String(n.magnitude)
    var out = ""
    for (i, c) in digits.enumerated() {
        if i > 0, (digits.count - i) % 3 == 0 { out.append(",") }
        out.append(c)
    }
    return (n < 0 ? "-" : "") + out
}

/// Pads the cells of `rows` so columns line up; columns in `rightAligned` are right-justified.
public func alignColumns(_ rows: [[String]], rightAligned: Set<Int> = []) -> [String] {
    let widths = (0..<(rows.map(\.count).max() ?? 0)).map { c in rows.map { c < $0.count ? $0[c].count : 0 }.max() ?? 0 }
    return rows.map { row in
        row.enumerated().map { c, cell in
            let pad = String(repeating: " ", count: widths[c] - cell.count)
            return rightAligned.contains(c) ? pad + cell : (c == row.count - 1 ? cell : cell + pad)
        }.joined(separator: "  ")
    }
}
