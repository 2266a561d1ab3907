@testable import ArapackFormats
import ArapackTensor
import ArapackTestSupport
import XCTest

final class ZipArchiveTests: XCTestCase {
    func testCRC32() {
        XCTAssertEqual(Array("123456789".utf8).withUnsafeBytes { CRC32.checksum($0) }, 0xCBF4_3926)
        XCTAssertEqual([UInt8]().withUnsafeBytes { CRC32.checksum($0) }, 0)
        var c = CRC32()
        let data = (0..<1000).map { UInt8(truncatingIfNeeded: $0 * 7) }
        data[0..<333].withUnsafeBytes { c.update($0) }
        data[333...].withUnsafeBytes { c.update($0) }
        XCTAssertEqual(c.value, data.withUnsafeBytes { CRC32.checksum($0) })
    }

    func testTorchArchivesAlignedZip64AndDeflated() throws {
        let plain = try ZipArchive(path: TestSupport.fixture("torch/valid/bare_state_dict.pt"))
        for e in plain.entries where e.name.contains("/data/") { XCTAssertEqual(e.dataOffset % 64, 0, "torch aligns storages to 64 bytes") }
        for e in plain.entries { XCTAssertNoThrow(try plain.verifyChecksum(of: e.name), e.name) }
        let zip64 = try ZipArchive(path: TestSupport.fixture("torch/valid/zip64_records.pt"))
        let deflated = try ZipArchive(path: TestSupport.fixture("torch/valid/deflated.pt"))
        XCTAssertTrue(deflated.entries.contains { $0.method == 8 })
        for e in plain.entries {
            let name = "archive/" + e.name.split(separator: "/", maxSplits: 1)[1]
            let expected = try plain.bytes(of: e.name)
            if e.name.contains("/data/") {
                XCTAssertEqual(try zip64.bytes(of: zip64.entries.first { $0.name.hasSuffix(name.dropFirst(7)) }!.name), expected)
                XCTAssertEqual(try deflated.bytes(of: deflated.entries.first { $0.name.hasSuffix(name.dropFirst(7)) }!.name), expected)
            }
        }
    }

    /// The ZIP64 path (taken past 4 GiB) with the threshold lowered: every entry gets ZIP64 fields and the
    /// archive ZIP64 end records; arapack's reader and Python's zipfile both read it.
    func testZip64WritePathReadsBack() throws {
        let dir = try TestSupport.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let out = try AtomicFileWriter(destination: dir + "/z.zip")
        let zip = ZipWriter(out, zip64Threshold: 0)
        let payloads: [(String, [UInt8])] = [("archive/a", Array("hello".utf8)), ("archive/data/0", (0..<1000).map { UInt8($0 % 251) }), ("archive/e", [])]
        for (name, bytes) in payloads { try zip.add(name, bytes) }
        try zip.finish()
        try out.commit()
        let back = try ZipArchive(path: dir + "/z.zip")
        XCTAssertEqual(back.entries.map(\.name), payloads.map(\.0))
        for (name, bytes) in payloads {
            XCTAssertEqual(try back.bytes(of: name), bytes)
            XCTAssertNoThrow(try back.verifyChecksum(of: name))
            XCTAssertEqual(back.entry(named: name)!.dataOffset % 64, 0)
        }
        let python = TestSupport.interopPython ?? "/usr/bin/python3"
        let r = try TestSupport.run(python, ["-c", "import zipfile,sys; z=zipfile.ZipFile(sys.argv[1]); assert z.testzip() is None; print([(i.filename, i.file_size) for i in z.infolist()])", dir + "/z.zip"])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertEqual(r.stdout, "[('archive/a', 5), ('archive/data/0', 1000), ('archive/e', 0)]\n")
    }

