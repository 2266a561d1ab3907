#if canImport(Glibc)
import Glibc
#endif

/// A one-line progress display on standard error: redrawn in place at most ten times a second, shown only
/// when enabled (the CLI enables it when standard error is a terminal and `--quiet` is absent).
public final class Progress: @unchecked Sendable {
    private let enabled: Bool
    private var label = ""
    private var total = 0
    private var done = 0
    private var lastDraw = 0.0
    private var drawn = false
    private var unit = Unit.bytes
    private var started = 0.0

    /// Where a step stands in a longer job, shown before it (a release's `2/4 NAME-int8`); nil: nothing.
    public var context: String?

    /// A longer job's place: `step` of `steps` done (a release's artifacts, then its cards and archives), drawn as a
    /// bar before the context that the current step's share fills in; nil: no bar.
    public var overall: (step: Int, steps: Int)?

    /// The overall bar's width in cells.
    static let barWidth = 20

    /// What a step counts: bytes (shown as sizes) or tokens (shown with their rate and the time left).
    public enum Unit: Sendable { case bytes, tokens }

    public init(enabled: Bool) { self.enabled = enabled }

    /// A progress display that never prints.
    public static let silent = Progress(enabled: false)

    /// Whether standard error is a terminal.
    public static var standardErrorIsTerminal: Bool { isatty(2) == 1 }

    /// Starts a step; `total` bytes or tokens (0 when unknown).
    public func begin(_ label: String, total: Int, unit: Unit = .bytes) {
        self.label = label
        self.total = total
        self.unit = unit
        done = 0
        started = Self.now
        draw(force: true)
    }

    private static var now: Double {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
    }

    public func advance(_ bytes: Int) {
        done += bytes
        draw(force: false)
    }

    /// Ends the step and clears the line.
    public func end() {
        guard enabled, drawn else { return }
        emit("\r\u{1B}[K")
        drawn = false
    }

    private func draw(force: Bool) {
        guard enabled else { return }
        let now = Self.now
        guard force || now - lastDraw >= 0.1 else { return }
        lastDraw = now
        var line = "\r\u{1B}[Karapack: " + (overall.map { Self.bar($0.step, of: $0.steps, within: total > 0 ? Double(done) / Double(total) : 0) + " " } ?? "")
            + (context.map { "[\($0)] " } ?? "") + label
        if total > 0, unit == .bytes {
            line += " \(done * 100 / total)% (\(Self.size(done)) of \(Self.size(total)))"
        } else if total > 0 {
            let rate = Double(done) / max(now - started, 1e-9)
            line += " \(done * 100 / total)% (\(done) of \(total) tokens"
                + (done > 0 ? ", \(Int(rate.rounded())) tokens/s, ETA \(Int((Double(total - done) / rate).rounded())) s)" : ")")
        }
        emit(line)
        drawn = true
    }

    private func emit(_ s: String) {
        let bytes = Array(s.utf8)
        _ = bytes.withUnsafeBytes { write(2, $0.baseAddress, $0.count) }
    }

    /// The overall bar: `step` of `steps` whole, the current one `within` (0...1) done, e.g. `▕██████▌             ▏ 33%`.
    static func bar(_ step: Int, of steps: Int, within: Double) -> String {
        let share = (Double(step) + min(max(within, 0), 1)) / Double(max(steps, 1))
        let halves = Int((share * Double(2 * barWidth)).rounded(.down))
        let cells = String(repeating: "█", count: halves / 2) + (halves % 2 == 1 ? "▌" : "")
        return "▕" + cells + String(repeating: " ", count: barWidth - halves / 2 - halves % 2) + "▏ \(Int((share * 100).rounded(.down)))%"
    }

    /// "1.23 GB" style sizes.
    public static func size(_ bytes: Int) -> String {
        let units = ["B", "kB", "MB", "GB", "TB"]
        var v = Double(bytes), i = 0
        while v >= 1000, i < units.count - 1 { v /= 1000; i += 1 }
        if i == 0 { return "\(bytes) B" }
        let scaled = Int((v * 100).rounded())
        return "\(scaled / 100).\(scaled % 100 < 10 ? "0" : "")\(scaled % 100) \(units[i])"
    }
}
