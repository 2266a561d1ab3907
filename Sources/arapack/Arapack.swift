import ArapackRelease
import ArgumentParser

/// The `arapack` root command.
@main
struct Arapack: ParsableCommand {
    static let version = arapackVersion

    static let configuration = CommandConfiguration(
        commandName: "arapack",
        abstract: "Turn AraFusion training checkpoints into verified release artifacts, and back.",
        discussion: """
            Exit status: 0 success; 1 verification or parity failed; 2 the input could not be read \
            (unreadable, malformed, unsafe, inconsistent); 64 usage error.
            """,
        version: version,
        subcommands: [InspectCommand.self, ConvertCommand.self, VerifyCommand.self]
    )
}
