import FoundationEssentials
import Glibc
import ImageFormats
import KernelSymbols
import MemorySources
import RecordEngine

/// The chain-of-custody record written beside every image: what was taken,
/// from where, when, how, and the SHA-256 of the file exactly as written.
public struct Manifest: Codable, Sendable, Equatable {
    public struct Tool: Codable, Sendable, Equatable {
        public var name: String
        public var version: String
    }

    public struct Host: Codable, Sendable, Equatable {
        public var hostname: String
        public var kernelRelease: String
        public var machine: String
        public var bootID: String?

        enum CodingKeys: String, CodingKey {
            case hostname
            case kernelRelease = "kernel_release"
            case machine
            case bootID = "boot_id"
        }
    }

    /// A physical address range; hex strings, because JSON numbers lose precision past 2^53.
    public struct AddressRange: Codable, Sendable, Equatable {
        public var start: String
        /// Inclusive, as in /proc/iomem and LiME headers.
        public var end: String

        public init(_ range: Range<UInt64>) {
            start = hex(range.lowerBound)
            end = hex(range.upperBound - 1)
        }
    }

    public struct Ranges: Codable, Sendable, Equatable {
        public var planned: [AddressRange]
        public var captured: [AddressRange]
        /// Planned System RAM the source could not provide (no /proc/kcore segment maps it):
        /// not in the image, and not zero-filled either; nil when the capture failed or took it all.
        public var notCaptured: [AddressRange]?
        /// Ranges of a saved `--iomem` map that were not System RAM on the host, so not read.
        public var dropped: [AddressRange]?

        enum CodingKeys: String, CodingKey {
            case planned, captured, dropped
            case notCaptured = "not_captured"
        }
    }

    public var tool: Tool
    public var host: Host
    /// Where the image went: a path, or "-" for standard output and streams.
    public var image: String
    /// The memory source that was read, nil when none worked.
    public var source: String?
    /// Errors of sources tried before `source`, in order.
    public var sourceFailures: [String]
    public var format: String
    public var ranges: Ranges
    public var zeroBlocksSkipped: Int
    /// The blocks records were cut in from each range's start, and all-zero ones skipped:
    /// 16 MiB as AVML cuts them, 1 MiB for compressed captures. Absent in older manifests (16 MiB).
    public var recordBlockBytes: Int?
    /// Pages that could not be read and were written as zeros.
    public var unreadable: [AddressRange]
    /// Compressed records Volatility 3 cannot open (memory that does not compress,
    /// with no neighbour to absorb it); `avml convert` can re-cut them.
    public var volatilityUnreadable: [AddressRange]?
    /// Seconds each stage of the pipeline worked, summed over its threads.
    public var timings: StageTimings?
    /// Seconds spent reading memory into the image (the symbol table's are in `symbols`).
    public var readingSeconds: Double?
    /// The most memory avml held at once (VmHWM), up to when the manifest was made: what
    /// of the examined host's memory its own pages took; nil where /proc does not say.
    public var peakResidentBytes: UInt64?
    /// The kernel's symbol table written beside the image, or why there is none.
    public var symbols: SymbolsManifestEntry?
    /// How much of the sampled memory changed while it was read (see `ConsistencyReport`);
    /// nil when the capture failed.
    public var consistency: ConsistencyReport?
    /// Every warning the capture gave on standard error, in order, so that what the responder
    /// was told (memory not captured, no symbol table and why) stays with the image; nil when none.
    public var warnings: [String]?
    /// Bytes of the image as written; nil when the capture failed.
    public var size: UInt64?
    public var sha256: String?
    public var startedAt: String
    public var finishedAt: String
    public var exitStatus: Int32
    /// Why the capture failed, when it did.
    public var error: String?

    enum CodingKeys: String, CodingKey {
        case tool, host, image, source, format, ranges, unreadable, size, sha256, error
        case timings, symbols, warnings, consistency
        case sourceFailures = "source_failures"
        case peakResidentBytes = "peak_resident_bytes"
        case readingSeconds = "reading_seconds"
        case volatilityUnreadable = "volatility_unreadable"
        case zeroBlocksSkipped = "zero_blocks_skipped"
        case recordBlockBytes = "record_block_bytes"
        case startedAt = "started_at"
        case finishedAt = "finished_at"
        case exitStatus = "exit_status"
    }

    public static let toolVersion = "0.1.0"

