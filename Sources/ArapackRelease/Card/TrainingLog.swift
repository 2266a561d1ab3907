import ArapackFormats
import ArapackModel
import ArapackTensor

/// A training run's metrics as WandB exports them (a run's history as CSV, or JSON lines), reduced to what the
/// release's plots show: the step, the training loss, the validation loss, the learning rate and (when logged) the
/// tokens seen. Read as a stream; each series keeps at most `maximumPoints` points, sampled by a stride that doubles
/// when the series fills (deterministic, the last point always kept), so a log of any length costs bounded memory.
public struct TrainingLog: Sendable {
    /// One metric over the run: (step, value) pairs, steps increasing.
    public struct Series: Equatable, Sendable {
        public private(set) var steps: [Double] = []
        public private(set) var values: [Double] = []
        /// Points seen, kept or not, and the stride of the ones kept.
        private var seen = 0
        private var stride = 1
        private var last: (Double, Double)?

        mutating func add(step: Double, value: Double) {
            defer { seen += 1 }
            last = (step, value)
            guard seen % stride == 0 else { return }
            steps.append(step)
            values.append(value)
            if steps.count >= TrainingLog.maximumPoints {
                stride *= 2
                let keep = steps.indices.filter { $0 % 2 == 0 }
                steps = keep.map { steps[$0] }
                values = keep.map { values[$0] }
            }
        }

        /// The kept points, the last one seen included.
        mutating func finish() {
            if let (s, v) = last, steps.last != s {
                steps.append(s)
                values.append(v)
            }
        }

        public static func == (a: Series, b: Series) -> Bool { a.steps == b.steps && a.values == b.values }
    }

    public static let maximumPoints = 2048
    /// Lines longer than this are refused (a history row is a few hundred bytes).
    public static let maximumLineBytes = 1 << 20

    public var trainLoss = Series()
    public var validationLoss = Series()
    public var learningRate = Series()
    /// Tokens seen by step, when the log has them.
    public var tokens = Series()
    /// Rows read.
    public private(set) var rows = 0

    /// The largest step a log may name.
    static let maximumStep = 1e15
    /// The names each column may have in an export (WandB's history keys as training scripts log them).
    static let stepNames = ["_step", "step", "Step", "trainer/global_step", "global_step", "train/step"]
    static let trainNames = ["train/loss", "train_loss", "loss", "training_loss", "train/train_loss"]
    static let validationNames = ["val/loss", "val_loss", "eval/loss", "eval_loss", "validation/loss", "validation_loss", "valid/loss"]
    static let rateNames = ["lr", "learning_rate", "train/lr", "train/learning_rate", "optimizer/lr"]
    static let tokenNames = ["tokens", "tokens_seen", "train/tokens", "train/tokens_seen", "num_tokens", "consumed_tokens"]

    /// Reads `path`: JSON lines when its first byte is `{`, else CSV with a header row.
    public init(path: String) throws {
        let file = try MappedFile(path: path)
        try file.withUnsafeBytes { bytes in
            let isJSON = bytes.first { $0 != UInt8(ascii: " ") && $0 != UInt8(ascii: "\n") && $0 != UInt8(ascii: "\r") } == UInt8(ascii: "{")
            try isJSON ? readJSONLines(bytes, path: path) : readCSV(bytes, path: path)
        }
        for (name, series) in [("training loss", trainLoss), ("validation loss", validationLoss), ("learning rate", learningRate)] where series.steps.isEmpty {
            throw TrainingLogError(file: path, line: 0, problem: "no \(name) value in \(rows) rows")
        }
    }

    /// Calls `body` with each line (without its newline) and its number; refuses a line past the limit.
    static func lines(_ bytes: UnsafeRawBufferPointer, path: String, _ body: (UnsafeRawBufferPointer, Int) throws -> Void) throws {
        var start = 0, number = 1
        while start < bytes.count {
            var end = start
            while end < bytes.count && bytes[end] != UInt8(ascii: "\n") { end += 1 }
            guard end - start <= maximumLineBytes else {
                throw TrainingLogError(file: path, line: number, problem: "a line longer than \(maximumLineBytes) bytes")
            }
            var stop = end
            if stop > start && bytes[stop - 1] == UInt8(ascii: "\r") { stop -= 1 }
            try body(UnsafeRawBufferPointer(rebasing: bytes[start..<stop]), number)
            start = end + 1
            number += 1
        }
    }

