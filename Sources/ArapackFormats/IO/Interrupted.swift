#if canImport(Glibc)
import Glibc
#endif

/// Runs a system call again while a signal interrupts it (it returns −1 with errno EINTR), as swift-system's
/// `retryOnInterrupt` does: the one loop over interrupted reads and writes. Returns the call's result (−1 with
/// errno set for any other failure).
@inline(__always)
public func retryingOnInterrupt(_ call: () -> Int) -> Int {
    while true {
        let n = call()
        if n >= 0 || errno != EINTR { return n }
    }
}
