import SystemPackage

/// A positional read that failed after `done` bytes had arrived.
public struct PositionalReadError: Error, Sendable {
    public var errno: Errno
    /// Bytes read before the failure, so callers can name the exact offset.
    public var done: Int
}

extension FileDescriptor {
    /// pread until `buffer` is full or the file ends, retrying short reads and EINTR:
    /// the one read loop that images, memory sources and uploads share.
    ///
    /// - Returns: bytes read; fewer than `buffer.count` only at the end of the file.
    /// - Throws: `PositionalReadError` with the errno and the bytes read before it.
    public func readFully(into buffer: UnsafeMutableRawBufferPointer, atOffset offset: UInt64) throws(PositionalReadError) -> Int
    {
        var filled = 0
        while filled < buffer.count {
            let count: Int
            do {
                count = try read(
                    fromAbsoluteOffset: Int64(bitPattern: offset &+ UInt64(filled)),
                    into: UnsafeMutableRawBufferPointer(rebasing: buffer[filled...]),
                    retryOnInterrupt: true)
            } catch {
                throw PositionalReadError(errno: error as? Errno ?? .ioError, done: filled)
            }
            if count == 0 { break }
            filled += count
        }
        return filled
    }
}

extension FileDescriptor {
    /// Reads from the current position to the end of the file, or until `limit` bytes:
    /// the one loop for /proc, sysfs and securityfs files, which report no size, so their
    /// end is found by reading. The buffer grows as the file does, never past `limit`.
    ///
    /// - Parameters:
    ///   - limit: the most bytes to read.
    ///   - sizeHint: the size the file reports, when it does (sysfs's BTF, a copy): the
    ///     buffer then has room for it at once, where growing by doubling would fill twice
    ///     as much memory of the examined host.
    /// - Returns: at most `limit` bytes; `limit` of them when the file may hold more.
    /// - Throws: `PositionalReadError` with the errno and the bytes read before it.
    public func readToEnd(limit: Int, sizeHint: Int = 0) throws(PositionalReadError) -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: min(limit, sizeHint > 0 ? sizeHint + 1 : 1 << 16))
        var filled = 0
        while filled < limit {
            if filled == bytes.count {
                bytes.append(contentsOf: repeatElement(0, count: min(bytes.count, limit - bytes.count)))
            }
            let count: Int
            do {
                count = try bytes.withUnsafeMutableBytes { raw in
                    try read(into: UnsafeMutableRawBufferPointer(rebasing: raw[filled...]), retryOnInterrupt: true)
                }
            } catch {
                throw PositionalReadError(errno: error as? Errno ?? .ioError, done: filled)
            }
            if count == 0 { break }
            filled += count
        }
        bytes.removeSubrange(filled...)
        return bytes
    }

    /// The first `limit` bytes of the file at `path` (all of it when shorter), for callers
    /// that name the path and the errno alike whether opening or reading failed.
    public static func readFile(_ path: String, limit: Int) throws(Errno) -> [UInt8] {
        let descriptor: FileDescriptor
        do {
            descriptor = try FileDescriptor.open(FilePath(path), .readOnly, options: .closeOnExec)
        } catch {
            throw error as? Errno ?? .ioError
        }
        defer { try? descriptor.close() }
        do {
            return try descriptor.readToEnd(limit: limit, sizeHint: Int((try? descriptor.stat().size) ?? 0))
        } catch {
            throw error.errno
        }
    }
}
