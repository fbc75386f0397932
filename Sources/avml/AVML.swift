import ArgumentParser
import ImageFormats
import ImagePipeline

@main
struct AVML: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "avml",
        abstract: "Acquire volatile memory for Linux: capture, convert and verify physical memory images.",
        version: "0.1.0",
        subcommands: [Acquire.self, Convert.self, Verify.self, Info.self, Upload.self, Stream.self]
    )
}

/// Options every subcommand that writes images shares.
struct PipelineOptions: ParsableArguments {
    @Option(help: "Threads that check and compress blocks (default: the CPUs this process may use).")
    var threads: Int = availableProcessors()

    @Flag(help: "Show no progress or summary on stderr (warnings and errors still show).")
    var quiet = false

    func validate() throws {
        guard threads >= 1 && threads <= 1024 else { throw ValidationError("--threads must be between 1 and 1024") }
    }
}

extension ImageFormat: ExpressibleByArgument {}

/// Prints an error and its causes the way AVML does, escaped for the terminal, and exits 1.
func fail(_ error: Error) -> Never {
    var message = "error: \(String(describing: error))"
    var cause = (error as? CausedError)?.cause
    while let current = cause {
        message += "\ncaused by: \(String(describing: current))"
        cause = (current as? CausedError)?.cause
    }
    FileHandleStandardError.write(message + "\n")
    AVML.exit(withError: ExitCode.failure)
}

/// An error that wraps the one that led to it.
protocol CausedError: Error {
    var cause: Error? { get }
}
