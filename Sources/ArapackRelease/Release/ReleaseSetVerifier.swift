import ArapackFormats

/// `arapack verify DST` of a release set (what `arapack release` wrote): release.json read strictly; every file it
/// lists present under DST as a regular file with its size and SHA-256, and nothing else there; then each artifact
/// (and each bundle's archive) verified as `arapack verify DST/NAME` verifies it, its checks named after it.
/// An unreadable artifact is a failed check of the set, not the end of the run: every artifact gets its verdict.
public enum ReleaseSetVerifier {
    /// Whether `path` is a folder holding release.json.
    public static func isReleaseSet(_ path: String) -> Bool {
        (try? FileKind(atPath: NamedOutput.resolvingSymbolicLinks(path))) == .directory && pathExists(path + "/" + ReleaseIndex.fileName)
    }

    /// The checks of the set at `path`. Throws only when release.json itself cannot be read.
    public static func verify(path: String, progress: Progress) throws -> VerifyReport {
        let indexPath = path + "/" + ReleaseIndex.fileName
        guard case .regular = try FileKind(atPath: indexPath) else {
            throw ReleaseSetError(path: indexPath, problem: "not a regular file (a link, folder, FIFO or device)")
        }
        let index: ReleaseIndex
        do {
            index = try JSONValueDecoder().decode(ReleaseIndex.self, from: try readJSON(indexPath))
        } catch let e as JSONDecodingError {
            throw ReleaseSetError(path: indexPath, problem: "\(e)")
        }
        var report = VerifyReport(path: path)
        report.checks.append(VerifyReport.Check(name: "release.json", problems: indexProblems(index)))
        let safe = index.artifacts.allSatisfy { isPlainRelativePath($0.name) && $0.files.allSatisfy { isPlainRelativePath($0.path) } }
        guard safe else { return report }
        let files = try fileProblems(index, under: path, progress: progress)
        report.checks.append(VerifyReport.Check(name: "files", problems: files.problems))
        // A link, FIFO or device anywhere under DST: nothing more is opened (a FIFO would block the reader).
        guard files.onlyRegularFiles else { return report }
        for artifact in index.artifacts {
            var targets = [artifact.name]
            if artifact.files.contains(where: { $0.path == artifact.name + ".tar.zst" }) { targets.append(artifact.name + ".tar.zst") }
            for target in targets where pathExists(path + "/" + target) {
                do {
                    let checked = try ReleaseForms.reading(path + "/" + target).verify(path: path + "/" + target, signature: nil, progress: progress)
                    report.checks += checked.checks.map { VerifyReport.Check(name: target + ": " + $0.name, problems: $0.problems, note: $0.note) }
                } catch {
                    report.checks.append(VerifyReport.Check(name: target + ": read", problems: ["\(error)"]))
                }
            }
        }
        return report
    }

    /// A parsed release.json decoded, with what `indexProblems` finds in it (the fuzz target's entry).
    package static func indexProblems(json: JSONValue) throws -> (index: ReleaseIndex, problems: [String]) {
        let index = try JSONValueDecoder().decode(ReleaseIndex.self, from: json)
        return (index, indexProblems(index))
    }

    /// What release.json says that cannot be so: another format, no artifacts, names or paths that leave DST, an
    /// artifact whose bytes are not its files' sum, a file listed twice or under another artifact.
    static func indexProblems(_ index: ReleaseIndex) -> [String] {
        var problems: [String] = []
        if index.format != "arapack-release" { problems.append("format is \"\(index.format)\", expected \"arapack-release\"") }
        if index.artifacts.isEmpty { problems.append("no artifacts") }
        var seen = Set<String>()
        for a in index.artifacts {
            guard isPlainRelativePath(a.name) else {
                problems.append("artifact name \"\(a.name)\" is not a path inside the release (absolute, empty, . or .. parts)")
                continue
            }
            if !seen.insert(a.name).inserted { problems.append("artifact \(a.name) listed twice") }
            if a.bytes != sum(a.files.map(\.size)) { problems.append("\(a.name): bytes \(a.bytes) is not the sum of its files' sizes") }
            for f in a.files {
                guard isPlainRelativePath(f.path) else {
                    problems.append("\(a.name): file \"\(f.path)\" is not a path inside the release (absolute, empty, . or .. parts)")
                    continue
                }
                if !(f.path == a.name || f.path.hasPrefix(a.name + "/") || f.path.hasPrefix(a.name + ".")) {
                    problems.append("\(a.name): file \(f.path) is not the artifact's")
                }
                if f.path == ReleaseIndex.fileName || f.path == ReleaseIndex.signatureFileName {
                    problems.append("\(a.name): lists \(f.path), which is the set's")
                }
                if f.size < 0 || f.sha256.utf8.count != 64 || !f.sha256.utf8.allSatisfy({ (48...57).contains($0) || (97...102).contains($0) }) {
                    problems.append("\(a.name): file \(f.path): size \(f.size) or sha256 \"\(f.sha256)\" malformed")
                }
            }
        }
        let paths = index.artifacts.flatMap { $0.files.map(\.path) }
        if Set(paths).count != paths.count { problems.append("a file is listed more than once") }
        return problems
    }

