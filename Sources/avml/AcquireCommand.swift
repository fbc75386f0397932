import ArgumentParser
import ImageFormats
import ImagePipeline
import MemorySources

extension AVML {
    struct Acquire: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Capture this host's physical memory (System RAM from /proc/iomem) to a LiME or compressed image.")

        @Flag(help: "Write AVML's Snappy-compressed format instead of LiME.")
        var compress = false

        @Option(help: "Read memory from /dev/crash, /proc/kcore, /dev/mem, or a raw memory file (offset = physical address).")
        var source: String?

        @Option(help: "Plan from this saved /proc/iomem instead of the live one.")
        var iomem: String?

        @Option(help: "Refuse to start if the image could exceed this many MiB.")
        var maxDiskUsage: UInt64?

        @Option(help: "Refuse to start if the filesystem would pass this percentage full (0.01-100).")
        var maxDiskUsagePercentage: Double?

        @OptionGroup var pipeline: PipelineOptions

        @OptionGroup var upload: UploadOptions

        @Argument(help: "Image to write (created mode 0600; a symlink here is refused; /dev/stdout streams).")
        var filename: String

        func validate() throws {
            if let maxDiskUsage, maxDiskUsage == 0 {
                throw ValidationError("--max-disk-usage must be at least 1 (MiB)")
            }
            if let maxDiskUsagePercentage, !(maxDiskUsagePercentage >= 0.01 && maxDiskUsagePercentage <= 100) {
                throw ValidationError("--max-disk-usage-percentage must be between 0.01 and 100")
            }
            if upload.destination != nil && ImageFile.isStandardOutputPath(filename) {
                throw ValidationError("--url and --sas-url upload a file; to send memory without one, use `avml stream`")
            }
        }

        func run() throws {
            let acquisition = Acquisition(
                destination: filename, compressed: compress, source: source.map(SourceSpecification.init(argument:)),
                iomemPath: iomem, diskUsage: DiskUsageLimit(maxMiB: maxDiskUsage, maxPercentage: maxDiskUsagePercentage),
                threads: pipeline.threads)
            let result: AcquisitionResult
            do {
                result = try acquisition.run()
            } catch {
                fail(error)
            }
            for failure in result.earlierFailures {
                FileHandleStandardError.write("warning: source failed, tried the next: \(failure)\n")
            }
            reportUnreadable(result.unreadableRanges)
            upload.uploadIfRequested(file: filename)
        }
    }
}

/// Tells the responder which pages were zero-filled, so no gap in the image goes unnoticed.
func reportUnreadable(_ ranges: [Range<UInt64>]) {
    guard !ranges.isEmpty else { return }
    let bytes = ranges.reduce(UInt64(0)) { $0 + UInt64($1.count) }
    var text = "warning: \(bytes / 4096) unreadable page(s) (\(bytes) bytes) were written as zeros:\n"
    for range in ranges.prefix(50) {
        text += "    \(hex(range.lowerBound))-\(hex(range.upperBound - 1))\n"
    }
    if ranges.count > 50 { text += "    ... and \(ranges.count - 50) more ranges\n" }
    FileHandleStandardError.write(text)
}
