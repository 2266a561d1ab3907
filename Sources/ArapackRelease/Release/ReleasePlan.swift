import ArapackFormats
import ArapackTensor

/// What `arapack release` writes: settings for the whole release (the source, the repository id, the tokenizer, the
/// shards for the quality table, …) and one table of settings per artifact, each in `convert`'s words (a key is a
/// convert flag without its dashes, `-` spelled `_`). Read from a plan file kept in the training repository (TOML, the
/// subset a plan needs: comments, `key = value` with strings, integers, booleans and arrays of strings, and
/// `[[artifact]]` tables), or made from flags. Every setting remembers its line, so the errors of the convert
/// arguments it turns into name it.
public struct ReleasePlan: Equatable, Sendable {
    /// One `key = value`, where it was written (line 0: from a flag).
    public struct Setting: Equatable, Sendable {
        public var key: String
        public var value: Value
        public var line: Int
        public init(key: String, value: Value, line: Int = 0) {
            (self.key, self.value, self.line) = (key, value, line)
        }
    }

    public enum Value: Equatable, Sendable {
        case string(String)
        case integer(Int)
        /// A float, kept as written (convert reads it as its flag's value).
        case float(String)
        case boolean(Bool)
        case strings([String])

        /// As TOML writes it.
        var toml: String {
            switch self {
            case let .string(s): return Self.quoted(s)
            case let .integer(i): return String(i)
            case let .float(f): return f
            case let .boolean(b): return b ? "true" : "false"
            case let .strings(a): return "[" + a.map(Self.quoted).joined(separator: ", ") + "]"
            }
        }

        /// A TOML basic string: JSON's string escapes are TOML's, and DEL, which JSON leaves raw and TOML does not
        /// allow raw, escaped too.
        static func quoted(_ s: String) -> String {
            var out = ""
            for scalar in JSONValue.string(s).serialized().unicodeScalars {
                if scalar == "\u{7F}" { out += "\\u007F" } else { out.unicodeScalars.append(scalar) }
            }
            return out
        }
    }

    /// One artifact: its settings and the line of its `[[artifact]]` header (0: from a flag).
    public struct Artifact: Equatable, Sendable {
        public var settings: [Setting]
        public var line: Int
        public init(settings: [Setting], line: Int = 0) { (self.settings, self.line) = (settings, line) }

        public func value(_ key: String) -> Value? { settings.first { $0.key == key }?.value }
    }

    /// Where the plan came from (a file's path, or "the flags").
    public var origin: String
    /// Settings for every artifact (and `source`, which names SRC).
    public var settings: [Setting]
    public var artifacts: [Artifact]

    public init(origin: String, settings: [Setting], artifacts: [Artifact]) {
        (self.origin, self.settings, self.artifacts) = (origin, settings, artifacts)
    }

    public func value(_ key: String) -> Value? { settings.first { $0.key == key }?.value }

    /// The keys that belong to the whole release only: the model is read once, with one source, config and tokenizer.
    public static let releaseKeys: Set<String> = ["source", "config", "tokenizer", "allow_untied", "tokens", "token_dtype", "seq_len"]

    /// The most a plan file may hold (a plan is a few dozen lines).
    public static let maximumBytes = 1 << 20
    public static let maximumArtifacts = 64

    /// The plan as TOML (what `--print-plan` shows): the release's settings, then each artifact's table.
    public var toml: String {
        var lines = settings.map { "\($0.key) = \($0.value.toml)" }
        for a in artifacts {
            lines += ["", "[[artifact]]"] + a.settings.map { "\($0.key) = \($0.value.toml)" }
        }
        return lines.joined(separator: "\n") + "\n"
    }

    /// Reads a plan file.
    public static func read(_ path: String) throws -> ReleasePlan {
        let file = try MappedFile(path: path)
        guard file.count <= maximumBytes else { throw PlanError(file: path, line: 0, problem: "larger than \(maximumBytes) bytes; a plan is a few dozen lines") }
        guard let text = file.withUnsafeBytes({ String(validating: $0, as: UTF8.self) }) else {
            throw PlanError(file: path, line: 0, problem: "not UTF-8 text")
        }
        return try parse(text, origin: path)
    }

