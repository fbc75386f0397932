import FoundationEssentials
import Glibc
import ImageFormats
import KernelSymbols
import MemorySources
import RecordEngine
import SystemPackage

// How a capture runs (`avml acquire`, `avml stream`), from start to end:
//
//   1. refuse   a manifest that names the image itself: nothing may overwrite evidence
//   2. plan     System RAM from /proc/iomem, or a saved map cut down to the live
//               System RAM (never device memory), or a raw file's extent
//   3. check    disk-usage limits, the destination's own limits (`beforeReading`),
//               the manifest created: all before any memory is read
//   4. symbols  the running kernel's Volatility 3 symbol table written beside the
//               image, before memory is read (never failing the capture)
//   5. capture  each source in AVML's order (a file restarts between sources; a
//               stream probes one): blocks → records → sink, hashed as written
//               (`RecordPipeline`), then the sink finished, or aborted on failure
//   6. record   the manifest, for a failed capture too
//
// Conversions (`Conversion`) share the sink lifecycle (`withSink`) and errors.

/// Why a capture or conversion failed, by what failed: the responder must know
/// whether to try another source or another destination.
public indirect enum CaptureError: Error, CustomStringConvertible {
    /// Refused before any memory was read or any byte written: a bad plan, a
    /// limit, or a destination that would destroy evidence.
    case refused(any Error)
    /// The memory source failed (every source, for acquire), or the image being converted is bad.
    case source(any Error)
    /// The destination failed: the file, the pipe, the network.
    case destination(any Error)
    case interrupted(Interrupted)
    /// Not even one pipeline thread could be started.
    case resources(PipelineFailure)
    /// The capture failed, and its partial image could not be removed.
    case incompleteImageLeft(cause: CaptureError, removal: any Error)
    /// The image is complete, but its manifest could not be written.
    case manifestNotWritten(image: String, cause: any Error)

    init(_ failure: PipelineFailure) {
        switch failure {
        case .source(let error): self = .source(error)
        case .destination(let error): self = .destination(error)
        case .interrupted(let error): self = .interrupted(error)
        case .noThreads: self = .resources(failure)
        }
    }

    public var description: String {
        switch self {
        case .refused(let error), .source(let error), .destination(let error): return String(describing: error)
        case .interrupted(let error): return error.description
        case .resources(let failure): return failure.description
        case .incompleteImageLeft(let cause, let removal):
            return "\(cause)\n(and the incomplete image was left behind: \(removal))"
        case .manifestNotWritten(let image, let cause):
            return "the image \(escapedForLog(image)) is complete, but its manifest could not be written: \(cause)"
        }
    }
}

/// The one place an image sink's lifecycle runs: `body` writes, then the sink is
/// finished; if either fails, it is aborted (the partial file removed, nothing
/// committed, the connection reset).
///
/// - Throws: `body`'s error, `.destination` when finishing fails, or
///   `.incompleteImageLeft` when even the abort failed.
public func withSink<T>(_ sink: ImageSink, _ body: (ImageSink) throws(CaptureError) -> T) throws(CaptureError) -> T {
    do throws(CaptureError) {
        let result = try body(sink)
        do {
            try sink.finish()
        } catch {
            throw CaptureError.destination(error)
        }
        return result
    } catch {
        do {
            try sink.abort()
        } catch let removal {
            throw .incompleteImageLeft(cause: error, removal: removal)
        }
        throw error
    }
}

