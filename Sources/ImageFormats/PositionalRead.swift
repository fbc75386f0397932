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
