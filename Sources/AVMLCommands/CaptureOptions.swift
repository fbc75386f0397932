import ArgumentParser
import Capture
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

    @Flag(help: "Do not write the kernel's Volatility 3 symbol table (IMAGE.isf.json.gz, or beside the manifest).")
    var noSymbols = false

    @OptionGroup public var pipeline: PipelineOptions

    public init() {}

    /// The capture these options describe, to `destination`, with its manifest
    /// beside `image` (a path, or "-" for standard output and streams).
    public func memoryCapture(to destination: MemoryCapture.Destination, manifestFor image: String) -> MemoryCapture {
        let manifestPath = manifest ?? Manifest.defaultPath(forImage: image)
        var capture = MemoryCapture(
            destination: destination, compressed: compress, source: source.map(SourceSpecification.init(argument:)),
            threads: pipeline.threads, manifestPath: manifestPath)
        capture.iomemPath = iomem
        if !noSymbols {
            capture.symbolsPath = MemoryCapture.defaultSymbolsPath(image: image, manifest: manifestPath)
        }
        capture.memoryBudget = pipeline.memoryBudgetBytes
        return capture
    }
}