/// Makes the kernel's symbol table and writes it to a side file at `path` (mode 0600, never
/// through a symlink). A new file is written as zlib gives the table and removed if the table
/// fails: held whole, the table (1.7 MB for Debian's 6.1, 2.5 MB for 6.12) would be that much
/// more of the examined host's memory overwritten. Over an existing file (or standard output)
/// the table is held, as zlib's pieces, until it is whole, so that a table that fails leaves
/// that file (an earlier table, say) as it was. The file is written around the page cache
/// where the filesystem allows it, as images are: otherwise the whole table would sit in
/// the page cache too, and the capture's own 1 MiB buffer reuses the table's.
///
/// - Throws: `CaptureError`: `.source` with the `SymbolTableError` when the table cannot be
///   made, `.refused` or `.destination` when its file cannot be written.
public func makeSymbolTable(from sources: SymbolSources, at path: String) throws(CaptureError) -> SymbolTable {
    // Standard output cannot take back what it was given: it gets the table whole, or nothing.
    if ImageFile.isStandardOutputPath(path) { return try makeSymbolTableWhole(from: sources, at: path) }
    let new: ImageFile
    do {
        new = try ImageFile(path: path, sideFile: true, direct: true, newOnly: true)
    } catch let error where error.errno == .fileExists {
        return try makeSymbolTableWhole(from: sources, at: path)
    } catch {
        throw .refused(error)
    }
    var writeError: (any Error)?
    return try withSink(new) { (sink) throws(CaptureError) in
        do {
            return try KernelSymbols.make(from: sources, producerVersion: Manifest.toolVersion) { (bytes) in
                do {
                    try sink.write(bytes)
                } catch {
                    writeError = error
                    throw error
                }
            }
        } catch {
            if let writeError { throw .destination(writeError) }
            throw .source(error)
        }
    }
}

/// `makeSymbolTable` over an existing file or standard output: the table is made whole, then written.
private func makeSymbolTableWhole(from sources: SymbolSources, at path: String) throws(CaptureError) -> SymbolTable {
    final class Pieces {
        var list: [[UInt8]] = []
    }
    let pieces = Pieces()
    let table: SymbolTable
    do {
        table = try KernelSymbols.make(from: sources, producerVersion: Manifest.toolVersion) {
            pieces.list.append(Array($0))
        }
    } catch {
        throw .source(error)
    }
    let file: ImageFile
    do {
        file = try ImageFile(path: path, sideFile: true, direct: true)
    } catch {
        throw .refused(error)
    }
    try withSink(file) { (sink) throws(CaptureError) in
        do {
            for piece in pieces.list { try piece.withUnsafeBytes { try sink.write($0) } }
        } catch {
            throw .destination(error)
        }
    }
    return table
}

/// What a capture reads.
public struct CapturePlan: Sendable, Equatable {
    /// System RAM to capture, sorted.
    public var ranges: [Range<UInt64>]
    /// Ranges of a saved `--iomem` map that the running kernel does not call System RAM: never read.
    public var dropped: [Range<UInt64>] = []
    /// The running kernel's data and bss, every page of which the consistency check samples.
    public var kernelData: [Range<UInt64>] = []

    public var memoryBytes: UInt64 { ranges.reduce(0) { $0 + UInt64($1.count) } }

    /// The largest the image can be: every block with its record header, and for
    /// compressed records the framing of incompressible memory.
    public func maximumImageSize(compressed: Bool) -> UInt64 {
        let blockSize = UInt64(MemoryCapture.blockSize(compressed: compressed))
        return ranges.reduce(0) { total, range in
            let blocks = (UInt64(range.count) + blockSize - 1) / blockSize
            let perBlock = UInt64(RecordHeader.size) + (compressed ? 8 + UInt64(SnappyFraming.maxFramedLength(0)) : 0)
            let chunks = (UInt64(range.count) + UInt64(SnappyFraming.maxChunkData) - 1) / UInt64(SnappyFraming.maxChunkData)
            return total + UInt64(range.count) + blocks * perBlock + (compressed ? chunks * 8 : 0)
        }
    }
}

/// What a finished capture did.
public struct CaptureReport: Sendable {
    /// The image as the manifest names it: a path, "-", or a redacted destination.
    public var image: String
    public var manifestPath: String
    public var plan: CapturePlan
    public var source: SourceSpecification
    /// The part of the plan the source could provide.
    public var capturedRanges: [Range<UInt64>]
    /// The part of the plan the source could not provide: not in the image.
    public var notCaptured: [Range<UInt64>] { IOMem.subtract(plan.ranges, capturedRanges) }
    /// Sources that failed before the one that worked.
    public var earlierFailures: [String]
    public var pipeline: PipelineResult
    /// The symbol table written beside the image, or why there is none.
    public var symbols: SymbolsManifestEntry?
    /// How much of the sampled memory changed while it was read.
    public var consistency: ConsistencyReport
    public var startedAt: Date
    /// The whole capture, symbol table included.
    public var seconds: Double
    /// Reading memory into the image: from the first block to the last record.
    public var readingSeconds: Double
}

