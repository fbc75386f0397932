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
        let opened: SystemPackage.FileDescriptor
        do {
            opened = try SystemPackage.FileDescriptor.open(FilePath(path), .readOnly, options: .closeOnExec)
        } catch {
            throw .localFile(operation: "open", path: path, errno: error as? Errno ?? .ioError, offset: nil)
        }
        let info: Stat
        do {
            info = try opened.stat()
        } catch {
            try? opened.close()
            throw .localFile(operation: "stat", path: path, errno: error, offset: nil)
        }
        guard info.type == .regular else {
            try? opened.close()
            throw .notRegularFile(path)
        }
        descriptor = opened
        size = UInt64(info.size)
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
        (try? descriptor.stat()).map { UInt64($0.size) }
    }
}