    /// A manifest for a finished capture, or for one that failed.
    init(
        capture: MemoryCapture, plan: CapturePlan?, symbols: SymbolsManifestEntry?, warnings: [String],
        outcome: Result<CaptureReport, CaptureError>, startedAt: Date, finishedAt: Date
    ) {
        self.symbols = symbols
        self.warnings = warnings.isEmpty ? nil : warnings
        tool = Tool(name: "avml", version: Self.toolVersion)
        host = Self.currentHost()
        image = capture.imageName
        format = capture.compressed ? ImageFormat.limeCompressed.rawValue : ImageFormat.lime.rawValue
        let report = try? outcome.get()
        source = report?.source.path
        sourceFailures = report?.earlierFailures ?? []
        if case .failure(.source(let error as AllSourcesFailed)) = outcome {
            sourceFailures = error.failures.map { "\($0.source): \($0.error)" }
        }
        let dropped = plan?.dropped ?? []
        let notCaptured = report?.notCaptured ?? []
        ranges = Ranges(
            planned: (plan?.ranges ?? []).map(AddressRange.init), captured: (report?.capturedRanges ?? []).map(AddressRange.init),
            notCaptured: notCaptured.isEmpty ? nil : notCaptured.map(AddressRange.init),
            dropped: dropped.isEmpty ? nil : dropped.map(AddressRange.init))
        zeroBlocksSkipped = report?.pipeline.statistics.zeroBlocksSkipped ?? 0
        recordBlockBytes = MemoryCapture.blockSize(compressed: capture.compressed)
        unreadable = (report?.pipeline.unreadable ?? []).map(AddressRange.init)
        let unopenable = report?.pipeline.volatilityUnreadable ?? []
        volatilityUnreadable = unopenable.isEmpty ? nil : unopenable.map(AddressRange.init)
        timings = report?.pipeline.timings
        readingSeconds = report.map { milliseconds($0.readingSeconds) }
        peakResidentBytes = Self.peakResidentBytes()
        consistency = report?.consistency
        size = report?.pipeline.statistics.bytesWritten
        sha256 = report?.pipeline.sha256
        self.startedAt = Self.timestamp(startedAt)
        self.finishedAt = Self.timestamp(finishedAt)
        if case .failure(let error) = outcome {
            exitStatus = 1
            self.error = String(describing: error)
        } else {
            exitStatus = 0
        }
    }

    /// VmHWM from /proc/self/status, in bytes.
    static func peakResidentBytes(status: String = "/proc/self/status") -> UInt64? {
        guard let text = try? readTextFile(path: status) else { return nil }
        for line in text.split(separator: "\n") where line.hasPrefix("VmHWM:") {
            let fields = line.dropFirst("VmHWM:".count).split(whereSeparator: { $0 == " " || $0 == "\t" })
            guard fields.count == 2, fields[1] == "kB", let kilobytes = UInt64(fields[0]) else { return nil }
            return kilobytes * 1024
        }
        return nil
    }

    /// ISO 8601 in UTC, to the second.
    static func timestamp(_ date: Date) -> String {
        date.formatted(.iso8601)
    }

    public static func currentHost() -> Host {
        var names = utsname()
        uname(&names)
        func field<T>(_ value: T) -> String {
            withUnsafeBytes(of: value) { raw in
                String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
            }
        }
        let bootID = (try? readTextFile(path: "/proc/sys/kernel/random/boot_id"))?.filter { !$0.isWhitespace }
        return Host(
            hostname: field(names.nodename), kernelRelease: field(names.release), machine: field(names.machine), bootID: bootID)
    }

    /// The JSON text, keys sorted, for people and tools alike.
    public func encoded() throws -> [UInt8] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        return Array(try encoder.encode(self)) + [0x0a]
    }

    /// Writes the manifest into a file opened with the same care as an image (O_NOFOLLOW, mode 0600).
    func write(to file: ImageFile) throws(CaptureError) {
        let bytes: [UInt8]
        do {
            bytes = try encoded()
        } catch {
            try? file.abort()
            throw .destination(error)
        }
        try writeAll(bytes, to: file)
    }

    /// Reads a manifest written by `write(to:)`.
    public static func read(from path: String) throws -> Manifest {
        try JSONDecoder().decode(Manifest.self, from: Data(readTextFile(path: path).utf8))
    }

    /// Where the manifest of an image goes unless `--manifest` says otherwise:
    /// beside the image, or for standard output in the current directory.
    public static func defaultPath(forImage image: String, host: String = currentHost().hostname, at date: Date = Date())
        -> String
    {
        if ImageFile.isStandardOutputPath(image) {
            let stamp = timestamp(date).filter { $0 != ":" }
            return "avml-\(host.isEmpty ? "host" : host)-\(stamp).json"
        }
        return image + ".json"
    }
}