/// `avml acquire` and `avml stream`: captures this host's memory into a file or a stream.
public struct MemoryCapture {
    /// Where the image goes.
    public enum Destination {
        /// A path; `/dev/stdout` and `-` are standard output.
        case file(String)
        /// A network stream, named (redacted) for messages and the manifest, opened once the plan is known.
        case stream(name: String, open: (CapturePlan) throws -> ImageSink)
    }

    public var destination: Destination
    public var compressed: Bool
    /// `--source`; nil tries the devices in AVML's order.
    public var source: SourceSpecification?
    /// `--iomem`: a saved map; with a device it is cut down to the live System RAM.
    public var iomemPath: String?
    public var diskUsage = DiskUsageLimit()
    public var threads: Int
    public var memoryBudget = RecordPipeline.defaultMemoryBudget
    public var manifestPath: String
    /// Where the kernel's symbol table goes (`IMAGE.isf.json.gz` by default); nil for `--no-symbols`.
    public var symbolsPath: String?
    /// The kernel files the symbol table is made from; tests give copies.
    public var symbolSources = SymbolSources.live
    /// Called with the plan before any memory is read: the last chance to refuse
    /// (an upload that one PUT cannot take).
    public var beforeReading: ((CapturePlan) throws -> Void)?
    /// Where the kernel's interfaces are; tests point these at files.
    public var devicePaths: [MemoryDevice: String] = Dictionary(
        uniqueKeysWithValues: MemoryDevice.allCases.map { ($0, $0.rawValue) })
    public var liveIOMemPath = "/proc/iomem"
    /// Read when a source refuses to open, to name why; tests give a fixed state.
    public var hostAccess: @Sendable () -> HostAccess = { HostAccess.current() }

    public init(
        destination: Destination, compressed: Bool, source: SourceSpecification? = nil, threads: Int, manifestPath: String
    ) {
        self.destination = destination
        self.compressed = compressed
        self.source = source
        self.threads = threads
        self.manifestPath = manifestPath
    }

    /// Where the symbol table goes unless told otherwise: beside the image, or for
    /// standard output and streams beside the manifest.
    public static func defaultSymbolsPath(image: String, manifest: String) -> String {
        guard ImageFile.isStandardOutputPath(image) || image == "-" else { return image + ".isf.json.gz" }
        return (manifest.hasSuffix(".json") ? String(manifest.dropLast(5)) : manifest) + ".isf.json.gz"
    }

    /// The image's name in messages and the manifest.
    public var imageName: String {
        switch destination {
        case .file(let path): return ImageFile.isStandardOutputPath(path) ? "-" : path
        case .stream(let name, _): return name
        }
    }

