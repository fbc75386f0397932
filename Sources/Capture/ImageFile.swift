import CSystemShims
import Glibc
import ImageFormats
import RecordEngine
import SystemPackage

/// An image being written to a local file or to standard output.
///
/// Opened the way evidence must be: `O_NOFOLLOW` so a planted symlink cannot
/// redirect memory elsewhere, mode 0600 (also forced on an existing file, so a
/// world-readable file cannot receive the image), and removed again if the
/// capture fails, so nothing half-written looks like a complete image.
public final class ImageFile: ImageSink {
    public let path: String
    public let isStandardOutput: Bool
    private let descriptor: FileDescriptor
    private let identity: (device: UInt64, inode: UInt64)?
    private var closed = false
    /// Bytes written so far.
    public private(set) var offset: UInt64 = 0

    /// Paths that mean "write to standard output" (AVML's convention, and `-`).
    public static func isStandardOutputPath(_ path: String) -> Bool {
        path == "/dev/stdout" || path == "-"
    }

    /// Creates or truncates `path`, or takes standard output for `/dev/stdout` and `-`.
    ///
    /// - Parameters:
    ///   - path: the file.
    ///   - sideFile: a manifest or symbol table: refuses to truncate a file that holds
    ///     a memory image, so a mistyped path never destroys evidence.
    /// - Throws: `OutputError` naming the path and errno; `ELOOP` means a symlink was refused.
    public init(path: String, sideFile: Bool = false) throws(OutputError) {
        self.path = path
        if Self.isStandardOutputPath(path) {
            isStandardOutput = true
            descriptor = .standardOutput
            identity = nil
            return
        }
        isStandardOutput = false
        // Not O_TRUNC: a file that exists under another name too (a planted hard
        // link) must be refused before anything in it is lost.
        // A side file is opened for reading too, to look at what it would replace.
        let access = sideFile ? O_RDWR : O_WRONLY
        let fd = path.withCString { open($0, access | O_CREAT | O_NOFOLLOW | O_CLOEXEC, mode_t(0o600)) }
        guard fd >= 0 else { throw OutputError(.create, path: path, errno: Errno(rawValue: errno)) }
        descriptor = FileDescriptor(rawValue: fd)
        var info = stat()
        guard fstat(fd, &info) == 0 else {
            let failure = Errno(rawValue: errno)
            _ = Glibc.close(fd)
            throw OutputError(.create, path: path, errno: failure)
        }
        guard (info.st_mode & S_IFMT) == S_IFREG else {
            identity = nil  // a device or FIFO: written to, never truncated or removed
            return
        }
        identity = (UInt64(info.st_dev), UInt64(info.st_ino))
        var failure: Errno?
        if info.st_nlink > 1 {
            failure = .tooManyLinks
        } else if sideFile && Self.holdsImage(fd) {
            failure = .fileExists
        } else if ftruncate(fd, 0) != 0 || (info.st_mode & 0o7777 != 0o600 && fchmod(fd, 0o600) != 0) {
            failure = Errno(rawValue: errno)
        }
        if let failure {
            _ = Glibc.close(fd)
            throw OutputError(.create, path: path, errno: failure)
        }
    }

    deinit {
        if !closed && !isStandardOutput { try? descriptor.close() }
    }

    /// Whether the open file starts with a LiME or AVML record header.
    private static func holdsImage(_ fd: Int32) -> Bool {
        var magic: UInt32 = 0
        guard pread(fd, &magic, 4, 0) == 4 else { return false }
        let value = UInt32(littleEndian: magic)
        return value == RecordHeader.limeMagic || value == RecordHeader.avmlMagic
    }

    public func write(_ bytes: UnsafeRawBufferPointer) throws(OutputError) {
        do {
            _ = try descriptor.writeAll(bytes)
        } catch {
            throw OutputError(.write, path: path, errno: error as? Errno ?? .ioError, offset: offset)
        }
        offset += UInt64(bytes.count)
        streamOut()
    }

    /// Bytes of a regular file handed to writeback, bytes let go from the page cache,
    /// and how much at a time.
    private var writtenBack: UInt64 = 0
    private var dropped: UInt64 = 0
    private static let writebackWindow: UInt64 = 8 << 20

