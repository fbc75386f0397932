import Glibc
import SystemPackage

/// AVML's disk-usage guard: refuse a capture that would fill the disk before
/// reading any memory, since a full disk on a live host can take services down.
public struct DiskUsageLimit: Sendable, Equatable {
    /// `--max-disk-usage`, in MiB.
    public var maxMiB: UInt64?
    /// `--max-disk-usage-percentage`, 0.01 to 100, of the filesystem's size.
    public var maxPercentage: Double?

    /// AVML's allowance per range for headers and Snappy's worst-case growth.
    public static let overheadPerRange: UInt64 = 100 * 1024

    public init(maxMiB: UInt64? = nil, maxPercentage: Double? = nil) {
        self.maxMiB = maxMiB
        self.maxPercentage = maxPercentage
    }

    /// The image's worst-case size: every range plus 100 KiB each.
    public static func estimate(_ ranges: [Range<UInt64>]) -> UInt64 {
        ranges.reduce(0) { total, range in
            let sum = total.addingReportingOverflow(UInt64(range.count)).partialValue
            return sum.addingReportingOverflow(overheadPerRange).overflow ? UInt64.max : sum + overheadPerRange
        }
    }

    /// Checks `estimate` against the limits for a file to be created at `destination`.
    ///
    /// - Parameters:
    ///   - estimate: the image's worst-case size.
    ///   - destination: the image's path; its directory's filesystem is the one checked.
    ///   - filesystem: total and used bytes; by default from statvfs of the destination's directory.
    /// - Throws: `SourceError.diskUsage` with the estimate and the allowance.
    public func check(
        estimate: UInt64, destination: String,
        filesystem: (String) throws(SourceError) -> (total: UInt64, used: UInt64) = DiskUsageLimit.usage(of:)
    ) throws(SourceError) {
        if let maxMiB {
            let allowed = maxMiB.multipliedReportingOverflow(by: 1 << 20).overflow ? UInt64.max : maxMiB << 20
            if estimate > allowed {
                throw SourceError(
                    .diskUsage(estimate: estimate, allowed: allowed, limit: "--max-disk-usage \(maxMiB)"), path: destination)
            }
        }
        if let maxPercentage {
            let directory = Self.directory(of: destination)
            let usage = try filesystem(directory)
            let maxAllowed = UInt64((Double(usage.total) * (maxPercentage / 100)).rounded(.down))
            let (projected, overflow) = usage.used.addingReportingOverflow(estimate)
            if overflow || projected > maxAllowed {
                let allowed = maxAllowed > usage.used ? maxAllowed - usage.used : 0
                throw SourceError(
                    .diskUsage(estimate: estimate, allowed: allowed, limit: "--max-disk-usage-percentage \(maxPercentage)"),
                    path: destination)
            }
        }
    }

    /// The directory a file at `path` would be created in.
    public static func directory(of path: String) -> String {
        guard let slash = path.lastIndex(of: "/") else { return "." }
        return slash == path.startIndex ? "/" : String(path[..<slash])
    }

    /// Total and used bytes of the filesystem holding `directory` (statvfs).
    public static func usage(of directory: String) throws(SourceError) -> (total: UInt64, used: UInt64) {
        var info = statvfs()
        guard statvfs(directory, &info) == 0 else {
            throw SourceError(.filesystemUnreadable(Errno(rawValue: errno)), path: directory)
        }
        let total = UInt64(info.f_blocks) * UInt64(info.f_frsize)
        let free = UInt64(info.f_bavail) * UInt64(info.f_frsize)
        return (total, total > free ? total - free : 0)
    }
}
