import ArapackFormats
import ArapackModel
import ArapackTensor

/// The table of every form of a release set that each of its bundles' cards carries (`arapack release`): each artifact
/// with its form, dtype, weight bytes and its figures against the checkpoint (perplexity, mean KL and same top token on
/// real data; mean KL and top-1 agreement on random probes), linked to its sibling repository by the release's repo id.
/// Put into a written bundle, it changes only README.md and manifest.json's line for it.
public struct ReleaseSetCard: Sendable {
    public struct Row: Sendable {
        /// The artifact's path under DST (`NAME-int8`, `NAME-GGUF/NAME-Q8_0.gguf`).
        public var name: String
        public var form: String
        public var dtype: String
        /// Bytes of its weights (its .safetensors files, or the GGUF file).
        public var weightBytes: Int
        public var parity: ParitySummary?
        public init(name: String, form: String, dtype: String, weightBytes: Int, parity: ParitySummary?) {
            (self.name, self.form, self.dtype, self.weightBytes, self.parity) = (name, form, dtype, weightBytes, parity)
        }
    }

    public var rows: [Row]
    /// The Hub owner of `--repo-id` (each artifact's repository is OWNER/its top folder), nil without one.
    public var owner: String?

    public init(rows: [Row], owner: String?) { (self.rows, self.owner) = (rows, owner) }

    public static let heading = "## Every form of this release"

    /// The card section, as the card of artifact `current` shows it.
    public func section(current: String) -> [String] {
        let data = rows.first?.parity?.data
        let random = rows.first?.parity != nil && data == nil
        let header = data != nil ? "| artifact | form | weights (bytes) | perplexity | mean KL | same top token |\n|---|---|---|---|---|---|"
            : random ? "| artifact | form | weights (bytes) | mean KL | top-1 agreement |\n|---|---|---|---|---|"
            : "| artifact | form | weights (bytes) |\n|---|---|---|"
        var lines = ["", Self.heading, "", "This model is released in these forms, each its own repository:", ""] + header.split(separator: "\n").map(String.init)
        for row in rows {
            let repository = String(row.name.split(separator: "/").first ?? Substring(row.name))
            let file = row.name.contains("/") ? " (`\(ModelCard.plain(splitPath(row.name).1))`)" : ""
            let label = row.name == current ? "**\(ModelCard.plain(repository))** (this one)"
                : owner.map { "[\(ModelCard.plain(repository))](https://huggingface.co/\($0)/\(repository))" } ?? ModelCard.plain(repository)
            var cells = [label + file, "\(row.form), \(row.dtype)", grouped(row.weightBytes)]
            if let d = row.parity?.data {
                cells += [d.perplexity.map(metricText) ?? "n/a", metricText(d.meanKL), Self.percent(d.sameTopP)]
            } else if let p = row.parity {
                cells += [metricText(p.meanKL), Self.percent(p.top1Agreement)]
            } else if data != nil || random {
                cells += Array(repeating: "n/a", count: data != nil ? 3 : 2)
            }
            lines.append("| " + cells.joined(separator: " | ") + " |")
        }
        if let d = data {
            lines += ["", "Each against the checkpoint (perplexity \(d.referencePerplexity.map(metricText) ?? "n/a")) on the \(d.sequences) "
                      + "sequences of real token ids of this card's quality section (\(d.tokens) positions scored)."]
        } else if random {
            lines += ["", "Each against the checkpoint on random token ids: these figures show that each form computes the checkpoint's "
                      + "function, and are no measure of its quality on text."]
        }
        return lines
    }

    /// A share as a percentage, four significant digits.
    static func percent(_ v: Double) -> String {
        guard v.isFinite else { return "\(v)" }
        let p = (v * 10000).rounded() / 100
        return metricText(p) + " %"
    }

    /// Puts the section into the bundle at `folder` (artifact `current`): before the card's quick start (at the end of a
    /// card without one), and manifest.json's line for README.md updated to the new bytes.
    public func apply(to folder: String, current: String) throws {
        let cardPath = folder + "/" + ModelCard.fileName
        let card = String(decoding: try MappedFile(path: cardPath).withUnsafeBytes { Array($0) }, as: UTF8.self)
        let section = section(current: current).joined(separator: "\n")
        let text: String
        if let anchor = card.firstRange(of: "\n\n## Quick start\n") {
            text = String(card[..<anchor.lowerBound]) + "\n" + section + String(card[anchor.lowerBound...])
        } else {
            text = (card.hasSuffix("\n") ? String(card.dropLast()) : card) + "\n" + section + "\n"
        }
        let written = try writeText(text, to: cardPath)
        var manifest = try Manifest(path: folder + "/" + Manifest.fileName)
        guard let i = manifest.files.firstIndex(where: { $0.path == ModelCard.fileName }) else {
            throw BundleError.modelCard(file: cardPath, problem: "manifest.json does not list the card")
        }
        manifest.files[i].size = written.size
        manifest.files[i].sha256 = written.sha256
        try writeText(manifest.text, to: folder + "/" + Manifest.fileName)
    }

    /// Bytes of an artifact's weights: its .safetensors files, or the file itself.
    public static func weightBytes(of path: String) throws -> Int {
        guard (try? FileKind(atPath: path)) == .directory else { return try fileSize(path) }
        return try BundleFolder.files(path).filter { $0.hasSuffix(".safetensors") }.reduce(0) { $0 + (try fileSize(path + "/" + $1)) }
    }
}
