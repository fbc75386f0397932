import Glibc
import ImageFormats
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

/// A file or device read with `pread`, one call per request.
final class PositionalFile: Sendable {
    let path: String
    let descriptor: FileDescriptor

    init(path: String) throws(SourceError) {
        self.path = path
        do {
            descriptor = try FileDescriptor.open(FilePath(path), .readOnly, options: [.closeOnExec])
        } catch {
            throw SourceError(.open(error as? Errno ?? .ioError), path: path)
        }
    }

    deinit {
        try? descriptor.close()
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
        do {
            return try descriptor.readFully(into: buffer, atOffset: offset)
        } catch {
            throw SourceError(
                .read(error.errno, address: address + UInt64(error.done), count: buffer.count - error.done), path: path)
        }
    }

    /// The size of a regular file (0 for devices and /proc files, which report none).
    func size() -> UInt64 {
        var info = stat()
        guard fstat(descriptor.rawValue, &info) == 0 else { return 0 }
        return UInt64(max(0, info.st_size))
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