    /// Runs the capture and writes its manifest, also when it fails.
    ///
    /// - Parameters:
    ///   - warn: told at once of what the responder must know (dropped ranges,
    ///     memory the source could not provide, no symbol table, fewer threads);
    ///     each warning is also kept in the manifest's `warnings`.
    ///   - progress: memory bytes handled so far, and the total to capture.
    /// - Returns: what was captured.
    /// - Throws: `CaptureError`; the manifest then records why.
    public func run(warn: (String) -> Void = { _ in }, progress: ((UInt64, UInt64) -> Void)? = nil) throws(CaptureError)
        -> CaptureReport
    {
        let startedAt = Date()
        let clock = monotonicSeconds()
        try refuseSideFilesNamingTheImage()
        var plan: CapturePlan?
        var manifestFile: ImageFile?
        var symbols: SymbolsManifestEntry?
        var warnings: [String] = []
        func warnAndRecord(_ message: String) {
            warnings.append(message)
            warn(message)
        }
        let outcome: Result<CaptureReport, CaptureError>
        do throws(CaptureError) {
            let planned = try makePlan()
            plan = planned
            if !planned.dropped.isEmpty {
                warnAndRecord(
                    "\(formatRanges(planned.dropped)) of --iomem \(escapedForLog(iomemPath ?? "")) "
                        + "\(planned.dropped.count == 1 ? "is" : "are") not System RAM on this host and will not be read")
            }
            try check(planned, warn: warnAndRecord)
            manifestFile = try asRefusal { try ImageFile(path: manifestPath, sideFile: true) }
            let symbolsStarted = monotonicSeconds()
            symbols = writeSymbolTable(warn: warnAndRecord)
            if symbolsPath != nil { symbols?.seconds = milliseconds(monotonicSeconds() - symbolsStarted) }
            var report = try capture(planned, warn: warnAndRecord, progress: progress)
            if !report.notCaptured.isEmpty {
                warnAndRecord(notCapturedWarning(report.notCaptured, source: report.source))
            }
            report.symbols = symbols
            report.startedAt = startedAt
            report.seconds = monotonicSeconds() - clock
            outcome = .success(report)
        } catch {
            outcome = .failure(error)
        }
        let manifest = Manifest(
            capture: self, plan: plan, symbols: symbols, warnings: warnings, outcome: outcome, startedAt: startedAt,
            finishedAt: Date())
        do {
            let file = try manifestFile ?? ImageFile(path: manifestPath, sideFile: true)
            try manifest.write(to: file)
        } catch {
            if case .success = outcome { throw .manifestNotWritten(image: imageName, cause: error) }
            warn("could not record the failure in the manifest \(escapedForLog(manifestPath)): \(error)")
        }
        return try outcome.get()
    }

    /// A manifest or symbol table that names the image (or each other) would overwrite it.
    private func refuseSideFilesNamingTheImage() throws(CaptureError) {
        if let symbolsPath, namesSameFile(symbolsPath, manifestPath) {
            throw .refused(EvidenceRefusal(role: "symbol table", path: symbolsPath, image: manifestPath, other: "manifest"))
        }
        guard case .file(let path) = destination else { return }
        for (role, side) in [("manifest", manifestPath), ("symbol table", symbolsPath)] {
            if let side, namesSameFile(path, side) { throw .refused(EvidenceRefusal(role: role, path: side, image: path)) }
        }
    }

    /// Makes the running kernel's symbol table and writes it beside the image.
    /// Never fails the capture: what went wrong is warned about and recorded.
    /// - Returns: the manifest's `symbols` entry.
    private func writeSymbolTable(warn: (String) -> Void) -> SymbolsManifestEntry {
        guard let symbolsPath else { return SymbolsManifestEntry(missing: "not asked for (--no-symbols)") }
        if case .rawFile = source {
            return SymbolsManifestEntry(missing: "the source is a raw memory file, not this host's running kernel")
        }
        let table: SymbolTable
        do {
            table = try makeSymbolTable(from: symbolSources, at: symbolsPath)
        } catch {
            if case .source(let cause as SymbolTableError) = error {
                warn("no symbol table for this kernel: \(cause)")
                return SymbolsManifestEntry(error: cause)
            }
            warn("the symbol table could not be written: \(error)")
            return SymbolsManifestEntry(missing: "the symbol table could not be written: \(error)")
        }
        for note in table.notes { warn(note) }
        return SymbolsManifestEntry(table: table, path: symbolsPath)
    }

    /// System RAM to read: from a saved map (cut down to the live System RAM when
    /// reading a device: a map from another boot or host must not steer reads
    /// into device memory, which can hang the host), a raw file's extent, or /proc/iomem.
    func makePlan() throws(CaptureError) -> CapturePlan {
        try asRefusal {
            var rawFile: String?
            if case .rawFile(let path) = source { rawFile = path }
            if let iomemPath {
                let saved = try IOMem.systemRAM(readTextFile(path: iomemPath), path: iomemPath)
                if rawFile != nil { return CapturePlan(ranges: saved) }
                let live = try readTextFile(path: liveIOMemPath)
                let ranges = IOMem.intersect(saved, with: try IOMem.systemRAM(live, path: liveIOMemPath))
                guard !ranges.isEmpty else { throw SourceError(.noSystemRAM, path: iomemPath) }
                return CapturePlan(
                    ranges: ranges, dropped: IOMem.subtract(saved, ranges),
                    kernelData: try IOMem.kernelData(live, path: liveIOMemPath))
            }
            if let rawFile {
                let size = try LinearMemoryReader(path: rawFile).fileSize
                guard size > 0 else { throw SourceError(.noSize, path: rawFile) }
                return CapturePlan(ranges: [0..<size])
            }
            let live = try readTextFile(path: liveIOMemPath)
            return CapturePlan(
                ranges: try IOMem.systemRAM(live, path: liveIOMemPath),
                kernelData: try IOMem.kernelData(live, path: liveIOMemPath))
        }
    }

