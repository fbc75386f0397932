import ImageFormats
import SystemPackage

/// Why memory could not be read from a source, or planned from /proc/iomem.
public struct SourceError: Error, Sendable, CustomStringConvertible {
    public enum Reason: Sendable, Equatable {
        /// Opening the source failed; `cause` says why when the host explains a refusal.
        case open(Errno, cause: DenialCause? = nil)
        /// A read failed.
        case read(Errno, address: UInt64, count: Int)
        /// Reading a text file (iomem, a manifest) failed this many bytes in.
        case readText(Errno, offset: UInt64)
        /// The source ended before the requested address.
        case shortRead(address: UInt64, count: Int)
        /// /proc/kcore is too small or unreadable: kernel lockdown, or no CONFIG_PROC_KCORE.
        case kcoreUnavailable(String)
        /// /proc/kcore's ELF header or program headers are malformed.
        case badELF(String)
        /// The requested range is not covered by any kcore segment.
        case unmapped(address: UInt64)
        /// /proc/iomem lists no "System RAM".
        case noSystemRAM
        /// /proc/iomem shows every address as zero: the reader lacks CAP_SYS_ADMIN.
        case addressesHidden
        /// A line of /proc/iomem that cannot be parsed.
        case badIOMemLine(number: Int, text: String)
        /// statvfs of the destination's directory failed.
        case filesystemUnreadable(Errno)
        /// A raw memory source reports no size (a device or a pipe), so it has no extent to plan from.
        case noSize
        /// The planned capture would exceed the disk-usage limit.
        case diskUsage(estimate: UInt64, allowed: UInt64, limit: String)
    }

    public var reason: Reason
    /// The file or device involved.
    public var path: String

    public init(_ reason: Reason, path: String) {
        self.reason = reason
        self.path = path
    }

    /// True for errors that mean a page is unreadable, not that the source is unusable:
    /// the capture zero-fills such pages and goes on.
    public var isUnreadablePage: Bool {
        if case .read(let errno, _, _) = reason {
            return errno == .ioError || errno == .badAddress || errno == .noSuchAddressOrDevice
        }
        return false
    }

    public var description: String {
        let name = escapedForLog(path)
        switch reason {
        case .open(let errno, let cause):
            var text = "cannot open \(name): \(errno)"
            if let cause { text += " (\(cause))" }
            if errno == .noSuchFileOrDirectory { text += " (this kernel does not provide it)" }
            return text
        case .readText(let errno, let offset):
            return "cannot read \(name) at byte offset \(hex(offset)): \(errno)"
        case .read(let errno, let address, let count):
            var text = "cannot read \(count) bytes of \(name) at address \(hex(address)): \(errno)"
            if errno == .notPermitted || errno == .permissionDenied {
                text += " (the kernel restricts this source, e.g. CONFIG_STRICT_DEVMEM for /dev/mem)"
            }
            return text
        case .shortRead(let address, let count):
            return "\(name) ended before \(count) bytes at address \(hex(address)) could be read"
        case .kcoreUnavailable(let detail):
            return "\(name) is locked down or unavailable: \(detail)"
        case .badELF(let detail):
            return "\(name) is not a usable ELF core: \(detail)"
        case .unmapped(let address):
            return "\(name) maps no memory at address \(hex(address))"
        case .noSystemRAM:
            return "\(name) lists no \"System RAM\" ranges"
        case .addressesHidden:
            return "\(name) shows every address as 0: reading real addresses needs root (CAP_SYS_ADMIN)"
        case .badIOMemLine(let number, let text):
            return "\(name) line \(number) is not \"START-END : NAME\": \(escapedForLog(text))"
        case .filesystemUnreadable(let errno):
            return "cannot read the size and free space of the filesystem holding \(name) (statvfs): \(errno)"
        case .noSize:
            return "\(name) reports no size (a device or a pipe?): give --iomem with the ranges to read from it"
        case .diskUsage(let estimate, let allowed, let limit):
            return
                "the image would need about \(estimate >> 20) MiB (\(estimate) bytes), more than the \(allowed >> 20) MiB (\(allowed) bytes) allowed by \(limit)"
        }
    }
}
