import ArgumentParser
import Capture
import Dispatch
import Glibc
import ImageFormats
import RecordEngine

/// The root command of each binary (`avml`, `avml-minimal`): its `main()` sets up
/// signals before parsing.
public protocol AVMLRootCommand: ParsableCommand {}

extension AVMLRootCommand {
    /// Signals first: a reader that goes away (`avml acquire /dev/stdout | ssh ...`)
    /// must give a write error, not kill the process silently; SIGINT and SIGTERM
    /// stop the capture between blocks so the incomplete image is removed.
    ///
    /// Every command returns its failure as a `CommandFailure`; this is the one place that
    /// prints it and picks the exit status (1). Argument errors, `--help` and `ExitCode`
    /// go to swift-argument-parser as before.
    public static func main() {
        signal(SIGPIPE, SIG_IGN)
        let signalSources = stopOnSignals()
        defer { withExtendedLifetime(signalSources) {} }
        do {
            var command = try parseAsRoot()
            try command.run()
        } catch let failure as CommandFailure {
            FileHandleStandardError.write(failure.message + "\n")
            exit(withError: ExitCode.failure)
        } catch {
            exit(withError: error)
        }
    }
}

/// `--quiet`, the same for every subcommand that reports progress or a summary.
public struct QuietOption: ParsableArguments {
    @Flag(help: "Show no progress or summary on stderr (warnings and errors still show).")
    public var quiet = false

    public init() {}
}

/// Options every subcommand that writes images shares.
public struct PipelineOptions: ParsableArguments {
    @Option(help: "Threads that read, check and compress blocks (default: the CPUs this process may use, at most 8).")
    public var threads: Int = RecordPipeline.defaultThreads

    @Option(
        help: ArgumentHelp(
            "MiB of buffers a capture or conversion may hold (default 256); fewer threads run if more would not fit.",
            valueName: "MiB"))
    var memoryBudget: Int = RecordPipeline.defaultMemoryBudget >> 20

    @OptionGroup var reporting: QuietOption
    public var quiet: Bool { reporting.quiet }

    public init() {}

    public func validate() throws {
        guard threads >= 1 && threads <= 1024 else { throw ValidationError("--threads must be between 1 and 1024") }
        let minimum = (RecordPipeline.minimumBudget(compressed: true) + (1 << 20) - 1) >> 20
        guard memoryBudget >= minimum && memoryBudget <= 1 << 20 else {
            throw ValidationError("--memory-budget must be between \(minimum) and \(1 << 20) (MiB)")
        }
    }

    public var memoryBudgetBytes: Int { memoryBudget << 20 }
}

extension ImageFormat: ExpressibleByArgument {}

/// A command failed: `main` prints `message` (the error and its causes, as AVML does)
/// and exits 1. Commands throw it rather than exit, so that they can be tested in-process.
public struct CommandFailure: Error, CustomStringConvertible {
    public var error: any Error

    public init(_ error: any Error) {
        self.error = error
    }

    /// "error: ..." and a "caused by: ..." line per wrapped cause.
    public var message: String {
        var message = "error: \(String(describing: error))"
        var cause = (error as? CausedError)?.cause
        while let current = cause {
            message += "\ncaused by: \(String(describing: current))"
            cause = (current as? CausedError)?.cause
        }
        return message
    }

    public var description: String { message }
}

/// An error that wraps the one that led to it.
protocol CausedError: Error {
    var cause: Error? { get }
}

/// The first SIGINT or SIGTERM asks the capture to stop; a second one quits at once.
/// - Returns: the signal sources, which handle signals only while the caller keeps them alive.
private func stopOnSignals() -> [DispatchSourceSignal] {
    [SIGINT, SIGTERM].map { number in
        signal(number, SIG_IGN)
        let source = DispatchSource.makeSignalSource(signal: number, queue: .global())
        source.setEventHandler {
            if Interruption.requested { _exit(128 + number) }
            Interruption.request()
            FileHandleStandardError.write("\navml: stopping after the current block (signal again to quit at once)\n")
        }
        source.resume()
        return source
    }
}