    /// Hands each finished 8 MiB or more of a regular file to the disk at once, and lets
    /// the page cache drop what was handed over the time before (on its way to disk by
    /// now). The image then crowds out little of the host's page cache, which is
    /// evidence too, the disk works while memory is still being read, and the final
    /// fsync has little left.
    private func streamOut() {
        guard identity != nil, offset - writtenBack >= Self.writebackWindow else { return }
        avml_stream_out(
            descriptor.rawValue, Int64(writtenBack), Int64(offset - writtenBack), Int64(dropped),
            Int64(writtenBack - dropped))
        dropped = writtenBack
        writtenBack = offset
    }

    /// Moves `count` bytes forward over zeros (gaps between records in a raw image):
    /// a hole in a regular file, so a sparse memory map does not fill the disk;
    /// written zeros where the output cannot seek.
    public func skipZeros(_ count: UInt64) throws(OutputError) {
        if identity != nil {
            guard count <= UInt64(Int64.max) - offset, lseek(descriptor.rawValue, off_t(count), SEEK_CUR) >= 0 else {
                throw OutputError(
                    .write, path: path, errno: count <= UInt64(Int64.max) - offset ? Errno(rawValue: errno) : .fileTooLarge,
                    offset: offset)
            }
            offset += count
            return
        }
        var remaining = count
        try withUnsafeTemporaryAllocation(byteCount: 1 << 16, alignment: 16) { (zeros) throws(OutputError) in
            zeros.initializeMemory(as: UInt8.self, repeating: 0)
            while remaining > 0 {
                let step = Int(min(remaining, UInt64(zeros.count)))
                try write(UnsafeRawBufferPointer(rebasing: zeros[..<step]))
                remaining -= UInt64(step)
            }
        }
    }

    /// Whether `restart` can empty the destination: a regular file, not a pipe or terminal.
    public var canRestart: Bool { identity != nil }

    /// `discard`, as the sink lifecycle's abort.
    public func abort() throws {
        try discard()
    }

    /// Empties the file so a capture can start over from another source.
    /// - Returns: false when the destination cannot restart (standard output, a pipe).
    public func restart() -> Bool {
        if offset == 0 { return true }
        guard identity != nil, ftruncate(descriptor.rawValue, 0) == 0, lseek(descriptor.rawValue, 0, SEEK_SET) == 0 else {
            return false
        }
        offset = 0
        writtenBack = 0
        dropped = 0
        return true
    }

    /// Flushes to stable storage and closes: a full disk can surface only here.
    public func finish() throws(OutputError) {
        guard !closed else { return }
        closed = true
        if isStandardOutput { return }
        // The size is where writing ended, even when it ended in a hole.
        if identity != nil && (ftruncate(descriptor.rawValue, off_t(offset)) != 0 || fsync(descriptor.rawValue) != 0) {
            let failure = Errno(rawValue: errno)
            try? descriptor.close()
            throw OutputError(.sync, path: path, errno: failure, offset: offset)
        }
        do {
            try descriptor.close()
        } catch {
            throw OutputError(.sync, path: path, errno: error as? Errno ?? .ioError, offset: offset)
        }
    }

    /// Closes and removes the incomplete file, if the path still names the file this
    /// object created (never something swapped in under the same name).
    public func discard() throws(OutputError) {
        if !closed && !isStandardOutput {
            closed = true
            try? descriptor.close()
        }
        guard let identity else { return }
        var info = stat()
        guard lstat(path, &info) == 0, UInt64(info.st_dev) == identity.device, UInt64(info.st_ino) == identity.inode else {
            return
        }
        if unlink(path) != 0 {
            throw OutputError(.remove, path: path, errno: Errno(rawValue: errno))
        }
    }
}

/// Writes a side file (a manifest, a symbol table) as an image is written: O_NOFOLLOW,
/// mode 0600, never over a file that holds an image; an incomplete one is removed.
/// - Throws: `.refused` when the path may not be written, `.destination` when writing fails.
public func writeSideFile(_ bytes: [UInt8], to path: String) throws(CaptureError) {
    let file: ImageFile
    do {
        file = try ImageFile(path: path, sideFile: true)
    } catch {
        throw .refused(error)
    }
    try writeAll(bytes, to: file)
}

/// Writes `bytes` into `file` and finishes it, or removes it.
func writeAll(_ bytes: [UInt8], to file: ImageFile) throws(CaptureError) {
    try withSink(file) { (sink) throws(CaptureError) in
        do {
            try bytes.withUnsafeBytes { try sink.write($0) }
        } catch {
            throw .destination(error)
        }
    }
}
