import Glibc
import ImageFormats
import NIOCore
import SystemPackage

/// A finished image opened for upload: a regular file, read with `pread` in chunks,
/// so no upload ever holds the whole file in memory.
final class UploadSource: Sendable {
    let path: String
    let size: UInt64
    private let descriptor: SystemPackage.FileDescriptor

    /// Opens `path` read-only and checks it is a regular file.
    /// - Throws: `UploadError.localFile` (open, fstat) or `.notRegularFile`.
    init(path: String) throws(UploadError) {
        self.path = path
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw .localFile(operation: "open", path: path, errno: Errno(rawValue: errno), offset: nil) }
        var info = stat()
        guard fstat(fd, &info) == 0 else {
            let failure = Errno(rawValue: errno)
            close(fd)
            throw .localFile(operation: "stat", path: path, errno: failure, offset: nil)
        }
        guard (info.st_mode & S_IFMT) == S_IFREG else {
            close(fd)
            throw .notRegularFile(path)
        }
        descriptor = SystemPackage.FileDescriptor(rawValue: fd)
        size = UInt64(info.st_size)
    }

    deinit {
        try? descriptor.close()
    }

    /// Reads `count` bytes at `offset` into a new buffer.
    /// - Throws: `UploadError.localFile` on a read error, `.fileChanged` if the file got shorter.
    func read(offset: UInt64, count: Int) throws(UploadError) -> ByteBuffer {
        var buffer = ByteBufferAllocator().buffer(capacity: count)
        let filled: Int
        do {
            filled = try buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: count) { raw in
                try descriptor.readFully(into: UnsafeMutableRawBufferPointer(rebasing: raw[..<count]), atOffset: offset)
            }
        } catch let error as PositionalReadError {
            throw .localFile(operation: "read", path: path, errno: error.errno, offset: offset + UInt64(error.done))
        } catch {
            throw .localFile(operation: "read", path: path, errno: .ioError, offset: offset)
        }
        if filled < count {
            throw .fileChanged(path: path, expected: size, actual: offset + UInt64(filled))
        }
        return buffer
    }

    /// The file's current size, to notice an image that changed during the upload.
    func currentSize() -> UInt64? {
        var info = stat()
        guard fstat(descriptor.rawValue, &info) == 0 else { return nil }
        return UInt64(info.st_size)
    }
}
