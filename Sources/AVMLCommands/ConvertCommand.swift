import ArgumentParser
import Capture
import ImageFormats
import RecordEngine

public struct Convert: ParsableCommand {
    public static let configuration = CommandConfiguration(
        abstract: "Convert a memory image between raw, LiME and AVML's compressed format.")

    @Option(help: "Format of SRC: raw, lime or lime_compressed.")
    var sourceFormat: ImageFormat = .limeCompressed

    @Option(help: "Format to write: raw, lime or lime_compressed.")
    var format: ImageFormat = .lime

    @OptionGroup var pipeline: PipelineOptions

    @Argument(help: "Image to read.")
    var src: String

    @Argument(help: "Image to write (created mode 0600; a symlink here is refused).")
    var dst: String

    public init() {}

    public func run() throws {
        let progress = ProgressLine("convert", quiet: pipeline.quiet)
        var conversion = Conversion(
            source: src, sourceFormat: sourceFormat, destination: dst, format: format, threads: pipeline.threads)
        conversion.memoryBudget = pipeline.memoryBudgetBytes
        let result: PipelineResult
        do {
            result = try conversion.run(progress: progress.callback)
        } catch {
            progress.finish()
            throw CommandFailure(error)
        }
        progress.finish()
        reportVolatilityUnreadable(result.volatilityUnreadable)
    }
}
