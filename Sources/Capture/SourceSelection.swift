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
        return text + "\n" + Self.otherWays
    }

    /// What can capture a host whose kernel lets no process read its memory.
    public static let otherWays =
        "What can still capture this host: a kernel module signed with a key this kernel trusts (LiME), or, for a "
        + "virtual machine, the hypervisor's snapshot of its memory, read with `avml acquire --source SNAPSHOT_FILE` "
        + "(a raw memory file)"
}

/// How a capture opens and probes memory sources.
struct SourceOpener {
    /// Where each device is; tests point these at files to exercise fallback.
    var devicePaths: [MemoryDevice: String]
    /// Read when a source refuses to open, to name the cause; tests give a fixed state.
    var hostAccess: @Sendable () -> HostAccess = { HostAccess.current() }

    func path(of device: MemoryDevice) -> String {
        devicePaths[device] ?? device.rawValue
    }

    /// Opens `specification` and says which of `planned` it can provide.
    /// - Throws: `SourceError` when the source cannot be opened or maps none of the plan.
    func open(_ specification: SourceSpecification, planned: [Range<UInt64>]) throws(SourceError) -> (
        MemoryReader, [Range<UInt64>]
    ) {
        do {
            return try openUnexplained(specification, planned: planned)
        } catch {
            throw explained(error, specification)
        }
    }

    /// `error` with the host's reason when it is a refusal to open.
    func explained(_ error: SourceError, _ specification: SourceSpecification) -> SourceError {
        guard case .open(let errno, nil) = error.reason,
            let cause = hostAccess().cause(of: errno, closedFrom: Self.closedFrom(specification))
        else { return error }
        return SourceError(.open(errno, cause: cause), path: error.path)
    }

    /// The lockdown mode from which the kernel closes a source to every process.
    static func closedFrom(_ specification: SourceSpecification) -> HostAccess.Lockdown? {
        switch specification {
        case .device(.kcore): .confidentiality
        case .device(.mem): .integrity
        case .device(.crash), .rawFile: nil
        }
    }

    private func openUnexplained(_ specification: SourceSpecification, planned: [Range<UInt64>]) throws(SourceError) -> (
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
            let descriptor: FileDescriptor
            do {
                descriptor = try FileDescriptor.open(FilePath(path(of: device)), .readOnly, options: .closeOnExec)
            } catch {
                let error = SourceError(.open(error as? Errno ?? .ioError), path: path(of: device))
                failures.append((.device(device), explained(error, .device(device))))
                continue
            }
            let usable = device != .kcore || (try? descriptor.stat().size).map { $0 > 0x2000 } == true
            try? descriptor.close()
            if usable { return .device(device) }
            failures.append(
                (.device(device), SourceError(.kcoreUnavailable("its size is 0x2000 bytes or less"), path: path(of: device))))
        }
        throw AllSourcesFailed(failures: failures)
    }
}
