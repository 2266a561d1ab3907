import ArapackFormats
import ArapackModel
#if canImport(Glibc)
import Glibc
#endif

/// The four plots a release shows of its training run (SVG, every byte a function of the log): the training loss, the
/// validation loss, both together, and the learning rate, over the step (bottom axis) and the tokens seen (top axis,
/// when the log has them), the final losses annotated. The root element states the plot box and the data ranges
/// (`data-*` attributes), so a reader maps every point of each `polyline` back to a step and a value.
public enum TrainingPlots {
    public static let trainingLoss = "training_loss.svg", validationLoss = "validation_loss.svg"
    public static let bothLosses = "training_validation_loss.svg", learningRate = "learning_rate.svg"
    public static let fileNames = [trainingLoss, validationLoss, bothLosses, learningRate]

    static let width = 800.0, height = 480.0
    static let left = 90.0, right = 770.0, top = 80.0, bottom = 400.0

    /// The four files, in `fileNames`' order.
    public static func render(_ log: TrainingLog) -> [(name: String, bytes: [UInt8])] {
        let train = Line(label: "training loss", id: "train", color: "#1f77b4", series: log.trainLoss)
        let validation = Line(label: "validation loss", id: "validation", color: "#d62728", series: log.validationLoss)
        let rate = Line(label: "learning rate", id: "learning_rate", color: "#2ca02c", series: log.learningRate)
        return [
            (trainingLoss, svg(title: "Training loss", yLabel: "loss (nats)", lines: [train], tokens: log.tokens, annotate: true)),
            (validationLoss, svg(title: "Validation loss", yLabel: "loss (nats)", lines: [validation], tokens: log.tokens, annotate: true)),
            (bothLosses, svg(title: "Training and validation loss", yLabel: "loss (nats)", lines: [train, validation], tokens: log.tokens, annotate: true)),
            (learningRate, svg(title: "Learning rate", yLabel: "learning rate", lines: [rate], tokens: log.tokens, annotate: false)),
        ].map { ($0.0, Array($0.1.utf8)) }
    }

    struct Line {
        let label: String, id: String, color: String
        let series: TrainingLog.Series
    }

    static func svg(title: String, yLabel: String, lines: [Line], tokens: TrainingLog.Series, annotate: Bool) -> String {
        let steps = lines.flatMap(\.series.steps), values = lines.flatMap(\.series.values)
        var (x0, x1) = (steps.min() ?? 0, steps.max() ?? 1)
        if x0 == x1 { (x0, x1) = (x0 - 1, x1 + 1) }
        var (y0, y1) = (values.min() ?? 0, values.max() ?? 1)
        let pad = y1 > y0 ? (y1 - y0) * 0.05 : max(abs(y0) * 0.05, 1e-12)
        (y0, y1) = (y0 - pad, y1 + pad)
        func x(_ s: Double) -> Double { left + (s - x0) / (x1 - x0) * (right - left) }
        func y(_ v: Double) -> Double { bottom - (v - y0) / (y1 - y0) * (bottom - top) }

        var out = [
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"\(fixed(width))\" height=\"\(fixed(height))\" viewBox=\"0 0 \(fixed(width)) \(fixed(height))\""
                + " data-x-min=\"\(exact(x0))\" data-x-max=\"\(exact(x1))\" data-y-min=\"\(exact(y0))\" data-y-max=\"\(exact(y1))\""
                + " data-left=\"\(fixed(left))\" data-right=\"\(fixed(right))\" data-top=\"\(fixed(top))\" data-bottom=\"\(fixed(bottom))\""
                + " font-family=\"sans-serif\" font-size=\"12\">",
            "<title>\(escape(title))</title>",
            "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>",
            "<text x=\"\(fixed(width / 2))\" y=\"24\" text-anchor=\"middle\" font-size=\"16\">\(escape(title))</text>",
            "<rect x=\"\(fixed(left))\" y=\"\(fixed(top))\" width=\"\(fixed(right - left))\" height=\"\(fixed(bottom - top))\" fill=\"none\" stroke=\"#333\"/>",
        ]
        // The step axis below, the tokens-seen axis above (read off the log's tokens at each tick).
        for t in ticks(x0, x1) {
            out.append("<line x1=\"\(fixed(x(t)))\" y1=\"\(fixed(bottom))\" x2=\"\(fixed(x(t)))\" y2=\"\(fixed(bottom + 5))\" stroke=\"#333\"/>")
            out.append("<text class=\"step-tick\" x=\"\(fixed(x(t)))\" y=\"\(fixed(bottom + 18))\" text-anchor=\"middle\">\(compact(t))</text>")
            if let seen = interpolate(tokens, at: t) {
                out.append("<line x1=\"\(fixed(x(t)))\" y1=\"\(fixed(top))\" x2=\"\(fixed(x(t)))\" y2=\"\(fixed(top - 5))\" stroke=\"#333\"/>")
                out.append("<text class=\"tokens-tick\" x=\"\(fixed(x(t)))\" y=\"\(fixed(top - 9))\" text-anchor=\"middle\">\(compact(seen))</text>")
            }
        }
        out.append("<text x=\"\(fixed((left + right) / 2))\" y=\"\(fixed(bottom + 40))\" text-anchor=\"middle\">step</text>")
        out.append("<text x=\"\(fixed((left + right) / 2))\" y=\"\(fixed(top - 28))\" text-anchor=\"middle\">"
                   + (tokens.steps.isEmpty ? "tokens seen: not in the log" : "tokens seen") + "</text>")
        for t in ticks(y0, y1) {
            out.append("<line x1=\"\(fixed(left - 5))\" y1=\"\(fixed(y(t)))\" x2=\"\(fixed(left))\" y2=\"\(fixed(y(t)))\" stroke=\"#333\"/>")
            out.append("<text class=\"value-tick\" x=\"\(fixed(left - 8))\" y=\"\(fixed(y(t) + 4))\" text-anchor=\"end\">\(metricNumber(t))</text>")
        }
        out.append("<text x=\"20\" y=\"\(fixed((top + bottom) / 2))\" text-anchor=\"middle\" transform=\"rotate(-90 20 \(fixed((top + bottom) / 2)))\">\(escape(yLabel))</text>")
        for (i, line) in lines.enumerated() {
            let points = zip(line.series.steps, line.series.values).map { "\(fixed(x($0))),\(fixed(y($1)))" }.joined(separator: " ")
            out.append("<polyline data-series=\"\(line.id)\" fill=\"none\" stroke=\"\(line.color)\" stroke-width=\"1.5\" points=\"\(points)\"/>")
            if lines.count > 1 {
                out.append("<text x=\"\(fixed(right - 10))\" y=\"\(fixed(top + 18 + 16 * Double(i)))\" text-anchor=\"end\" fill=\"\(line.color)\">\(escape(line.label))</text>")
            }
            if annotate, let s = line.series.steps.last, let v = line.series.values.last {
                out.append("<circle cx=\"\(fixed(x(s)))\" cy=\"\(fixed(y(v)))\" r=\"3\" fill=\"\(line.color)\"/>")
                out.append("<text class=\"final\" data-series=\"\(line.id)\" x=\"\(fixed(x(s) - 6))\" y=\"\(fixed(y(v) - 8 - 16 * Double(i)))\" text-anchor=\"end\" fill=\"\(line.color)\">"
                           + "final \(escape(line.label)) \(metricText(v)) at step \(grouped(Int(s)))</text>")
            }
        }
        out.append("</svg>")
        return out.joined(separator: "\n") + "\n"
    }