    /// Names that would leave an extraction folder, or that other tools split differently, are refused: absolute,
    /// `..` segments, backslashes, NUL, a drive-like first segment; dots and colons elsewhere are fine.
    func testUnsafeEntryNamesAreRefused() throws {
        let dir = try TestSupport.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        func reads(_ name: String) throws -> Bool {
            let path = dir + "/\(abs(name.hashValue)).zip"
            let out = try AtomicFileWriter(destination: path)
            let zip = ZipWriter(out)
            try zip.add(name, [1, 2, 3])
            try zip.finish()
            try out.commit()
            do { _ = try ZipArchive(path: path); return true } catch ZipError.unsafeName(_, let n) { XCTAssertEqual(n, name); return false }
        }
        for name in ["/etc/passwd", "a/../b", "..", "a/..", "a\\b", "a\u{0}b", "C:/x", "c:", ""] {
            XCTAssertFalse(try reads(name), name.debugDescription)
        }
        for name in ["a/b", "a/..b", "...", "a/b:c", "archive/data/0", "ملف/١"] {
            XCTAssertTrue(try reads(name), name.debugDescription)
        }
    }

    /// One inflation budget for the whole archive: entries each under the cap cannot add up past it; reading an
    /// entry again costs nothing more.
    func testInflationBudgetCoversTheWholeArchive() throws {
        let path = TestSupport.fixture("torch/valid/deflated.pt")
        let sizes = try ZipArchive(path: path).entries.filter { $0.method == 8 }.map(\.size).sorted()
        XCTAssertGreaterThanOrEqual(sizes.count, 2)
        let budget = sizes.reduce(0, +) - 1
        XCTAssertGreaterThanOrEqual(budget, sizes.last!, "each entry alone fits")
        let zip = try ZipArchive(file: try MappedFile(path: path), inflateLimit: budget)
        var failures: [ZipError] = []
        for e in zip.entries where e.method == 8 {
            do {
                _ = try zip.storage(of: e.name)
                _ = try zip.storage(of: e.name)
            } catch let error as ZipError { failures.append(error) }
        }
        XCTAssertEqual(failures.count, 1, "\(failures)")
        if case .archiveExpansionLimit(_, _, let limit)? = failures.first { XCTAssertEqual(limit, budget) } else { XCTFail("\(failures)") }
        let roomy = try ZipArchive(file: try MappedFile(path: path), inflateLimit: budget + 1)
        for e in roomy.entries where e.method == 8 { XCTAssertNoThrow(try roomy.storage(of: e.name), e.name) }
    }

    /// Opening an archive checks every entry's local header, which lie one before each entry all through the file: on
    /// a file not in memory, each is read by itself, not with the readahead window around it (at least 128 KiB, often
    /// megabytes: a cold 4.6 GB training checkpoint read 1.3 GB of optimizer state to be opened). Reading an entry
    /// afterwards reads ahead as usual.
    func testOpeningAColdArchiveReadsItsHeadersNotTheEntriesAroundThem() throws {
        let dir = try TestSupport.temporaryDirectory()
        defer { removeTree(dir) }
        let path = dir + "/cold.pt"
        let entries = 24, size = 1 << 20
        let out = try AtomicFileWriter(destination: path)
        let zip = ZipWriter(out)
        for i in 0..<entries { try zip.add("cold/data/\(i)", [UInt8](repeating: UInt8(i), count: size)) }
        try zip.finish()
        try out.commit()
        guard try TestSupport.isOnDisk(dir) else { return }  // tmpfs keeps every page in memory: nothing to observe
        try TestSupport.evictFromPageCache(path)
        let file = try MappedFile(path: path)
        XCTAssertEqual(TestSupport.residentPages(file).filter { $0 }.count, 0, "the file starts out of memory")
        let archive = try ZipArchive(file: file)
        XCTAssertEqual(archive.entries.count, entries)
        let pagesPerEntry = size / Int(sysconf(Int32(_SC_PAGESIZE)))
        let opened = TestSupport.residentPages(file).filter { $0 }.count
        XCTAssertLessThan(opened, entries * pagesPerEntry / 16, "opening read \(opened) pages of \(entries * pagesPerEntry)")
        // An entry's bytes read as before, and the mapping reads ahead again.
        XCTAssertEqual(try archive.bytes(of: "cold/data/5"), [UInt8](repeating: 5, count: size))
        XCTAssertGreaterThan(TestSupport.residentPages(file).filter { $0 }.count, opened + pagesPerEntry / 2)
    }
}
