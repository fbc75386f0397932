import ArgumentParser
import Capture
import ImageFormats
import MemorySources

/// What `acquire` does with the finished image besides keeping it: the full avml
/// uploads it (`--url`, `--sas-url`, `--delete`); the acquire-only build has no
/// network stack and refuses those options (`NoUpload`).
public protocol AcquireUpload: ParsableArguments {
    /// Whether an upload was asked for (the image must then be a file, not a stream).
    var isRequested: Bool { get }

    /// Refuses, before any memory is read, an upload the destination could not take.
    /// - Parameters:
    ///   - plan: what will be captured.
    ///   - compressed: whether the image is compressed (its size is then known only afterwards).
    /// - Throws: the destination's refusal, which stops the capture.
    func checkBeforeReading(_ plan: CapturePlan, compressed: Bool) throws

    /// Uploads `file` if asked, after a successful capture.
    /// - Throws: `CommandFailure` when the upload fails.
    func uploadIfRequested(file: String, quiet: Bool) throws(CommandFailure)
}

/// `avml acquire`, the same in both binaries but for what `Upload` adds.
public struct Acquire<Upload: AcquireUpload>: ParsableCommand {
    public static var configuration: CommandConfiguration {
        CommandConfiguration(
            commandName: "acquire",
            abstract: "Capture this host's physical memory (System RAM from /proc/iomem) to a LiME or compressed image.")
    }

    @OptionGroup var capture: CaptureOptions

    @Option(help: "Refuse to start if the image could exceed this many MiB.")
    var maxDiskUsage: UInt64?

    @Option(help: "Refuse to start if the filesystem would pass this percentage full (0.01-100).")
    var maxDiskUsagePercentage: Double?

    @OptionGroup var upload: Upload

    @Argument(help: "Image to write (created mode 0600; a symlink here is refused; /dev/stdout streams).")
    var filename: String

    public init() {}

    public func validate() throws {
        if let maxDiskUsage, maxDiskUsage == 0 {
            throw ValidationError("--max-disk-usage must be at least 1 (MiB)")
        }
        if let maxDiskUsagePercentage, !(maxDiskUsagePercentage >= 0.01 && maxDiskUsagePercentage <= 100) {
            throw ValidationError("--max-disk-usage-percentage must be between 0.01 and 100")
        }
        if upload.isRequested && ImageFile.isStandardOutputPath(filename) {
            throw ValidationError("--url and --sas-url upload a file; to send memory without one, use `avml stream`")
        }
    }

    public func run() throws {
        var memoryCapture = capture.memoryCapture(to: .file(filename), manifestFor: filename)
        memoryCapture.diskUsage = DiskUsageLimit(maxMiB: maxDiskUsage, maxPercentage: maxDiskUsagePercentage)
        let compressed = capture.compress
        memoryCapture.beforeReading = { plan in try upload.checkBeforeReading(plan, compressed: compressed) }
        _ = try runCapture("acquire", memoryCapture, quiet: capture.pipeline.quiet)
        try upload.uploadIfRequested(file: filename, quiet: capture.pipeline.quiet)
    }
}

/// Runs a capture and reports it: warnings as they come, then what a responder
/// must know about the image, then a summary.
///
/// - Parameters:
///   - label: the progress line's label.
///   - capture: the capture, with its manifest path.
///   - quiet: no progress and no summary.
/// - Returns: what was captured.
/// - Throws: `CommandFailure` when the capture failed (its manifest already records why).
public func runCapture(_ label: String, _ capture: MemoryCapture, quiet: Bool) throws(CommandFailure) -> CaptureReport {
    let progress = ProgressLine(label, quiet: quiet)
    let report: CaptureReport
    do {
        report = try capture.run(
            warn: { message in
                progress.finish()
                warn(message)
            }, progress: progress.callback)
    } catch {
        progress.finish()
        throw CommandFailure(error)
    }
    progress.finish()
    // Memory the source could not provide was warned of by `run`, which keeps it in the manifest too.
    for earlier in report.earlierFailures {
        warn("source failed, tried the next: \(earlier)")
    }
    reportUnreadable(report.pipeline.unreadable)
    reportVolatilityUnreadable(report.pipeline.volatilityUnreadable)
    if !quiet {
        FileHandleStandardError.write(summary(report) + "\navml: " + report.consistency.summary + "\n")
    }
    return report
}

/// One line a responder can paste into case notes. The rate is memory over the time spent
/// reading it (all-zero memory included, as it was read); the symbol table's time is apart.
func summary(_ report: CaptureReport) -> String {
    let statistics = report.pipeline.statistics
    let unreadable = report.pipeline.unreadable.reduce(UInt64(0)) { $0 + UInt64($1.count) }
    let read = statistics.memoryBytes + statistics.zeroBytesSkipped
    let rate = formatBytes(UInt64(Double(read) / max(report.readingSeconds, 0.001)))
    let table = report.symbols?.seconds.map { "; symbol table made in \(formatDecimal($0, places: 1)) s before" } ?? ""
    return
        "avml: captured \(formatBytes(statistics.memoryBytes)) from \(report.source) in "
        + "\(formatDecimal(report.readingSeconds, places: 1)) s (\(rate)/s over \(formatBytes(read)) read)\(table); "
        + "skipped \(statistics.zeroBlocksSkipped) all-zero blocks (\(formatBytes(statistics.zeroBytesSkipped))); "
        + "\(unreadable / 4096) unreadable pages; image \(statistics.bytesWritten) bytes, sha256 \(report.pipeline.sha256 ?? "-"); "
        + "manifest \(escapedForLog(report.manifestPath))"
        + (report.symbols?.path.map { "; symbol table \(escapedForLog($0)) (vol -s DIR)" } ?? "")
}

public func warn(_ message: String) {
    FileHandleStandardError.write("warning: \(message)\n")
}

/// Tells the responder which pages were zero-filled, so no gap in the image goes unnoticed.
func reportUnreadable(_ ranges: [Range<UInt64>]) {
    guard !ranges.isEmpty else { return }
    let bytes = ranges.reduce(UInt64(0)) { $0 + UInt64($1.count) }
    var text = "\(bytes / 4096) unreadable page(s) (\(bytes) bytes) were written as zeros:\n"
    for range in ranges.prefix(50) {
        text += "    \(hex(range.lowerBound))-\(hex(range.upperBound - 1))\n"
    }
    if ranges.count > 50 { text += "    ... and \(ranges.count - 50) more ranges\n" }
    warn(text)
}

/// Compressed records that no neighbour could absorb: Volatility 3 cannot open them.
func reportVolatilityUnreadable(_ ranges: [Range<UInt64>]) {
    guard let first = ranges.first else { return }
    warn(
        "\(ranges.count) compressed record(s) hold memory that does not compress and that no neighbour could absorb "
            + "(first: \(hex(first.lowerBound))-\(hex(first.upperBound - 1))); Volatility 3 cannot open such records. "
            + "They are listed in the manifest; for Volatility, convert the image to LiME (avml convert IMAGE IMAGE.lime)")
}
