import Glibc
import ImageFormats
import Synchronization
import SystemPackage

/// Reads physical memory by address.
///
/// Implementations translate an address to where the source keeps it (a file
/// offset, a kcore segment) and honour the source's read rules (page-sized
/// reads for /dev/crash). Readers are immutable and read with `pread`, so the
/// pipeline's workers read different blocks from one reader at the same time.
public protocol MemoryReader: AnyObject, Sendable {
    /// The path read from, for messages and the manifest.
    var path: String { get }

    /// Fills all of `buffer` with the memory starting at `address`.
    /// - Throws: `SourceError`; `isUnreadablePage` tells a bad page from a bad source.
    func read(into buffer: UnsafeMutableRawBufferPointer, at address: UInt64) throws(SourceError)
}

/// A file or device read with `pread`, one call per request, from any number of threads.
///
/// Each concurrent read takes a descriptor of its own: /proc/kcore (before
/// Linux 6.5) copies memory through a one-page bounce buffer that belongs to the
/// open file, so two threads reading through one descriptor get each other's
/// pages. Extra descriptors reopen the same open file through /proc/self/fd
/// (never the path again, which could now name something else).
final class PositionalFile: Sendable {
    let path: String
    private let primary: FileDescriptor
    /// Descriptors not in use right now, and every one opened (closed at the end).
    private let pool: Mutex<(idle: [FileDescriptor], all: [FileDescriptor])>

    init(path: String) throws(SourceError) {
        self.path = path
        do {
            primary = try FileDescriptor.open(FilePath(path), .readOnly, options: [.closeOnExec])
        } catch {
            throw SourceError(.open(error as? Errno ?? .ioError), path: path)
        }
        pool = Mutex(([primary], [primary]))
    }

    deinit {
        for descriptor in pool.withLock({ $0.all }) { try? descriptor.close() }
    }

    /// Runs `body` with a descriptor no other thread uses meanwhile.
    private func withDescriptor<T>(_ body: (FileDescriptor) throws(SourceError) -> T) throws(SourceError) -> T {
        var descriptor = pool.withLock { $0.idle.popLast() }
        if descriptor == nil,
            let reopened = try? FileDescriptor.open(
                FilePath("/proc/self/fd/\(primary.rawValue)"), .readOnly, options: [.closeOnExec])
        {
            pool.withLock { $0.all.append(reopened) }
            descriptor = reopened
        }
        // No descriptor left to open (EMFILE): wait for one to come back.
        while descriptor == nil {
            usleep(100)
            descriptor = pool.withLock { $0.idle.popLast() }
        }
        guard let descriptor else { preconditionFailure("the loop above ends with a descriptor") }
        defer { pool.withLock { $0.idle.append(descriptor) } }
        return try body(descriptor)
    }

    /// Reads all of `buffer` at file `offset`; `address` names the memory in errors.
    func read(into buffer: UnsafeMutableRawBufferPointer, offset: UInt64, address: UInt64) throws(SourceError) {
        let got = try readAvailable(into: buffer, offset: offset, address: address)
        guard got == buffer.count else {
            throw SourceError(.shortRead(address: address + UInt64(got), count: buffer.count - got), path: path)
        }
    }

    /// Reads up to `count` bytes at `offset`, fewer at the end of the file.
    func readBytes(_ count: Int, offset: UInt64) throws(SourceError) -> [UInt8] {
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: count, alignment: 8)
        defer { buffer.deallocate() }
        let got = try readAvailable(into: buffer, offset: offset, address: offset)
        return Array(UnsafeRawBufferPointer(rebasing: buffer[..<got]))
    }

    /// Reads until `buffer` is full or the file ends; `address` names the memory in errors.
    private func readAvailable(into buffer: UnsafeMutableRawBufferPointer, offset: UInt64, address: UInt64) throws(SourceError)
        -> Int
    {
        try withDescriptor { (descriptor) throws(SourceError) in
            do throws(PositionalReadError) {
                return try descriptor.readFully(into: buffer, atOffset: offset)
            } catch {
                throw SourceError(
                    .read(error.errno, address: address + UInt64(error.done), count: buffer.count - error.done), path: path)
            }
        }
    }

    /// The size of a regular file (0 for devices and /proc files, which report none).
    func size() -> UInt64 {
        UInt64(max(0, (try? primary.stat().size) ?? 0))
    }
}

/// Memory where file offset equals physical address: /dev/mem, or a raw
/// memory file such as a hypervisor snapshot.
public final class LinearMemoryReader: MemoryReader, Sendable {
    private let file: PositionalFile
    public var path: String { file.path }

    public init(path: String) throws(SourceError) {
        file = try PositionalFile(path: path)
    }

    /// Size of the file, for raw memory files whose ranges are the whole file.
    public var fileSize: UInt64 { file.size() }

    public func read(into buffer: UnsafeMutableRawBufferPointer, at address: UInt64) throws(SourceError) {
        try file.read(into: buffer, offset: address, address: address)
    }
}

/// /dev/crash, the crash utility's driver: reads must stay within one page
/// (the driver answers EINVAL otherwise), so every read is split at page boundaries.
public final class CrashReader: MemoryReader, Sendable {
    private let file: PositionalFile
    public var path: String { file.path }

    public init(path: String = "/dev/crash") throws(SourceError) {
        file = try PositionalFile(path: path)
    }

    public func read(into buffer: UnsafeMutableRawBufferPointer, at address: UInt64) throws(SourceError) {
        for span in PageSpans(address: address, count: buffer.count) {
            let current = address + UInt64(span.lowerBound)
            try file.read(into: UnsafeMutableRawBufferPointer(rebasing: buffer[span]), offset: current, address: current)
        }
    }
}

/// Splits `count` bytes at `address` into pieces that never cross a 4 KiB page
/// boundary, as offsets into the request; the first and last may be partial pages.
public struct PageSpans: Sequence, IteratorProtocol {
    static let pageSize: UInt64 = 4096
    private let address: UInt64
    private let count: Int
    private var done = 0

    public init(address: UInt64, count: Int) {
        self.address = address
        self.count = count
    }

    public mutating func next() -> Range<Int>? {
        guard done < count else { return nil }
        let current = address + UInt64(done)
        let length = Int(Swift.min(UInt64(count - done), Self.pageSize - current % Self.pageSize))
        defer { done += length }
        return done..<done + length
    }
}
