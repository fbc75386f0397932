import Glibc
import ImageFormats
import MemorySources
import SystemPackage

/// The kernel interfaces to physical memory, in AVML's order of preference.
public enum MemoryDevice: String, Sendable, CaseIterable {
    case crash = "/dev/crash"
    case kcore = "/proc/kcore"
    case mem = "/dev/mem"
}

/// What to read: one of the devices, or a raw memory file (offset = physical address).
public enum SourceSpecification: Sendable, Equatable, CustomStringConvertible {
    case device(MemoryDevice)
    case rawFile(String)

    /// `--source` as AVML takes it: a device path (also through symlinks or `..`), else a raw file.
    public init(argument: String) {
        var resolved = argument
        if let real = realpath(argument, nil) {
            resolved = String(cString: real)
            free(real)
        }
        if let device = MemoryDevice(rawValue: resolved) ?? MemoryDevice(rawValue: argument) {
            self = .device(device)
        } else {
            self = .rawFile(argument)
        }
    }

    public var path: String {
        switch self {
        case .device(let device): return device.rawValue
        case .rawFile(let path): return path
        }
    }

    public var description: String { escapedForLog(path) }
}

/// Every source tried failed; each failure is kept, in order.
public struct AllSourcesFailed: Error, CustomStringConvertible {
    public var failures: [(source: SourceSpecification, error: Error)]

    public var description: String {
        var text = "unable to acquire memory: every source failed"
        for failure in failures {
            text += "\n    \(failure.source): \(failure.error)"
        }
        return text
    }
}

/// What an acquisition captured.
public struct AcquisitionResult: Sendable {
    public var source: SourceSpecification
    /// System RAM from /proc/iomem (or the raw file's extent).
    public var plannedRanges: [Range<UInt64>]
    /// The part of `plannedRanges` the source could provide.
    public var capturedRanges: [Range<UInt64>]
    /// Zero-filled because their pages could not be read.
    public var unreadableRanges: [Range<UInt64>]
    public var statistics: PipelineStatistics
    /// Sources that failed before the one that worked.
    public var earlierFailures: [String]
    /// Bytes of the image as written, and their SHA-256 (hex).
    public var imageSize: UInt64 = 0
    public var sha256 = ""
}

/// `avml acquire`: plan from /proc/iomem, then capture from the first source
/// that works, as AVML does.
///
/// To a file, sources are tried in order /dev/crash, /proc/kcore, /dev/mem, the
/// file emptied before each new attempt. To standard output nothing can be taken
/// back, so the first source that opens (kcore, crash, mem) is the only one tried.
public struct Acquisition: Sendable {
    public var destination: String
    public var compressed: Bool
    /// `--source`; nil tries the devices in order.
    public var source: SourceSpecification?
    /// `--iomem`; nil reads /proc/iomem, or for a raw file takes the whole file.
    public var iomemPath: String?
    public var diskUsage: DiskUsageLimit
    public var threads: Int
    /// Where each device is; tests point these at files to exercise fallback.
    public var devicePaths: [MemoryDevice: String] = Dictionary(
        uniqueKeysWithValues: MemoryDevice.allCases.map { ($0, $0.rawValue) })

    public init(
        destination: String, compressed: Bool, source: SourceSpecification? = nil, iomemPath: String? = nil,
        diskUsage: DiskUsageLimit = DiskUsageLimit(), threads: Int
    ) {
        self.destination = destination
        self.compressed = compressed
        self.source = source
        self.iomemPath = iomemPath
        self.diskUsage = diskUsage
        self.threads = threads
    }

    /// Captures memory into `destination`; on failure no image is left behind.
    ///
    /// - Parameter progress: memory bytes handled so far, and the total planned.
    /// - Returns: what was captured, from which source.
    /// - Throws: `SourceError` (iomem, disk usage), `OutputError`, or `AllSourcesFailed`.
    public func run(progress: (@Sendable (UInt64, UInt64) -> Void)? = nil) throws -> AcquisitionResult {
        let planned = try plannedRanges()
        if !ImageFile.isStandardOutputPath(destination) {
            try diskUsage.check(estimate: DiskUsageLimit.estimate(planned), destination: destination)
        }
        return try writeImage(to: destination) { output in
            let hashing = HashingSink(output)
            var restart: (() -> Bool)?
            if output.canRestart {
                restart = {
                    hashing.reset()
                    return output.restart()
                }
            }
            var result = try capture(planned: planned, to: hashing, restart: restart, progress: progress)
            result.imageSize = hashing.count
            result.sha256 = hashing.digest()
            return result
        }
    }

    /// Captures into an already-open sink (streams): sources are probed once, never restarted.
    public func run(to sink: ImageSink, progress: (@Sendable (UInt64, UInt64) -> Void)? = nil) throws -> AcquisitionResult {
        let hashing = HashingSink(sink)
        var result = try capture(planned: plannedRanges(), to: hashing, restart: nil, progress: progress)
        result.imageSize = hashing.count
        result.sha256 = hashing.digest()
        return result
    }

