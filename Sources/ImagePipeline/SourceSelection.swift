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

/// How a capture opens and probes memory sources.
struct SourceOpener {
    /// Where each device is; tests point these at files to exercise fallback.
    var devicePaths: [MemoryDevice: String]

    func path(of device: MemoryDevice) -> String {
        devicePaths[device] ?? device.rawValue
    }

    /// Opens `specification` and says which of `planned` it can provide.
    /// - Throws: `SourceError` when the source cannot be opened or maps none of the plan.
    func open(_ specification: SourceSpecification, planned: [Range<UInt64>]) throws(SourceError) -> (
        MemoryReader, [Range<UInt64>]
    ) {
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
            throw SourceError(.unmapped(address: planned.first?.lowerBound ?? 0), path: reader.path)
        }
        return (reader, ranges)
    }

    /// The first device that opens, in AVML's streaming order: kcore, crash, mem.
    /// - Throws: `AllSourcesFailed` with each device's error when none opens.
    func probe() throws(AllSourcesFailed) -> SourceSpecification {
        var failures: [(source: SourceSpecification, error: Error)] = []
        for device in [MemoryDevice.kcore, .crash, .mem] {
            let fd = Glibc.open(path(of: device), O_RDONLY | O_CLOEXEC)
            guard fd >= 0 else {
                failures.append((.device(device), SourceError(.open(Errno(rawValue: errno)), path: path(of: device))))
                continue
            }
            var info = stat()
            let usable = device != .kcore || (fstat(fd, &info) == 0 && info.st_size > 0x2000)
            close(fd)
            if usable { return .device(device) }
            failures.append(
                (.device(device), SourceError(.kcoreUnavailable("its size is 0x2000 bytes or less"), path: path(of: device))))
        }
        throw AllSourcesFailed(failures: failures)
    }
}
