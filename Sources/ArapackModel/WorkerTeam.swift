import CSystem
import Dispatch
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// The threads a forward pass shares its parallel regions with, kept from one region to the next. A pass runs
/// hundreds of short regions back to back (eleven per layer); `DispatchQueue.concurrentPerform` added 45–80 µs to
/// each on the 2-core VMs measured (its pool's workers take turns and are woken through the pool), while the caller
/// waits. A helper here is one thread of its own, woken for its part directly; after a part it polls for the next
/// region for `pollLimit` (regions that follow at once) and then sleeps, so an idle pass holds no core.
/// Regions of one team run one at a time; a region asked for while another runs (two callers on one pass) goes to
/// libdispatch instead.
final class WorkerTeam: @unchecked Sendable {
    /// How long a helper polls for the next region before it sleeps, and the caller for the helpers' parts before it
    /// yields its core between polls (nanoseconds).
    static let pollLimit: UInt64 = 50_000
    /// The name of a helper's thread (in `top -H`, perf and a debugger).
    static let threadName = "arapack helper"

    private final class Helper: @unchecked Sendable {
        let index: Int
        let asleep = Atomic<Bool>(false)
        let wake = DispatchSemaphore(value: 0)
        let exited = DispatchSemaphore(value: 0)
        init(index: Int) { self.index = index }
    }

    /// The current region: its number in the high bits, how many parts it has in the low 16 (0 tells helpers to
    /// exit). A helper takes part `index + 1` of a region with more parts than that.
    private let region = Atomic<Int>(0)
    /// Helpers that have finished the current region's part.
    private let finished = Atomic<Int>(0)
    private let busy = Mutex<Bool>(false)
    private nonisolated(unsafe) var job: ((Int) -> Void)?
    private let helpers: [Helper]
    /// The helpers whose thread started (all, unless the system refused a thread): parts go to these only.
    private var started = 0

    /// A team of `threads` − 1 helpers beside the caller of `run`.
    init(threads: Int) {
        helpers = (0..<max(0, threads - 1)).map(Helper.init(index:))
        for helper in helpers {
            let context = Unmanaged.passRetained(Start(team: self, helper: helper)).toOpaque()
            var thread = pthread_t()
            guard pthread_create(&thread, nil, { context in
                let start = Unmanaged<Start>.fromOpaque(context!).takeRetainedValue()
                arapack_name_thread(WorkerTeam.threadName)
                start.team.serve(start.helper)
                return nil
            }, context) == 0 else {
                Unmanaged<Start>.fromOpaque(context).release()
                break
            }
            pthread_detach(thread)
            started += 1
        }
    }

    private final class Start {
        let team: WorkerTeam, helper: Helper
        init(team: WorkerTeam, helper: Helper) { self.team = team; self.helper = helper }
    }

    /// Tells the helpers to exit and waits until they have (they hold the team until then).
    func stop() {
        publish(parts: 0, wakingFirst: started)
        for helper in helpers.prefix(started) { helper.exited.wait() }
    }

    /// Runs `body(part)` for every part in `0..<parts`, part 0 on the calling thread, and returns when all have
    /// returned. More parts than the team has threads, or a team already running a region, go to libdispatch.
    func run(parts: Int, _ body: (Int) -> Void) {
        guard parts > 1, parts <= started + 1, busy.withLock({ taken in
            if taken { return false }
            taken = true
            return true
        }) else {
            nonisolated(unsafe) let body = body
            return DispatchQueue.concurrentPerform(iterations: parts) { body($0) }
        }
        withoutActuallyEscaping(body) { body in
            job = body
            finished.store(0, ordering: .relaxed)
            publish(parts: parts, wakingFirst: parts - 1)
            body(0)
            let start = DispatchTime.now().uptimeNanoseconds
            while finished.load(ordering: .acquiring) < parts - 1 { Self.pause(since: start) }
            job = nil
        }
        busy.withLock { $0 = false }
    }

    /// Starts the next region and wakes the first `count` helpers if they sleep.
    private func publish(parts: Int, wakingFirst count: Int) {
        let number = (region.load(ordering: .relaxed) >> 16) + 1
        // Sequentially consistent, as a helper's going to sleep is: either it sees this region or this sees it asleep.
        region.store(number << 16 | parts, ordering: .sequentiallyConsistent)
        for helper in helpers.prefix(count) where helper.asleep.compareExchange(
            expected: true, desired: false, ordering: .sequentiallyConsistent).exchanged {
            helper.wake.signal()
        }
    }

    /// One step of the caller's wait for the helpers, begun at `start`: the CPU's pause for the first `pollLimit`,
    /// then a yield of the core to any other thread that can run (more threads than cores, a digest or a writer).
    private static func pause(since start: UInt64) {
        if DispatchTime.now().uptimeNanoseconds - start < pollLimit { arapack_spin_pause() } else { sched_yield() }
    }

    /// A helper's life: wait for a region, take its part if it has one, report, again; exit on a region of 0 parts.
    private func serve(_ helper: Helper) {
        var seen = 0
        while true {
            let current = next(after: seen, helper)
            seen = current
            let parts = current & 0xFFFF
            if parts == 0 { break }
            if helper.index + 1 < parts {
                // The body is let go of before reporting: `run` checks that nothing keeps it.
                do { let body = job!; body(helper.index + 1) }
                finished.add(1, ordering: .releasing)
            }
        }
        helper.exited.signal()
    }

    /// Polls for a region other than `seen`, then sleeps until `publish` wakes this helper.
    private func next(after seen: Int, _ helper: Helper) -> Int {
        let start = DispatchTime.now().uptimeNanoseconds
        while true {
            let current = region.load(ordering: .acquiring)
            if current != seen { return current }
            if DispatchTime.now().uptimeNanoseconds - start < Self.pollLimit {
                arapack_spin_pause()
            } else {
                helper.asleep.store(true, ordering: .sequentiallyConsistent)
                let now = region.load(ordering: .sequentiallyConsistent)
                if now != seen, helper.asleep.compareExchange(expected: true, desired: false, ordering: .sequentiallyConsistent).exchanged {
                    return now
                }
                helper.wake.wait()  // publish cleared `asleep` and signals (or already has)
            }
        }
    }
}
