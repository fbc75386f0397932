import ArgumentParser
import FoundationEssentials
import ImageFormats
import ImagePipeline
import MemorySources

/// What `acquire` does with the finished image besides keeping it: the full avml
/// uploads it (`--url`, `--sas-url`, `--delete`); the acquire-only build has no
/// network stack and refuses those options (`NoUpload`).
public protocol AcquireUpload: ParsableArguments {
    /// Whether an upload was asked for (the image must then be a file, not a stream).
    var isRequested: Bool { get }

    /// Uploads `file` if asked, after a successful capture; exits 1 on failure.
    func uploadIfRequested(file: String, quiet: Bool)
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
        let acquisition = capture.acquisition(
            destination: filename, diskUsage: DiskUsageLimit(maxMiB: maxDiskUsage, maxPercentage: maxDiskUsagePercentage))
        _ = runCapture(
            "acquire", image: ImageFile.isStandardOutputPath(filename) ? "-" : filename, compressed: capture.compress,
            manifest: capture.manifestPath(forImage: filename), quiet: capture.pipeline.quiet
        ) { progress in
            try acquisition.run(progress: progress)
        }
        upload.uploadIfRequested(file: filename, quiet: capture.pipeline.quiet)
    }
}

/// Runs a capture, records it in a manifest and reports it: the one path of every
/// command that reads memory. On failure the manifest records why, and the
/// process exits 1.
///
/// - Parameters:
///   - label: the progress line's label.
///   - image: what the manifest names as the image: a path, "-", or a redacted destination.
///   - compressed: the image's format.
///   - manifest: where the manifest goes.
///   - quiet: no progress and no summary.
///   - capture: the capture itself, given the progress callback.
/// - Returns: what was captured.
public func runCapture(
    _ label: String, image: String, compressed: Bool, manifest: String, quiet: Bool,
    _ capture: ((@Sendable (UInt64, UInt64) -> Void)?) throws -> AcquisitionResult
) -> AcquisitionResult {
    let progress = ProgressLine(label, quiet: quiet)
    let started = Date()
    let clock = monotonicSeconds()
    var result: AcquisitionResult?
    var failure: Error?
    do {
        result = try capture(progress.callback)
    } catch {
        failure = error
    }
    progress.finish()
    let record = Manifest(
        image: image, compressed: compressed, startedAt: started, finishedAt: Date(), result: result, error: failure)
    guard let result else {
        do { try record.write(to: manifest) } catch { warn("could not record the failure in the manifest: \(error)") }
        fail(failure ?? ManifestNotWritten(image: image, cause: nil))
    }
    do {
        try record.write(to: manifest)
    } catch {
        fail(ManifestNotWritten(image: image, cause: error))
    }
    let planned = result.plannedRanges.reduce(UInt64(0)) { $0 + UInt64($1.count) }
    let captured = result.capturedRanges.reduce(UInt64(0)) { $0 + UInt64($1.count) }
    if captured < planned {
        warn(
            "\(planned - captured) bytes of System RAM (\(formatBytes(planned - captured))) were not available from "
                + "\(result.source) and are not in the image; the manifest lists the planned and captured ranges")
    }
    for earlier in result.earlierFailures {
        warn("source failed, tried the next: \(earlier)")
    }
    reportUnreadable(result.unreadableRanges)
    if !quiet {
        FileHandleStandardError.write(summary(result, seconds: monotonicSeconds() - clock, manifest: manifest) + "\n")
    }
    return result
}

/// The image is complete but its manifest is not: the responder must know.
struct ManifestNotWritten: Error, CustomStringConvertible, CausedError {
    var image: String
    var cause: Error?

    var description: String {
        "the image \(escapedForLog(image)) is complete, but its manifest could not be written"
    }
}

/// One line a responder can paste into case notes.
func summary(_ result: AcquisitionResult, seconds: Double, manifest: String) -> String {
    let statistics = result.statistics
    let unreadable = result.unreadableRanges.reduce(UInt64(0)) { $0 + UInt64($1.count) }
    let rate = formatBytes(UInt64(Double(statistics.memoryBytes + statistics.zeroBytesSkipped) / max(seconds, 0.001)))
    return
        "avml: captured \(formatBytes(statistics.memoryBytes)) from \(result.source) in \(formatDecimal(seconds, places: 1)) s "
        + "(\(rate)/s); skipped \(statistics.zeroBlocksSkipped) all-zero blocks (\(formatBytes(statistics.zeroBytesSkipped))); "
        + "\(unreadable / 4096) unreadable pages; image \(result.imageSize) bytes, sha256 \(result.sha256); "
        + "manifest \(escapedForLog(manifest))"
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
