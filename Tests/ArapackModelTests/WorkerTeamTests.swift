@testable import ArapackModel
import ArapackRelease
import ArapackTestSupport
import Dispatch
import Foundation
import Synchronization
import XCTest

/// The threads a forward pass keeps between its parallel regions: every part of every region runs once, part 0 on
/// the caller and the others each on a thread of its own, whether the helpers were polling or asleep, with regions
/// of fewer parts than helpers, and with two callers at once; `stop` ends the helpers' threads.
final class WorkerTeamTests: XCTestCase {
    /// Runs `regions` regions of `parts(i)` parts on `team`, checking each region's parts before the next starts.
    static func runRegions(_ team: WorkerTeam, regions: Int, parts: (Int) -> Int, between: () -> Void = {}) {
        for i in 0..<regions {
            let n = parts(i)
            let counts = Mutex([Int](repeating: 0, count: n))
            let threads = Mutex<[Int: pthread_t]>([:])
            let caller = pthread_self()
            team.run(parts: n) { part in
                counts.withLock { $0[part] += 1 }
                threads.withLock { $0[part] = pthread_self() }
            }
            let seen = counts.withLock { $0 }
            XCTAssertEqual(seen, Array(repeating: 1, count: n), "region \(i) of \(n) parts")
            threads.withLock { threads in
                XCTAssertTrue(pthread_equal(threads[0]!, caller) != 0, "region \(i): part 0 runs on the caller")
                let others = (1..<n).map { threads[$0]! }
                for (a, x) in others.enumerated() {
                    XCTAssertTrue(pthread_equal(x, caller) == 0, "region \(i): part \(a + 1) runs on a helper")
                    for y in others[(a + 1)...] { XCTAssertTrue(pthread_equal(x, y) == 0, "region \(i): parts on distinct helpers") }
                }
            }
            if seen != Array(repeating: 1, count: n) { return }
            between()
        }
    }

    func testEveryPartOfEveryRegionRunsOnceOnItsOwnThread() {
        let team = WorkerTeam(threads: 4)
        defer { team.stop() }
        // Back to back (the helpers polling), with every count of parts from 1 to 4 (helpers left out of a region).
        Self.runRegions(team, regions: 4_000, parts: { 1 + $0 % 4 })
    }

    func testSleepingHelpersAreWokenForTheNextRegion() {
        let team = WorkerTeam(threads: 3)
        // A helper never woken would hang the region: the regions run on a thread of their own, waited for with a
        // deadline (the team is left running then).
        let done = DispatchSemaphore(value: 0)
        DispatchQueue.global().async {
            // Longer than the helpers poll: each region finds them asleep.
            WorkerTeamTests.runRegions(team, regions: 50, parts: { $0 % 2 == 0 ? 3 : 2 }, between: { usleep(useconds_t(WorkerTeam.pollLimit / 1000 * 20)) })
            // And regions arriving just as a helper goes to sleep.
            WorkerTeamTests.runRegions(team, regions: 400, parts: { _ in 3 }, between: { usleep(useconds_t(WorkerTeam.pollLimit / 1000) + 1) })
            done.signal()
        }
        if done.wait(timeout: .now() + 60) == .timedOut { return XCTFail("a region never ended: a sleeping helper was not woken") }
        team.stop()
    }

    func testTwoCallersAtOnceEachGetEveryPart() {
        let team = WorkerTeam(threads: 3)
        defer { team.stop() }
        let failures = Atomic<Int>(0)
        DispatchQueue.concurrentPerform(iterations: 2) { _ in
            for _ in 0..<2_000 {
                let counts = Mutex([0, 0, 0])
                team.run(parts: 3) { part in counts.withLock { $0[part] += 1 } }
                if counts.withLock({ $0 }) != [1, 1, 1] { failures.add(1, ordering: .relaxed) }
            }
        }
        XCTAssertEqual(failures.load(ordering: .relaxed), 0)
    }

    /// Threads of this process named as a team's helpers are.
    static func helperThreads() throws -> Int {
        try FileManager.default.contentsOfDirectory(atPath: "/proc/self/task").filter { task in
            (try? String(contentsOfFile: "/proc/self/task/\(task)/comm", encoding: .utf8))?.trimmingCharacters(in: .newlines) == WorkerTeam.threadName
        }.count
    }

    /// Waits up to a second for the helpers' threads to come down to `count` (a helper reports before its thread ends).
    static func helperThreads(settlingAt count: Int) throws -> Int {
        var now = try helperThreads()
        for _ in 0..<200 where now > count { usleep(5_000); now = try helperThreads() }
        return now
    }

    func testStopEndsTheHelpersThreads() throws {
        let before = try Self.helperThreads(settlingAt: 0)  // an earlier test's helpers may still be ending
        let team = WorkerTeam(threads: 5)
        Self.runRegions(team, regions: 10, parts: { _ in 5 })
        XCTAssertEqual(try Self.helperThreads(), before + 4)
        team.stop()
        XCTAssertEqual(try Self.helperThreads(settlingAt: before), before)
    }

    /// A forward pass's helpers end with the pass (eval and release make one pass per model, tests hundreds).
    func testAForwardPassEndsItsHelpersWhenItGoes() throws {
        let model = try ReleaseModel(path: TestSupport.fixture("golden/ar_odd.pt"))
        let ids = Parity.probes(count: 2, length: 5, vocab: model.config.vocabSize, seed: 1)
        let before = try Self.helperThreads(settlingAt: 0)
        for _ in 0..<20 {
            let pass = try ForwardPass(model, threads: 4)
            _ = try pass.logits(ids)
            XCTAssertEqual(try Self.helperThreads(settlingAt: before + 3), before + 3)  // this pass's three, no earlier pass's
        }
        XCTAssertEqual(try Self.helperThreads(settlingAt: before), before)
    }
}