    /// Parses plan text (the TOML subset above); the first problem is thrown with its line. Read by Unicode scalars, not
    /// by characters: a combining mark after a quote or a bracket must not merge with it.
    public static func parse(_ text: String, origin: String) throws -> ReleasePlan {
        var plan = ReleasePlan(origin: origin, settings: [], artifacts: [])
        let all = Array(text.unicodeScalars)
        var number = 0, start = 0
        while start <= all.count {
            number += 1
            let end = all[start...].firstIndex(of: "\n") ?? all.count
            var line = all[start..<end]
            start = end + 1
            func fail(_ problem: String) -> PlanError { PlanError(file: origin, line: number, problem: problem) }
            if line.last == "\r" { line = line.dropLast() }
            let content = trimmed(try stripComment(line))
            if content.isEmpty { continue }
            if content.first == "[" {
                guard string(content) == "[[artifact]]" else {
                    throw fail("\(string(content.prefix(60))) is not a table a plan has (only [[artifact]])")
                }
                guard plan.artifacts.count < maximumArtifacts else { throw fail("more than \(maximumArtifacts) artifacts") }
                plan.artifacts.append(Artifact(settings: [], line: number))
                continue
            }
            guard let equals = content.firstIndex(of: "=") else { throw fail("expected key = value, found \(string(content.prefix(60)))") }
            let key = string(trimmed(content[..<equals]))
            guard !key.isEmpty, key.unicodeScalars.allSatisfy({ $0.isASCII && ($0.properties.isAlphabetic || ("0"..."9").contains($0) || $0 == "_") }) else {
                throw fail("\"\(key.prefix(60))\" is not a plan key (letters, digits and _)")
            }
            let value = try parseValue(trimmed(content[(equals + 1)...]), fail: fail)
            let setting = Setting(key: key, value: value, line: number)
            if plan.artifacts.isEmpty {
                if plan.settings.contains(where: { $0.key == key }) { throw fail("\(key) is set twice") }
                plan.settings.append(setting)
            } else {
                if plan.artifacts[plan.artifacts.count - 1].settings.contains(where: { $0.key == key }) { throw fail("\(key) is set twice in this artifact") }
                plan.artifacts[plan.artifacts.count - 1].settings.append(setting)
            }
        }
        return plan
    }

    typealias Scalars = ArraySlice<Unicode.Scalar>

    static func string(_ s: Scalars) -> String { String(String.UnicodeScalarView(s)) }

    static func trimmed(_ s: Scalars) -> Scalars {
        var s = s
        while let f = s.first, f == " " || f == "\t" { s = s.dropFirst() }
        while let l = s.last, l == " " || l == "\t" { s = s.dropLast() }
        return s
    }

    /// The line without a `#` comment that is not inside a string.
    static func stripComment(_ line: Scalars) throws -> Scalars {
        var inString = false, escaped = false
        for i in line.indices {
            let c = line[i]
            if inString {
                if escaped { escaped = false } else if c == "\\" { escaped = true } else if c == "\"" { inString = false }
            } else if c == "\"" {
                inString = true
            } else if c == "#" {
                return line[..<i]
            }
        }
        return line
    }

