import ArapackFormats
import ArapackTestSupport
import Foundation
import XCTest

/// SIGKILL at many points of a real conversion, two conversions racing for one DST, and a file-size limit
/// hit mid-write: DST is absent or complete, never partial, and no temporary outlives the next run.
final class CrashSafetyTests: XCTestCase {
    var scratch = ""
    override func setUpWithError() throws { scratch = try TestSupport.temporaryDirectory() }
    override func tearDown() { removeTree(scratch) }

    /// One ~35 MB checkpoint for the whole class (making it is the slow part of these tests).
    nonisolated(unsafe) static var shared: String?
    func largeCheckpoint() throws -> String {
        if let path = Self.shared { return path }
        let dir = try TestSupport.temporaryDirectory("arapack-crash")
        try ConvertCommandTests.writeLargeCheckpoint(dir + "/large.pt")
        Self.shared = dir + "/large.pt"
        return dir + "/large.pt"
    }
    override class func tearDown() {
        if let path = shared { removeTree(splitPath(path).0) }
        super.tearDown()
    }

    func start(_ args: [String]) throws -> Process {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: TestSupport.arapackBinary)
        p.arguments = args
        p.standardOutput = FileHandle.nullDevice
        p.standardError = FileHandle.nullDevice
        try p.run()
        return p
    }

    func testSigkillAtTwentyPointsLeavesNothingPartial() throws {
        let source = try largeCheckpoint()
        // How long one conversion takes here, to spread the kill points over it.
        let t0 = Date()
        let full = try start(["convert", source, scratch + "/timing", "--archive", "--quiet"])
        full.waitUntilExit()
        XCTAssertEqual(full.terminationStatus, 0)
        let duration = Date().timeIntervalSince(t0)
        removeTree(scratch + "/timing")
        removeTree(scratch + "/timing.tar.zst")
        removeTree(scratch + "/timing.tar.zst.sha256")
        var killed = 0, complete = 0
        for i in 0..<20 {
            let dst = scratch + "/out\(i)"
            let p = try start(["convert", source, dst, "--archive", "--quiet"])
            usleep(useconds_t(duration * Double(i + 1) / 21 * 1_000_000))
            kill(p.processIdentifier, SIGKILL)
            p.waitUntilExit()
            if pathExists(dst) {
                let r = try TestSupport.arapack("verify", dst)
                XCTAssertEqual(r.status, 0, "kill point \(i): a DST that exists is complete: \(r.stdout)")
                complete += 1
            } else {
                XCTAssertFalse(pathExists(dst + ".tar.zst") && !pathExists(dst), "kill point \(i): no archive without its bundle")
                killed += 1
            }
        }
        XCTAssertGreaterThan(killed, 5, "most kill points land mid-conversion")
        // A killed run leaves temporaries (nothing can remove them); the next run into the same folder does,
        // whether it then converts (DST absent) or refuses (DST complete, its archive perhaps not yet renamed).
        for i in 0..<20 {
            let existed = pathExists(scratch + "/out\(i)")
            let r = try TestSupport.arapack("convert", source, scratch + "/out\(i)", "--quiet")
            XCTAssertEqual(r.status, existed ? 2 : 0, r.stderr)
            if existed { XCTAssertTrue(r.stderr.contains("already exists"), r.stderr) }
        }
        XCTAssertEqual(try directoryEntries(scratch).filter { $0.contains("arapack-tmp") }, [])
        print("SIGKILL: \(killed) runs killed mid-way, \(complete) had finished; no partial DST")
    }

    func testTwoConversionsRacingForOneDestination() throws {
        let source = try largeCheckpoint()
        let dst = scratch + "/release"
        let errors = [scratch + "/err0", scratch + "/err1"]
        let runs = try errors.map { err -> Process in
            let p = Process()
            p.executableURL = URL(fileURLWithPath: TestSupport.arapackBinary)
            p.arguments = ["convert", source, dst, "--quiet"]
            _ = FileManager.default.createFile(atPath: err, contents: nil)
            p.standardError = try FileHandle(forWritingTo: URL(fileURLWithPath: err))
            p.standardOutput = FileHandle.nullDevice
            try p.run()
            return p
        }
        runs.forEach { $0.waitUntilExit() }
        let statuses = runs.map(\.terminationStatus).sorted()
        XCTAssertEqual(statuses, [0, 2], "one wins, the other fails cleanly")
        // The loser's standard error (the winner's holds its warning that the release has no tokenizer).
        let loser = try zip(runs, errors).first { $0.0.terminationStatus == 2 }.map { try String(contentsOfFile: $0.1, encoding: .utf8) } ?? ""
        XCTAssertTrue(loser.contains("appeared while this run was writing") || loser.contains("already exists"), loser)
        XCTAssertEqual(try TestSupport.arapack("verify", dst).status, 0)
        XCTAssertEqual(try directoryEntries(scratch).filter { $0.contains("arapack-tmp") }, [])
    }

    func testFileSizeLimitMidWriteIsAnErrorNotACrash() throws {
        let source = try largeCheckpoint()
        // 4,096 blocks of 1 KiB (bash counts ulimit -f in KiB): the 33 MB model.safetensors cannot fit.
        let r = try TestSupport.run("/bin/bash", ["-c", "ulimit -f 4096; exec '\(TestSupport.arapackBinary)' convert '\(source)' '\(scratch)/out' --quiet"])
        XCTAssertEqual(r.status, 2, r.stderr)
        XCTAssertEqual(r.stderr.split(separator: "\n").count, 1, r.stderr)
        XCTAssertTrue(r.stderr.contains("File too large"), r.stderr)
        XCTAssertEqual(try directoryEntries(scratch), [], "no DST, no temporaries")
    }
}