    /// The memory to capture: System RAM from `--iomem` or /proc/iomem, or a raw file's extent.
    /// Streams size their uploads from it.
    /// - Throws: `SourceError` when the map or the raw file cannot be read.
    public func plannedRanges() throws(SourceError) -> [Range<UInt64>] {
        if let iomemPath {
            return try IOMem.systemRAM(readTextFile(path: iomemPath), path: iomemPath)
        }
        if case .rawFile(let path) = source {
            let size = try LinearMemoryReader(path: path).fileSize
            guard size > 0 else { throw SourceError(.noSize, path: path) }
            return [0..<size]
        }
        return try IOMem.systemRAM(readTextFile(path: "/proc/iomem"))
    }

    /// Tries the sources in turn; `restart` empties the destination between
    /// attempts, and is nil where output cannot be taken back.
    private func capture(
        planned: [Range<UInt64>], to sink: ImageSink, restart: (() -> Bool)?,
        progress: (@Sendable (UInt64, UInt64) -> Void)?
    ) throws -> AcquisitionResult {
        let candidates: [SourceSpecification]
        if let source {
            candidates = [source]
        } else if restart != nil {
            candidates = [.device(.crash), .device(.kcore), .device(.mem)]
        } else if let probed = probe() {
            candidates = [probed]
        } else {
            throw AllSourcesFailed(failures: [MemoryDevice.kcore, .crash, .mem].map { (.device($0), openError($0)) })
        }
        var failures: [(source: SourceSpecification, error: Error)] = []
        for candidate in candidates {
            if !failures.isEmpty {
                guard let restart, restart() else { break }
            }
            do {
                var result = try captureOnce(from: candidate, planned: planned, to: sink, progress: progress)
                result.earlierFailures = failures.map { "\($0.source): \($0.error)" }
                return result
            } catch let error as OutputError {
                throw error  // the destination failed, not the source: another source cannot help
            } catch let error as Interrupted {
                throw error
            } catch {
                failures.append((candidate, error))
            }
        }
        if source != nil, failures.count == 1, let only = failures.first { throw only.error }
        throw AllSourcesFailed(failures: failures)
    }

    private func captureOnce(
        from specification: SourceSpecification, planned: [Range<UInt64>], to sink: ImageSink,
        progress: (@Sendable (UInt64, UInt64) -> Void)?
    ) throws -> AcquisitionResult {
        let reader: MemoryReader
        var ranges = planned
        switch specification {
        case .device(.kcore):
            let kcore = try KCoreReader(path: path(of: .kcore), systemRAM: planned)
            ranges = kcore.readableRanges(of: planned)
            reader = kcore
        case .device(.crash):
            reader = try CrashReader(path: path(of: .crash))
        case .device(.mem):
            reader = try LinearMemoryReader(path: path(of: .mem))
        case .rawFile(let path):
            reader = try LinearMemoryReader(path: path)
        }
        guard !ranges.isEmpty else {
            throw SourceError(.unmapped(address: planned.first?.lowerBound ?? 0), path: specification.path)
        }
        let total = ranges.reduce(0) { $0 + UInt64($1.count) }
        var producer = MemoryBlockProducer(reader: reader, ranges: ranges)
        var perBlock: (@Sendable (UInt64) -> Void)?
        if let progress { perBlock = { progress($0, total) } }
        let statistics = try RecordPipeline(compressed: compressed, threads: threads).run(&producer, to: sink, progress: perBlock)
        return AcquisitionResult(
            source: specification, plannedRanges: planned, capturedRanges: ranges, unreadableRanges: producer.unreadable,
            statistics: statistics, earlierFailures: [])
    }

    private func path(of device: MemoryDevice) -> String {
        devicePaths[device] ?? device.rawValue
    }

    /// The first device that opens, in AVML's streaming order: kcore, crash, mem.
    private func probe() -> SourceSpecification? {
        for device in [MemoryDevice.kcore, .crash, .mem] {
            let fd = open(path(of: device), O_RDONLY | O_CLOEXEC)
            guard fd >= 0 else { continue }
            var info = stat()
            let usable = device != .kcore || (fstat(fd, &info) == 0 && info.st_size > 0x2000)
            close(fd)
            if usable { return .device(device) }
        }
        return nil
    }

    private func openError(_ device: MemoryDevice) -> Error {
        let fd = open(path(of: device), O_RDONLY | O_CLOEXEC)
        if fd >= 0 {
            close(fd)
            return SourceError(.kcoreUnavailable("its size is 0x2000 bytes or less"), path: path(of: device))
        }
        return SourceError(.open(Errno(rawValue: errno)), path: path(of: device))
    }
}
