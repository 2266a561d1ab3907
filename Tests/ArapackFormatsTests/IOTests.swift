@testable import ArapackFormats
import ArapackTensor
import ArapackTestSupport
import Foundation
import XCTest

final class IOTests: XCTestCase {
    func testSHA256KnownVectors() throws {
        XCTAssertEqual(Array("abc".utf8).withUnsafeBytes { SHA256.hex(of: $0) },
                       "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        XCTAssertEqual([UInt8]().withUnsafeBytes { SHA256.hex(of: $0) },
                       "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        let streaming = SHA256()
        for _ in 0..<1000 { streaming.update(Array(repeating: UInt8(ascii: "a"), count: 1000)) }
        XCTAssertEqual(streaming.hexDigest(), "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0")
        let dir = try TestSupport.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try Data("abc".utf8).write(to: URL(fileURLWithPath: dir + "/f"))
        XCTAssertEqual(try SHA256.hex(ofFile: dir + "/f"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        try Data().write(to: URL(fileURLWithPath: dir + "/empty"))
        XCTAssertEqual(try SHA256.hex(ofFile: dir + "/empty"), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
    }

    func testAtomicWriterLeavesNothingUntilCommit() throws {
        let dir = try TestSupport.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let target = dir + "/out.bin"
        do {
            let w = try AtomicFileWriter(destination: target, bufferSize: 16)
            try w.write(Array(repeating: 7, count: 100))
            XCTAssertFalse(FileManager.default.fileExists(atPath: target))
            XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir).count, 1)
        }
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir), [], "an abandoned writer removes its temporary file")
        let w = try AtomicFileWriter(destination: target, bufferSize: 16)
        try w.write("hello ")
        try w.write(Array(repeating: UInt8(ascii: "x"), count: 40))
        try w.commit()
        XCTAssertEqual(try String(contentsOfFile: target, encoding: .utf8), "hello " + String(repeating: "x", count: 40))
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir), ["out.bin"])
    }

    /// A direct writer (release archives) writes whole buffers past the page cache and its last partial buffer through
    /// it: the file and its digest are the bytes in order, for writes smaller and larger than the buffer and a file
    /// that ends on a buffer's edge; on the file systems that take O_DIRECT (ext4, XFS, Btrfs) the written pages are
    /// not in the page cache, except the tail's.
    func testDirectWriterWritesTheSameBytesPastThePageCache() throws {
        let dir = try TestSupport.temporaryDirectory()
        defer { removeTree(dir) }
        let takesDirect = try TestSupport.isOnDisk(dir)
        let buffer = 1 << 16
        for (name, sizes) in [("ragged.bin", [1, 4095, 200_000, 3, 70_000, 65_536, 10]), ("edge.bin", [buffer, 2 * buffer + 5, buffer - 5])] {
            let out = try AtomicFileWriter(destination: dir + "/" + name, bufferSize: buffer, hashing: true, direct: true)
            if takesDirect { XCTAssertTrue(out.writesDirectly, name) }
            var expected = [UInt8]()
            for (i, size) in sizes.enumerated() {
                let piece = (0..<size).map { UInt8(truncatingIfNeeded: $0 &* 131 &+ i &* 7 &+ $0 >> 9) }
                expected += piece
                try out.write(piece)
            }
            try out.commit()
            if takesDirect {
                // Before anything reads the file back into the page cache.
                let resident = TestSupport.residentPages(try MappedFile(path: dir + "/" + name))
                let direct = expected.count / buffer * buffer / Int(sysconf(Int32(_SC_PAGESIZE)))
                XCTAssertGreaterThan(direct, 0)
                XCTAssertEqual(resident[..<direct].filter { $0 }.count, 0, "\(name): pages written directly are not in the page cache")
            }
            XCTAssertEqual(FileManager.default.contents(atPath: dir + "/" + name).map { [UInt8]($0) }, expected, name)
            XCTAssertEqual(out.sha256, expected.withUnsafeBytes { SHA256.hex(of: $0) }, name)
        }
    }

    /// `adviseWillNeed` reads the whole range into memory, though Linux reads at most one readahead window (the
    /// device's `read_ahead_kb`, 128 KiB by default, 8 MiB on this project's VMs) per request: a 24 MiB file not in
    /// memory is in it soon after one call, without being touched. Readahead is advice the kernel may cut short (it
    /// gives up on a page it cannot allocate at once; a fresh-clone CI run once missed 50 pages of 6,144), so the
    /// test asks for nine tenths: one call for the whole range reads a third here (8 MiB), 1/192 with a 128 KiB window.
    func testAdvisingAColdFileReadsAllOfIt() throws {
        let dir = try TestSupport.temporaryDirectory()
        defer { removeTree(dir) }
        guard let path = try coldFile(in: dir) else { return }
        let file = try MappedFile(path: path)
        XCTAssertEqual(TestSupport.residentPages(file).filter { $0 }.count, 0, "the file starts out of memory")
        file.adviseWillNeed(0..<file.count)
        func resident() -> Int { TestSupport.residentPages(file).filter { $0 }.count }
        let pages = file.count / Int(sysconf(Int32(_SC_PAGESIZE)))
        var waited = 0
        while resident() < pages, waited < 100 {
            usleep(50_000)
            waited += 1
        }
        XCTAssertGreaterThanOrEqual(resident(), pages * 9 / 10, "the range is read, not one readahead window of it")
    }

    /// A 24 MiB file in `dir`, dropped from the page cache; nil where the file system keeps every page in memory
    /// (tmpfs: nothing to observe).
    private func coldFile(in dir: String) throws -> String? {
        let path = dir + "/cold.bin"
        try Data(count: 24 << 20).write(to: URL(fileURLWithPath: path))
        guard try TestSupport.isOnDisk(dir) else { return nil }
        try TestSupport.evictFromPageCache(path)
        return path
    }

    /// `readIntoMemory` returns with the whole range in memory, held in large folios wherever a plain sequential
    /// `read` of the file gets them. `adviseWillNeed` (`MADV_WILLNEED`) reads into 4 KiB pages (6,144 for this file),
    /// which cost every later process about ten times as much to map and unmap.
    func testReadingAColdRangeIntoMemoryReadsAllOfItInLargeFolios() throws {
        let dir = try TestSupport.temporaryDirectory()
        defer { removeTree(dir) }
        guard let path = try coldFile(in: dir) else { return }
        let pages = (24 << 20) / Int(sysconf(Int32(_SC_PAGESIZE)))
        // What a plain sequential read leaves in the page cache on this file system.
        let handle = try XCTUnwrap(FileHandle(forReadingAtPath: path))
        while let chunk = try handle.read(upToCount: 1 << 20), !chunk.isEmpty {}
        try handle.close()
        let sequential = try TestSupport.folioCount(try MappedFile(path: path))

        try TestSupport.evictFromPageCache(path)
        let file = try MappedFile(path: path)
        XCTAssertEqual(TestSupport.residentPages(file).filter { $0 }.count, 0, "the file starts out of memory")
        file.readIntoMemory(0..<file.count)
        XCTAssertEqual(TestSupport.residentPages(file).filter { $0 }.count, pages, "the whole range is in memory on return")
        let folios = try TestSupport.folioCount(file)
        XCTAssertLessThanOrEqual(folios, max(sequential, 64), "\(folios) folios for \(pages) pages; a sequential read left \(sequential)")
    }

    /// Buffers are written on another thread while the next fills: the file and its digest are those of the bytes in
    /// order, and a write that fails there (here: past a file-size limit) is thrown by a later call, naming the file,
    /// with nothing at the destination.
    func testBuffersWrittenOnAnotherThreadKeepTheOrderAndTheirFailures() throws {
        let dir = try TestSupport.temporaryDirectory()
        defer { removeTree(dir) }
        var expected = [UInt8]()
        let out = try AtomicFileWriter(destination: dir + "/ordered.bin", bufferSize: 1 << 16, hashing: true)
        for i in 0..<300 {
            let piece = (0..<(1000 + i * 37)).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ i) }
            expected += piece
            try out.write(piece)
        }
        try out.commit()
        XCTAssertEqual(FileManager.default.contents(atPath: dir + "/ordered.bin").map { [UInt8]($0) }, expected)
        XCTAssertEqual(out.sha256, expected.withUnsafeBytes { SHA256.hex(of: $0) })

        signal(SIGXFSZ, SIG_IGN)
        var old = rlimit()
        getrlimit(Int32(RLIMIT_FSIZE.rawValue), &old)
        var limit = rlimit(rlim_cur: 3 << 20, rlim_max: old.rlim_max)
        XCTAssertEqual(setrlimit(Int32(RLIMIT_FSIZE.rawValue), &limit), 0)
        defer {
            setrlimit(Int32(RLIMIT_FSIZE.rawValue), &old)
            signal(SIGXFSZ, SIG_DFL)
        }
        let big = try AtomicFileWriter(destination: dir + "/big.bin", bufferSize: 1 << 20)
        let chunk = [UInt8](repeating: 7, count: 100_000)
        XCTAssertThrowsError(try { for _ in 0..<80 { try big.write(chunk) }; try big.commit() }()) { error in
            XCTAssertEqual(error as? FileError, FileError(path: big.temporaryPath, operation: "write", code: EFBIG), "\(error)")
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/big.bin"))
    }

    func testAtomicDirectoryAppearsWholeRefusesOrSwapsAnExistingOne() throws {
        let dir = try TestSupport.temporaryDirectory()
        defer { removeTree(dir) }
        let target = dir + "/bundle"
        func fill(_ d: AtomicDirectory, _ text: String) throws {
            let w = try AtomicFileWriter(destination: d.path("a.txt"))
            try w.write(text)
            try w.commit()
        }
        do {
            let d = try AtomicDirectory(destination: target)
            try fill(d, "abandoned")
            XCTAssertFalse(FileManager.default.fileExists(atPath: target))
        }
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir), [], "an abandoned folder is removed with its files")
        let first = try AtomicDirectory(destination: target)
        try fill(first, "one")
        try first.commit(replacing: false)
        let second = try AtomicDirectory(destination: target)
        try fill(second, "two")
        XCTAssertThrowsError(try second.commit(replacing: false)) {
            XCTAssertEqual(($0 as? DestinationExists)?.path, target)
            XCTAssertEqual("\($0)", "\(target) appeared while this run was writing (another run?); it was left as it is and this run's output discarded")
        }
        XCTAssertEqual(try String(contentsOfFile: target + "/a.txt", encoding: .utf8), "one", "an existing folder is kept without replacing")
        try second.commit(replacing: true)
        XCTAssertEqual(try String(contentsOfFile: target + "/a.txt", encoding: .utf8), "two")
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir), ["bundle"], "the old folder is gone after the swap")
        let file = try AtomicFileWriter(destination: dir + "/f")
        try file.write("x")
        try FileManager.default.createDirectory(atPath: dir + "/f", withIntermediateDirectories: false)
        XCTAssertThrowsError(try file.commit(replacing: false), "a file commit without replacing refuses an existing path")
    }

    func testMappedFileErrors() {
        XCTAssertThrowsError(try MappedFile(path: "/nonexistent/file")) { XCTAssertEqual($0 as? FileError, FileError(path: "/nonexistent/file", operation: "open", code: ENOENT)) }
        XCTAssertThrowsError(try MappedFile(path: "/tmp")) { XCTAssertEqual($0 as? FileError, FileError(path: "/tmp", operation: "open (not a regular file)", code: EISDIR)) }
    }
}
