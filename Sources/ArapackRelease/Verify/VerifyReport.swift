import ArapackFormats
import ArapackModel
import ArapackTensor
#if canImport(Glibc)
import Glibc
#endif

/// The result of `arapack verify`: each check with its outcome, and every problem found.
public struct VerifyReport: Sendable {
    public struct Check: Sendable {
        public var name: String
        public var problems: [String]
        /// What a passing check has to say all the same (`none`: the release carries no tokenizer; `mismatch (recorded:
        /// …)`): the line reads `note` instead of `ok`, and the verdict is unchanged.
        public var note: String? = nil
        public var ok: Bool { problems.isEmpty }

        public init(name: String, problems: [String], note: String? = nil) {
            self.name = name
            self.problems = problems
            self.note = note
        }

        /// The check's line in verify's text.
        var line: String {
            if !ok { return "FAIL  " + name + ": " + problems.joined(separator: "; ") }
            return note.map { "note  \(name): \($0)" } ?? "ok    " + name
        }
    }

    public var path: String
    public var checks: [Check] = []
    public var problems: [String] { checks.flatMap { c in c.problems.map { "\(c.name): \($0)" } } }
    public var passed: Bool { problems.isEmpty }

    /// One line per check.
    public var text: String {
        var lines = ["verify \(path)"]
        lines += checks.map(\.line)
        lines.append(passed ? "passed" : "FAILED: \(problems.count) problem(s)")
        return lines.map(\.escapingControlCharacters).joined(separator: "\n")
    }
}
