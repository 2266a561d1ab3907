import ArapackFormats
import ArapackTensor
import Foundation
import XCTest

/// Paths and helpers shared by the test targets.
public enum TestSupport {
    /// The repository root (found from this file's location).
    public static let repositoryRoot: URL = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    /// `Type.case` of a typed error (an enum's case with its payload; a struct's type alone), for tables that match
    /// errors by case rather than by message.
    public static func caseName(_ error: Error) -> String {
        let type = String(describing: Swift.type(of: error))
        let mirror = Mirror(reflecting: error)
        guard mirror.displayStyle == .enum else { return type }
        return type + "." + (mirror.children.first?.label ?? String(describing: error))
    }

    /// `Fixtures/<relative>`.
    public static func fixture(_ relative: String) -> String {
        repositoryRoot.appendingPathComponent("Fixtures").appendingPathComponent(relative).path
    }

    /// `Schemas/<name>`.
    public static func schema(_ name: String) -> String {
        repositoryRoot.appendingPathComponent("Schemas").appendingPathComponent(name).path
    }

    /// Parses a JSON file with arapack's parser.
    public static func loadJSON(_ path: String) throws -> JSONValue {
        try JSONParser.parse(Array(try Data(contentsOf: URL(fileURLWithPath: path))))
    }

    /// The bytes a hex string spells (fixtures record tensor data this way).
    public static func bytes(hex: String) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(hex.utf8.count / 2)
        var it = hex.makeIterator()
        while let a = it.next(), let b = it.next() { out.append(UInt8(String([a, b]), radix: 16)!) }
        return out
    }

    /// A fresh empty temporary folder.
    public static func temporaryDirectory(_ label: String = "arapack-test") throws -> String {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("\(label)-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        return url.path
    }

    /// The file system holding `path` (`ext4`, `tmpfs`, …): that of the longest mount point in /proc/self/mounts
    /// that is a prefix of its real path.
    public static func fileSystem(of path: String) throws -> String {
        let real = URL(fileURLWithPath: path).resolvingSymlinksInPath().path
        let mounts = try String(contentsOfFile: "/proc/self/mounts", encoding: .utf8).split(separator: "\n").map { $0.split(separator: " ") }
        let mount = mounts.filter { $0.count > 2 && (real + "/").hasPrefix($0[1] == "/" ? "/" : $0[1] + "/") }.max { $0[1].count < $1[1].count }
        return mount.map { String($0[2]) } ?? ""
    }

    /// Whether the file system holding `path` keeps files on a disk, the page cache holding copies of their pages
    /// that can be dropped and read back (ext4, XFS, Btrfs; not tmpfs). Such file systems also take O_DIRECT.
    public static func isOnDisk(_ path: String) throws -> Bool {
        ["ext4", "xfs", "btrfs"].contains(try fileSystem(of: path))
    }

    /// Writes the file at `path` back to its disk and drops its pages from the page cache (`POSIX_FADV_DONTNEED`),
    /// as if it had not been read since the machine started.
    public static func evictFromPageCache(_ path: String) throws {
        let fd = open(path, O_RDONLY)
        guard fd >= 0 else { throw FileError(path: path, operation: "open", code: errno) }
        defer { close(fd) }
        guard fsync(fd) == 0 else { throw FileError(path: path, operation: "fsync", code: errno) }
        let status = posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED)
        guard status == 0 else { throw FileError(path: path, operation: "posix_fadvise", code: status) }
    }

    /// For each page of `file`'s mapping, whether it is in memory (`mincore`).
    public static func residentPages(_ file: MappedFile) -> [Bool] {
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))
        var resident = [UInt8](repeating: 0, count: (file.count + page - 1) / page)
        guard file.count > 0 else { return [] }
        let status = file.withUnsafeBytes { mincore(UnsafeMutableRawPointer(mutating: $0.baseAddress!), $0.count, &resident) }
        precondition(status == 0, "mincore failed: \(errno)")
        return resident.map { $0 & 1 != 0 }
    }

    /// How many folios of the page cache hold `file`'s pages (each mapped first, by reading a byte of it): a 4 KiB page
    /// alone is one, a large folio (up to 2 MiB) one however many pages it spans. Reads `/proc/self/pagemap` and
    /// `/proc/kpageflags`, whose page frame numbers only root may read (CI runs as root).
    public static func folioCount(_ file: MappedFile) throws -> Int {
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))
        let pagemap = open("/proc/self/pagemap", O_RDONLY), flags = open("/proc/kpageflags", O_RDONLY)
        defer { close(pagemap); close(flags) }
        guard pagemap >= 0, flags >= 0 else { throw XCTSkip("/proc/kpageflags cannot be read: it needs root") }
        return try file.withUnsafeBytes { bytes in
            var folios = 0
            for offset in stride(from: 0, to: bytes.count, by: page) {
                _ = (bytes.baseAddress! + offset).load(as: UInt8.self)  // maps the page
                var entry: UInt64 = 0, pageFlags: UInt64 = 0
                let address = UInt(bitPattern: bytes.baseAddress! + offset)
                guard pread(pagemap, &entry, 8, off_t(address / UInt(page) * 8)) == 8, entry >> 63 == 1 else {
                    throw FileError(path: file.path, operation: "pagemap (page at \(offset) not mapped)", code: EIO)
                }
                let frame = entry & ((1 << 55) - 1)
                guard frame != 0 else { throw XCTSkip("page frame numbers read as 0: they need root") }
                guard pread(flags, &pageFlags, 8, off_t(frame * 8)) == 8 else {
                    throw FileError(path: "/proc/kpageflags", operation: "pread", code: errno)
                }
                if pageFlags >> 16 & 1 == 0 { folios += 1 }  // KPF_COMPOUND_TAIL: a later page of a large folio
            }
            return folios
        }
    }

    /// The built `arapack` executable next to the test bundle.
    public static var arapackBinary: String {
        Bundle.main.bundleURL.appendingPathComponent("arapack").path
    }

    /// The Python with `safetensors` (and optionally torch) for interop tests: `ARAPACK_PYTHON`, or nil.
    public static var interopPython: String? {
        ProcessInfo.processInfo.environment["ARAPACK_PYTHON"].flatMap { $0.isEmpty ? nil : $0 }
    }

    /// Rewrites manifest.json's size and sha256 of `file` to match its current bytes.
    public static func rehashManifest(_ bundle: String, file: String) throws {
        let path = bundle + "/manifest.json"
        var manifest = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: path))) as! [String: Any]
        var files = manifest["files"] as! [[String: Any]]
        for i in files.indices where files[i]["path"] as? String == file {
            files[i]["size"] = try fileSize(bundle + "/" + file)
            files[i]["sha256"] = try SHA256.hex(ofFile: bundle + "/" + file)
        }
        manifest["files"] = files
        try JSONSerialization.data(withJSONObject: manifest, options: [.sortedKeys]).write(to: URL(fileURLWithPath: path))
    }

    /// For each edit (`from` → `to`) of `file` in `bundle`: writes the edited file (the original text otherwise),
    /// re-hashes manifest.json so the bundle stays self-consistent, runs `arapack verify` and hands the edit and
    /// the result to `check`. The edit's `from` must occur in the file (asserted).
    public static func verifyEdited(_ bundle: String, file: String, edits: [(from: String, to: String, fragment: String)],
                                    sourceLine: UInt = #line, _ check: (_ edit: (from: String, to: String, fragment: String), _ result: ProcessResult) throws -> Void) throws {
        let path = bundle + "/" + file
        let original = try String(contentsOfFile: path, encoding: .utf8)
        for edit in edits {
            XCTAssertTrue(original.contains(edit.from), edit.from, line: sourceLine)
            try writeText(original.replacingOccurrences(of: edit.from, with: edit.to), to: path)
            try rehashManifest(bundle, file: file)
            try check(edit, try run(arapackBinary, ["verify", bundle]))
        }
    }

    /// The interop Python when it imports every module of `modules`. Elsewhere the test is skipped, but not in CI
    /// (`CI` set), where scripts/test.sh installs them all: there a missing package fails the test.
    public static func interopPython(importing modules: [String]) throws -> String {
        let missing: String
        if let python = interopPython {
            let probe = try run(python, ["-c", "import " + modules.joined(separator: ", ")])
            if probe.status == 0 { return python }
            missing = "\(python) cannot import \(modules.joined(separator: ", ")): \(probe.stderr.split(separator: "\n").last ?? "")"
        } else {
            missing = "ARAPACK_PYTHON is not set"
        }
        if let ci = ProcessInfo.processInfo.environment["CI"], !ci.isEmpty, ci != "false" {
            throw InteropUnavailable(description: "CI must run the interop tests, but " + missing + " (scripts/test.sh installs the packages)")
        }
        throw XCTSkip(missing + "; set ARAPACK_PYTHON to a Python with " + modules.joined(separator: ", "))
    }

    /// The value of an environment variable an interop test needs (set by scripts/test.sh); a skip without it,
    /// a failure in CI.
    public static func interopSetting(_ name: String) throws -> String {
        if let value = ProcessInfo.processInfo.environment[name], !value.isEmpty { return value }
        if let ci = ProcessInfo.processInfo.environment["CI"], !ci.isEmpty, ci != "false" {
            throw InteropUnavailable(description: "CI must run the interop tests, but \(name) is not set (scripts/test.sh sets it)")
        }
        throw XCTSkip("\(name) is not set; scripts/test.sh sets it")
    }

    /// An interop test that CI must run found its Python packages missing.
    public struct InteropUnavailable: Error, CustomStringConvertible {
        public let description: String
    }

    /// Validates JSON documents against a schema in Schemas/ with Python's `jsonschema`.
    public static func validateAgainstSchema(_ schema: String, _ documents: [String], file: StaticString = #filePath, line: UInt = #line) throws {
        let python = try interopPython(importing: ["jsonschema"])
        let prefix: [String] = []
        let script = """
            import glob, json, os, sys, jsonschema, referencing
            schema = json.load(open(sys.argv[1]))
            jsonschema.Draft202012Validator.check_schema(schema)
            # Every schema of Schemas/ by its $id, so a $ref into another one resolves without a network.
            resources = []
            for path in glob.glob(os.path.join(os.path.dirname(sys.argv[1]), "*.schema.json")):
                other = json.load(open(path))
                resources.append((other["$id"], referencing.Resource.from_contents(other)))
            registry = referencing.Registry().with_resources(resources)
            validator = jsonschema.Draft202012Validator(schema, registry=registry)
            for p in sys.argv[2:]:
                validator.validate(json.load(open(p)))
            print("valid", len(sys.argv) - 2)
            """
        let r = try TestSupport.run(python, prefix + ["-c", script, TestSupport.schema(schema)] + documents)
        XCTAssertEqual(r.status, 0, r.stderr, file: file, line: line)
        XCTAssertEqual(r.stdout, "valid \(documents.count)\n", file: file, line: line)
    }

    /// Runs `executable` with output discarded and returns its exit status, its own peak resident memory in KiB
    /// and the CPU time it used (user + system, seconds), through the `peak-memory` helper (a child spawned straight from the test process
    /// would report at least the test process's own peak: Linux carries the high-water mark across exec).
    public static func peakMemory(_ executable: String, _ arguments: [String]) throws -> (status: Int32, peakKiB: Int, cpuSeconds: Double) {
        let helper = Bundle.main.bundleURL.appendingPathComponent("peak-memory").path
        let r = try run(helper, [executable] + arguments)
        let fields = r.stdout.split(separator: " ").compactMap { Int($0.trimmingCharacters(in: .whitespacesAndNewlines)) }
        guard r.status == 0, fields.count == 3 else {
            throw NSError(domain: "peak-memory", code: Int(r.status), userInfo: [NSLocalizedDescriptionKey: r.stdout + r.stderr])
        }
        return (Int32(fields[0]), fields[1], Double(fields[2]) / 1000)
    }

    /// The result of running a process.
    public struct ProcessResult {
        public var status: Int32
        public var stdout: String
        public var stderr: String
    }

    /// Runs `executable` with `arguments` and waits; standard input is empty.
    public static func run(_ executable: String, _ arguments: [String], environment: [String: String]? = nil) throws -> ProcessResult {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        if let environment { process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 } }
        let out = Pipe()
        let err = Pipe()
        process.standardOutput = out
        process.standardError = err
        process.standardInput = FileHandle.nullDevice
        try process.run()
        let outData = LockedData()
        let group = DispatchGroup()
        group.enter()
        DispatchQueue.global().async {
            outData.value = out.fileHandleForReading.readDataToEndOfFile()
            group.leave()
        }
        let errData = err.fileHandleForReading.readDataToEndOfFile()
        group.wait()
        process.waitUntilExit()
        return ProcessResult(status: process.terminationStatus,
                             stdout: String(decoding: outData.value, as: UTF8.self),
                             stderr: String(decoding: errData, as: UTF8.self))
    }

    /// Runs the built `arapack` with `arguments`.
    public static func arapack(_ arguments: String...) throws -> ProcessResult {
        try run(arapackBinary, arguments)
    }

    private final class LockedData: @unchecked Sendable { var value = Data() }
}

/// Test data that is the same on every run and machine, from the library's one generator.
extension SplitMix64 {
    /// A float in [−1, 1).
    public mutating func float() -> Float { Float(Int64(bitPattern: next()) >> 40) / Float(1 << 23) }
}