    /// Everything that must hold before memory is read.
    private func check(_ plan: CapturePlan, warn: (String) -> Void) throws(CaptureError) {
        try asRefusal {
            if case .file(let path) = destination, !ImageFile.isStandardOutputPath(path) {
                try diskUsage.check(estimate: DiskUsageLimit.estimate(plan.ranges), destination: path)
            }
            try beforeReading?(plan)
        }
        let layout = pipeline.layout(readsInOrder: false)
        if layout.workers < threads {
            warn(
                "using \(layout.workers) of the \(threads) threads asked for: more would need over "
                    + "\(pipeline.memoryBudget >> 20) MiB of buffers (--memory-budget)")
        }
    }

    var pipeline: RecordPipeline {
        RecordPipeline(
            compressed: compressed, threads: threads, memoryBudget: memoryBudget, hashing: true,
            blockSize: Self.blockSize(compressed: compressed))
    }

    /// Where a capture's records are cut: AVML's 16 MiB for LiME, whose slots hold 1 MiB
    /// pieces whatever the block; 1 MiB for compressed records, whose slots hold whole blocks
    /// (see `RecordPipeline.compressedCaptureBlockSize`).
    public static func blockSize(compressed: Bool) -> Int {
        compressed ? RecordPipeline.compressedCaptureBlockSize : RecordPipeline.blockSize
    }

    /// Opens the destination and captures from the first source that works.
    private func capture(_ plan: CapturePlan, warn: (String) -> Void, progress: ((UInt64, UInt64) -> Void)?)
        throws(CaptureError) -> CaptureReport
    {
        let opener = SourceOpener(devicePaths: devicePaths, hostAccess: hostAccess)
        // A stream is probed before it is opened: nothing sent can be taken back,
        // so one source is tried, and a host with none never connects.
        var candidates = source.map { [$0] }
        let sink: ImageSink
        switch destination {
        case .file(let path):
            sink = try asDestination { try ImageFile(path: path, direct: true) }
        case .stream(_, let open):
            if candidates == nil { candidates = [try asSource { try opener.probe() }] }
            sink = try asDestination { try open(plan) }
        }
        if candidates == nil {
            if sink.canRestart {
                candidates = [.device(.crash), .device(.kcore), .device(.mem)]
            } else {
                // Standard output or a pipe: the same as a stream.
                do {
                    candidates = [try opener.probe()]
                } catch {
                    try? sink.abort()
                    throw .source(error)
                }
            }
        }
        let sources = candidates ?? []
        return try withSink(sink) { (sink) throws(CaptureError) in
            var failures: [(source: SourceSpecification, error: Error)] = []
            for candidate in sources {
                if !failures.isEmpty {
                    guard sink.restart() else { break }
                }
                do throws(CaptureError) {
                    var report = try captureOnce(from: candidate, plan: plan, opener: opener, to: sink, progress: progress)
                    report.earlierFailures = failures.map { "\($0.source): \($0.error)" }
                    let expected = pipeline.layout(readsInOrder: false).workers
                    if report.pipeline.workers < expected {
                        warn("only \(report.pipeline.workers) of \(expected) pipeline threads could be started")
                    }
                    return report
                } catch .source(let error) {
                    failures.append((candidate, error))  // another source may work
                }
            }
            if source != nil, failures.count == 1, let only = failures.first { throw .source(only.error) }
            throw .source(AllSourcesFailed(failures: failures))
        }
    }