    /// One row's values by column role; `line` for errors.
    private var lastStep: (value: Double, line: Int)?
    mutating func add(step: Double?, train: Double?, validation: Double?, rate: Double?, tokens seen: Double?, line: Int, path: String) throws {
        guard let step else { return }  // a row without a step (a summary line) adds nothing
        // A step counts optimizer steps: anything beyond 10^15 is an absurd log (and past what the plots print).
        guard step.isFinite, step.magnitude <= Self.maximumStep else {
            throw TrainingLogError(file: path, line: line, problem: "the step is \(metricNumber(step)); a step is a count up to 10^15")
        }
        if let last = lastStep, !(step > last.value) {
            throw TrainingLogError(file: path, line: line, problem: "step \(metricNumber(step)) is not after step \(metricNumber(last.value)) on line \(last.line): steps must increase")
        }
        lastStep = (step, line)
        rows += 1
        if let v = train, v.isFinite { trainLoss.add(step: step, value: v) }
        if let v = validation, v.isFinite { validationLoss.add(step: step, value: v) }
        if let v = rate, v.isFinite { learningRate.add(step: step, value: v) }
        if let v = seen, v.isFinite { tokens.add(step: step, value: v) }
    }

    mutating func finish() {
        trainLoss.finish(); validationLoss.finish(); learningRate.finish(); tokens.finish()
    }

    mutating func readCSV(_ bytes: UnsafeRawBufferPointer, path: String) throws {
        var columns: [Int?] = []  // step, train, validation, rate, tokens
        try Self.lines(bytes, path: path) { line, number in
            let fields = try Self.csvFields(line, path: path, line: number)
            if columns.isEmpty {
                let header = fields
                func index(_ names: [String]) -> Int? { names.lazy.compactMap { header.firstIndex(of: $0) }.first }
                columns = [index(Self.stepNames), index(Self.trainNames), index(Self.validationNames), index(Self.rateNames), index(Self.tokenNames)]
                for (role, names) in [("step", Self.stepNames), ("training loss", Self.trainNames), ("validation loss", Self.validationNames),
                                      ("learning rate", Self.rateNames)].enumerated() where columns[role] == nil {
                    throw TrainingLogError(file: path, line: number, problem: "no \(names.0) column (one of \(names.1.joined(separator: ", "))) among \(header.count) columns")
                }
                return
            }
            if fields.count == 1 && fields[0].isEmpty { return }
            func value(_ role: Int) -> Double? { columns[role].flatMap { $0 < fields.count ? Self.number(fields[$0]) : nil } }
            try add(step: value(0), train: value(1), validation: value(2), rate: value(3), tokens: value(4), line: number, path: path)
        }
        guard !columns.isEmpty else { throw TrainingLogError(file: path, line: 0, problem: "empty: no header row") }
        finish()
    }

    mutating func readJSONLines(_ bytes: UnsafeRawBufferPointer, path: String) throws {
        try Self.lines(bytes, path: path) { line, number in
            if line.allSatisfy({ $0 == UInt8(ascii: " ") || $0 == UInt8(ascii: "\t") }) { return }
            let row: JSONValue
            do { row = try JSONParser.parse(line) } catch {
                throw TrainingLogError(file: path, line: number, problem: "not a JSON object: \(error)")
            }
            guard row.members != nil else { throw TrainingLogError(file: path, line: number, problem: "not a JSON object") }
            func value(_ names: [String]) -> Double? { names.lazy.compactMap { row[$0]?.doubleValue }.first }
            try add(step: value(Self.stepNames), train: value(Self.trainNames), validation: value(Self.validationNames), rate: value(Self.rateNames),
                    tokens: value(Self.tokenNames), line: number, path: path)
        }
        finish()
    }

    /// A CSV field as a number: empty, "NaN", "nan", "inf" and the like read as missing.
    static func number(_ field: String) -> Double? {
        guard let v = Double(field), v.isFinite else { return nil }
        return v
    }

    /// The fields of one CSV line (RFC 4180: quoted fields with "" inside).
    static func csvFields(_ line: UnsafeRawBufferPointer, path: String, line number: Int) throws -> [String] {
        var fields: [String] = []
        var field: [UInt8] = []
        var i = 0, quoted = false
        while i < line.count {
            let c = line[i]
            if quoted {
                if c == UInt8(ascii: "\"") {
                    if i + 1 < line.count && line[i + 1] == UInt8(ascii: "\"") { field.append(c); i += 1 } else { quoted = false }
                } else {
                    field.append(c)
                }
            } else if c == UInt8(ascii: "\"") && field.isEmpty {
                quoted = true
            } else if c == UInt8(ascii: ",") {
                fields.append(String(decoding: field, as: UTF8.self))
                field = []
            } else {
                field.append(c)
            }
            i += 1
        }
        guard !quoted else { throw TrainingLogError(file: path, line: number, problem: "a quoted field without its closing quote") }
        fields.append(String(decoding: field, as: UTF8.self))
        return fields
    }
}

/// A training log that cannot be plotted: the file, the line (0: the whole file), what is wrong (exit 2).
public struct TrainingLogError: Error, Equatable, CustomStringConvertible, Sendable {
    public var file: String
    public var line: Int
    public var problem: String
    public var description: String { file + (line > 0 ? ":\(line)" : "") + ": " + problem }
}

/// A number as the plots and errors print it: an integer without a fraction, else six significant digits.
func metricNumber(_ v: Double) -> String {
    if v == v.rounded(), abs(v) < 1e15 { return String(Int64(v)) }
    return metricText(v)
}
