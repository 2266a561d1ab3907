import ArapackFormats
import ArapackModel
import ArapackRelease
import ArgumentParser
import CSystem
#if canImport(Glibc)
import Glibc
#endif

/// The `arapack` root command.
@main
struct Arapack: ParsableCommand {
    static let version = arapackVersion

    static let configuration = CommandConfiguration(
        commandName: "arapack",
        abstract: "Turn AraFusion training checkpoints into verified release artifacts, and back.",
        discussion: """
            Exit status: 0 success; 1 verification or parity failed; 2 the input could not be read \
            (unreadable, malformed, unsafe, inconsistent) or the output could not be put where asked (DST exists and \
            --force was not given, --force met something arapack did not write, an output is or holds an input); \
            64 usage error; 130, 143 or 129 interrupted by SIGINT, SIGTERM or SIGHUP (128 + the signal), with nothing \
            left at DST.

            Every command prints JSON on request (--json; verify also writes --report FILE). An output named on the \
            command line is written where it points: through a symbolic link (the link stays), into a FIFO or device \
            in order, '-' for standard output.

            The reference forward pass (parity, run) gives the same bits on every machine, batch and thread count. \
            ARAPACK_ISA=avx512|avx2|generic makes its kernels use a narrower instruction set than the CPU's widest \
            (to check that on one machine); ARAPACK_THREADS=N sets how many threads share it.
            """,
        version: version,
        subcommands: [InspectCommand.self, ConvertCommand.self, ReleaseCommand.self, VerifyCommand.self, SignCommand.self, RunCommand.self, EvalCommand.self]
    )

    static func main() {
        // Large buffers (slices of multi-GB tensors) come from mmap and go back to the system when freed;
        // glibc's adaptive threshold would otherwise move them onto the heap, whose freed pages stay resident.
        arapack_mmap_allocations_from(1 << 20)
        // A file-size limit (ulimit -f) then makes write() fail with EFBIG, reported like any I/O error,
        // instead of killing the process.
        signal(SIGXFSZ, SIG_IGN)
        // Before any other thread starts: an interrupt removes the temporaries of a half-written output.
        TemporaryFiles.removeOnInterrupt()
        do {
            var command = try parseAsRoot()
            do {
                try KernelISA.configureFromEnvironment()
            } catch {
                throw ValidationError("\(error)")
            }
            try command.run()
        } catch {
            exit(withError: error)
        }
    }
}
