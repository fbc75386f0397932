import ArgumentParser
import ImagePipeline
import MemorySources

/// What every command that reads memory takes: `acquire` and both streams.
public struct CaptureOptions: ParsableArguments {
    @Flag(help: "Write AVML's Snappy-compressed format instead of LiME.")
    public var compress = false

    @Option(help: "Read memory from /dev/crash, /proc/kcore, /dev/mem, or a raw memory file (offset = physical address).")
    var source: String?

    @Option(help: "Plan from this saved /proc/iomem instead of the live one.")
    var iomem: String?

    @Option(
        help:
            "Write the manifest (hashes, ranges, host, times) here (default: FILENAME.json, or avml-HOST-TIME.json here for streams)."
    )
    var manifest: String?

    @OptionGroup public var pipeline: PipelineOptions

    public init() {}

    /// Where the manifest of an image written to `image` goes ("-" for streams).
    public func manifestPath(forImage image: String) -> String {
        manifest ?? Manifest.defaultPath(forImage: image)
    }

    public func acquisition(destination: String, diskUsage: DiskUsageLimit = DiskUsageLimit()) -> Acquisition {
        Acquisition(
            destination: destination, compressed: compress, source: source.map(SourceSpecification.init(argument:)),
            iomemPath: iomem, diskUsage: diskUsage, threads: pipeline.threads)
    }
}