    private func captureOnce(
        from specification: SourceSpecification, plan: CapturePlan, opener: SourceOpener, to sink: ImageSink,
        progress: ((UInt64, UInt64) -> Void)?
    ) throws(CaptureError) -> CaptureReport {
        let (reader, ranges) = try asSource { try opener.open(specification, planned: plan.ranges) }
        let total = ranges.reduce(0) { $0 + UInt64($1.count) }
        let watch = ConsistencyWatch(source: reader, ranges: ranges, kernelData: plan.kernelData)
        let result: PipelineResult
        let started = monotonicSeconds()
        do {
            let pipeline = pipeline
            let producer = MemoryBlockProducer(reader: watch, ranges: ranges, blockSize: pipeline.blockSize)
            result = try pipeline.run(producer, to: sink) { progress?($0, total) }
        } catch {
            throw CaptureError(error)
        }
        let readingSeconds = monotonicSeconds() - started
        return CaptureReport(
            image: imageName, manifestPath: manifestPath, plan: plan, source: specification, capturedRanges: ranges,
            earlierFailures: [], pipeline: result, symbols: nil, consistency: watch.reread(threads: threads), startedAt: Date(),
            seconds: 0, readingSeconds: readingSeconds)
    }
}

/// A side file (manifest, symbol table) would land on the image itself, or on another side file.
public struct EvidenceRefusal: Error, CustomStringConvertible {
    public var role: String
    public var path: String
    public var image: String
    /// What `image` is: the image, or the other side file.
    public var other = "image"

    public var description: String {
        "the \(role) \(escapedForLog(path)) is the \(other) \(escapedForLog(image)) itself (the same file by path, "
            + "spelling or link); refusing before anything is read or written, so that neither overwrites the other"
    }
}

/// Whether two paths name the same file: the same path once the directory is
/// resolved (`./x`, `dir/../x`, symlinked directories), or the same inode (a
/// hard link, a symlink); standard output by any of its names.
func namesSameFile(_ first: String, _ second: String) -> Bool {
    func canonical(_ path: String) -> String {
        if ImageFile.isStandardOutputPath(path) { return "/dev/stdout" }
        let slash = path.lastIndex(of: "/")
        let directory = slash.map { $0 == path.startIndex ? "/" : String(path[..<$0]) } ?? "."
        let name = slash.map { String(path[path.index(after: $0)...]) } ?? path
        guard let resolved = realpath(directory, nil) else { return path }
        defer { free(resolved) }
        let base = String(cString: resolved)
        return (base == "/" ? "" : base) + "/" + name
    }
    func identity(_ path: String) -> (UInt64, UInt64)? {
        let info = ImageFile.isStandardOutputPath(path) ? try? FileDescriptor.standardOutput.stat() : try? FilePath(path).stat()
        return info.map { (UInt64($0.deviceID.rawValue), UInt64($0.inode.rawValue)) }
    }
    if canonical(first) == canonical(second) { return true }
    guard let one = identity(first), let other = identity(second) else { return false }
    return one == other
}

/// Planned System RAM the source could not provide (kcore maps no segment there), every byte
/// of it accounted for: the total, and each range (the first 16, then how many more), because
/// the image has no record there and nothing in it shows the gap.
func notCapturedWarning(_ ranges: [Range<UInt64>], source: SourceSpecification) -> String {
    let bytes = ranges.reduce(UInt64(0)) { $0 + UInt64($1.count) }
    var names = ranges.prefix(16).map { "\(hex($0.lowerBound))-\(hex($0.upperBound - 1))" }.joined(separator: ", ")
    if ranges.count > 16 { names += " and \(ranges.count - 16) more ranges" }
    var text = "\(bytes) bytes of System RAM are not in the image: \(source) maps no memory at \(names)"
    if source == .device(.kcore) {
        text +=
            " (no PT_LOAD segment has these physical addresses; --source /dev/crash or /dev/mem, where the kernel "
            + "allows them, can read them)"
    }
    return text + ". They were not zero-filled; the manifest lists them in ranges.not_captured"
}

/// "0x1000-0x1fff" for one range, "N ranges (first 0x..-0x..)" for more.
func formatRanges(_ ranges: [Range<UInt64>]) -> String {
    guard let first = ranges.first else { return "no range" }
    let text = "\(hex(first.lowerBound))-\(hex(first.upperBound - 1))"
    return ranges.count == 1 ? "the range \(text)" : "\(ranges.count) ranges (the first \(text))"
}