    /// Every listed file present, regular, of its size and SHA-256; nothing unlisted under `root` but release.json
    /// and its signature. Anything but regular files and folders under `root` is a problem, and nothing is hashed.
    static func fileProblems(_ index: ReleaseIndex, under root: String, progress: Progress) throws -> (problems: [String], onlyRegularFiles: Bool) {
        var present: [String] = []
        let entries = try directoryEntries(root)
        guard entries.count <= BundleFolder.maximumFiles else {
            return (["\(root) holds \(entries.count) entries, more than a release set may (\(BundleFolder.maximumFiles))"], false)
        }
        for entry in entries {
            switch try FileKind(atPath: root + "/" + entry) {
            case .regular: present.append(entry)
            case .directory:
                do {
                    present += try BundleFolder.files(root + "/" + entry).map { entry + "/" + $0 }
                } catch {
                    return (["\(error)"], false)
                }
            case .symlink: return (["\(root)/\(entry) is a symbolic link: a release holds regular files only"], false)
            case .other: return (["\(root)/\(entry) is not a regular file (a FIFO, device or socket)"], false)
            }
        }
        let listed = index.artifacts.flatMap(\.files)
        let onDisk = Set(present)
        // A bundle's files are compared with its manifest's digests rather than hashed here: the bundle's own check,
        // which runs next, hashes each against the manifest (itself hashed here), so every byte is read once.
        var recorded: [String: String] = [:]
        for artifact in index.artifacts {
            recorded.merge((try? ReleaseIndex.manifestDigests(of: artifact.name, under: root)) ?? [:]) { a, _ in a }
        }
        var problems: [String] = []
        progress.begin("hashing \(root)", total: sum(listed.map { recorded[$0.path] == nil ? max(0, $0.size) : 0 }) ?? 0)
        for f in listed {
            guard onDisk.contains(f.path) else { problems.append("\(f.path): missing"); continue }
            let size = try fileSize(root + "/" + f.path)
            if size != f.size { problems.append("\(f.path): \(size) bytes, release.json says \(f.size)"); continue }
            if let digest = recorded[f.path] {
                if digest != f.sha256 { problems.append("\(f.path): its bundle's manifest.json records SHA-256 \(digest), release.json says \(f.sha256)") }
                continue
            }
            let digest = try SHA256.hex(ofFile: root + "/" + f.path)
            if digest != f.sha256 { problems.append("\(f.path): SHA-256 \(digest), release.json says \(f.sha256)") }
            progress.advance(size)
        }
        progress.end()
        let expected = Set(listed.map(\.path)).union([ReleaseIndex.fileName, ReleaseIndex.signatureFileName])
        for name in present.sorted(by: { $0.utf8.lexicographicallyPrecedes($1.utf8) }) where !expected.contains(name) {
            problems.append("\(name): not listed in release.json")
        }
        return (problems, true)
    }

    /// The sum of `sizes`, nil when it overflows (sizes in a hostile release.json can be anything).
    static func sum(_ sizes: [Int]) -> Int? {
        var total = 0
        for size in sizes {
            let (next, overflow) = total.addingReportingOverflow(size)
            if overflow { return nil }
            total = next
        }
        return total
    }

    /// A path below a folder: relative, no empty, `.` or `..` part, no control character.
    static func isPlainRelativePath(_ path: String) -> Bool {
        !path.isEmpty && !path.hasPrefix("/") && !path.unicodeScalars.contains { $0.value < 0x20 || $0.value == 0x7f }
            && path.split(separator: "/", omittingEmptySubsequences: false).allSatisfy { !$0.isEmpty && $0 != "." && $0 != ".." }
    }
}

/// release.json that cannot be read (exit 2).
public struct ReleaseSetError: Error, Equatable, CustomStringConvertible, Sendable {
    public let path: String
    public let problem: String
    public var description: String { "\(path): \(problem)" }
}