    /// Round numbers between `a` and `b`: a 1, 2 or 5 times a power of ten apart, about five of them.
    static func ticks(_ a: Double, _ b: Double) -> [Double] {
        let raw = (b - a) / 5
        guard raw > 0, raw.isFinite else { return [a] }
        let magnitude = pow(10, floor(log10(raw)))
        let step = [1.0, 2, 5, 10].map { $0 * magnitude }.first { $0 >= raw } ?? 10 * magnitude
        var out: [Double] = []
        var k = (a / step).rounded(.up)
        while k * step <= b && out.count < 12 {
            out.append(k * step)
            k += 1
        }
        return out
    }

    /// The log's tokens seen at `step` (linear between its points); nil outside them or without tokens.
    static func interpolate(_ tokens: TrainingLog.Series, at step: Double) -> Double? {
        let s = tokens.steps, v = tokens.values
        guard let first = s.first, let last = s.last, step >= first, step <= last else { return nil }
        var i = 0
        while i + 1 < s.count && s[i + 1] < step { i += 1 }
        guard i + 1 < s.count else { return v[i] }
        let t = s[i + 1] == s[i] ? 0 : (step - s[i]) / (s[i + 1] - s[i])
        return v[i] + t * (v[i + 1] - v[i])
    }

    /// 191000 → 191K, 1.24e9 → 1.24B.
    static func compact(_ v: Double) -> String {
        for (unit, scale) in [("T", 1e12), ("B", 1e9), ("M", 1e6), ("K", 1e3)] where abs(v) >= scale {
            return metricNumber(((v / scale) * 100).rounded() / 100) + unit
        }
        return metricNumber(v)
    }

    /// Two decimals, the same on every machine (a coordinate an absurd log pushes past ±1e15, or to NaN, is clamped).
    static func fixed(_ v: Double) -> String {
        let hundredths = Int64((v.isNaN ? 0 : min(max(v, -1e15), 1e15) * 100).rounded())
        let sign = hundredths < 0 ? "-" : ""
        let magnitude = hundredths.magnitude
        let fraction = String(magnitude % 100)
        return sign + String(magnitude / 100) + "." + (fraction.count == 1 ? "0" : "") + fraction
    }

    /// A double as JSON writes it (shortest round-trip digits).
    static func exact(_ v: Double) -> String { JSONValue.double(v).serialized() }

    static func escape(_ s: String) -> String {
        var out = ""
        for c in s {
            switch c {
            case "&": out += "&amp;"
            case "<": out += "&lt;"
            case ">": out += "&gt;"
            case "\"": out += "&quot;"
            default: out.append(c)
            }
        }
        return out
    }
}
