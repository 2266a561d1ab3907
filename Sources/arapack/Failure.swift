import ArapackRelease
import ArgumentParser
#if canImport(Glibc)
import Glibc
#endif

/// Exit statuses of the command line contract (docs/bundle.md).
enum ExitStatus {
    static let verificationFailed = ExitCode(1)
    static let unreadableInput = ExitCode(2)
}

/// Runs `body`, turning any library error into one line on standard error and exit status 2
/// (or the status an `ExitCode` carries).
func runReportingErrors(_ stage: String, _ body: () throws -> Void) throws {
    do {
        try body()
    } catch let code as ExitCode {
        throw code
    } catch let usage as UsageError {
        printError("arapack \(stage): error: \(usage)")
        throw ExitCode(64)
    } catch let usage as ParityRequest.Problem {
        printError("arapack \(stage): error: \(usage)")
        throw ExitCode(64)
    } catch {
        printError("arapack \(stage): error: \(error)")
        throw ExitStatus.unreadableInput
    }
}

/// A usage error found only once the input is read (exit 64, like argument errors).
struct UsageError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// Writes `line` to standard error.
func printError(_ line: String) {
    // Names inside come from files: escaped control characters keep the message on its one line.
    let bytes = Array((line.escapingControlCharacters + "\n").utf8)
    _ = bytes.withUnsafeBytes { write(2, $0.baseAddress, $0.count) }
}