    static func parseValue(_ text: Scalars, fail: (String) -> PlanError) throws -> Value {
        let whole = string(text)
        if whole == "true" { return .boolean(true) }
        if whole == "false" { return .boolean(false) }
        if text.first == "\"" {
            var rest = text
            let s = try parseString(&rest, fail: fail)
            guard trimmed(rest).isEmpty else { throw fail("unexpected \(string(rest.prefix(40))) after a string") }
            return .string(s)
        }
        if text.first == "[" {
            var rest = text.dropFirst()
            var items: [String] = []
            while true {
                rest = rest.drop { $0 == " " || $0 == "\t" }
                if rest.first == "]" { rest = rest.dropFirst(); break }
                guard rest.first == "\"" else { throw fail("an array in a plan holds strings: found \(rest.isEmpty ? "the end of the line" : string(rest.prefix(40)))") }
                items.append(try parseString(&rest, fail: fail))
                rest = rest.drop { $0 == " " || $0 == "\t" }
                if rest.first == "," { rest = rest.dropFirst() } else if rest.first != "]" {
                    throw fail("expected , or ] in the array, found \(rest.isEmpty ? "the end of the line" : string(rest.prefix(40)))")
                }
            }
            guard trimmed(rest).isEmpty else { throw fail("unexpected \(string(rest.prefix(40))) after an array") }
            return .strings(items)
        }
        let isDigit = { (c: Unicode.Scalar) in ("0"..."9").contains(c) }
        let digits = text.first == "-" || text.first == "+" ? text.dropFirst() : text
        if !digits.isEmpty, digits.allSatisfy({ isDigit($0) || $0 == "_" }), digits.first != "_", digits.last != "_",
           let n = Int(whole.filter { $0 != "_" }) {
            return .integer(n)
        }
        let mantissa = digits.filter { $0 != "_" }
        if mantissa.contains(where: { $0 == "." || $0 == "e" || $0 == "E" }), mantissa.first.map(isDigit) == true,
           mantissa.allSatisfy({ isDigit($0) || "._eE+-".unicodeScalars.contains($0) }), let v = Double(whole.filter { $0 != "_" }), v.isFinite {
            return .float(whole.filter { $0 != "_" })
        }
        throw fail(text.isEmpty ? "a key without a value" : "\(string(text.prefix(60))) is not a value a plan takes (a \"string\", a number, true, false or [\"strings\"])")
    }

    /// A basic TOML string starting at `rest` (which moves past it).
    static func parseString(_ rest: inout Scalars, fail: (String) -> PlanError) throws -> String {
        var scalars = rest.dropFirst()
        var out = String.UnicodeScalarView()
        while let c = scalars.popFirst() {
            switch c {
            case "\"":
                rest = scalars
                return String(out)
            case "\\":
                guard let e = scalars.popFirst() else { throw fail("a string ends inside an escape") }
                switch e {
                case "\"": out.append("\"")
                case "\\": out.append("\\")
                case "n": out.append("\n")
                case "t": out.append("\t")
                case "r": out.append("\r")
                case "b": out.append("\u{8}")
                case "f": out.append("\u{C}")
                case "u", "U":
                    let count = e == "u" ? 4 : 8
                    let hex = scalars.prefix(count)
                    guard hex.count == count, hex.allSatisfy({ ("0"..."9").contains($0) || ("a"..."f").contains($0) || ("A"..."F").contains($0) }),
                          let v = UInt32(string(hex), radix: 16), let scalar = Unicode.Scalar(v) else {
                        throw fail("\\\(e)\(string(hex)) is not a Unicode scalar")
                    }
                    scalars = scalars.dropFirst(count)
                    out.append(scalar)
                default: throw fail("\\\(e) is not an escape a string takes")
                }
            default:
                if c.value < 0x20 && c != "\t" || c.value == 0x7F { throw fail("a control character inside a string") }
                out.append(c)
            }
        }
        throw fail("a string without its closing quote")
    }
}

/// A plan file that cannot be read as a plan, or a setting convert refuses (exit 64): the file, the line, the problem.
public struct PlanError: Error, Equatable, CustomStringConvertible, Sendable {
    public var file: String
    /// 0 when no line is to blame.
    public var line: Int
    public var problem: String
    public init(file: String, line: Int, problem: String) { (self.file, self.line, self.problem) = (file, line, problem) }
    public var description: String { file + (line > 0 ? ":\(line)" : "") + ": " + problem }
}

extension String {
    /// The string without the characters of `set` at either end.
    public func trimming(_ set: String) -> String {
        var s = Substring(self)
        while let f = s.first, set.contains(f) { s = s.dropFirst() }
        while let l = s.last, set.contains(l) { s = s.dropLast() }
        return String(s)
    }
}
