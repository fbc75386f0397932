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
    /// With `O_DIRECT`: the aligned buffer writes gather in, and how much of it is filled.
    private var staging: UnsafeMutableRawBufferPointer?
    private var staged = 0
    /// `O_DIRECT` writes whole, aligned buffers: 1 MiB keeps the disk's requests large,
    /// and more would only overwrite more of the examined host's memory.
    private static let stagingBytes = 1 << 20
    /// Whether the file is written around the page cache.
    var isDirect: Bool { staging != nil }

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
    ///   - direct: write a regular file around the page cache (`O_DIRECT`) where its
    ///     filesystem allows it: the image then fills no memory of the examined host but
    ///     one 1 MiB buffer; elsewhere (tmpfs) as `streamOut` says.
    ///   - newOnly: only create the file (`O_EXCL`): `EEXIST` when anything, a symlink
    ///     included, is at the path.
    /// - Throws: `OutputError` naming the path and errno; `ELOOP` means a symlink was refused.
    public init(path: String, sideFile: Bool = false, direct: Bool = false, newOnly: Bool = false) throws(OutputError) {
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
        let opened: FileDescriptor
        do {
            opened = try Self.open(path, mode: sideFile ? .readWrite : .writeOnly, newOnly: newOnly)
        } catch {
            throw OutputError(.create, path: path, errno: error)
        }
        do {
            identity = try Self.prepare(opened, sideFile: sideFile)
        } catch {
            try? opened.close()
            throw OutputError(.create, path: path, errno: error)
        }
        descriptor = opened
        if direct && identity != nil && avml_set_direct_io(opened.rawValue, 1) == 0 {
            staging = .allocate(byteCount: Self.stagingBytes, alignment: 4096)
        }
    }

    /// Checks the opened file and empties it, mode 0600.
    /// - Returns: the file's identity; nil for a device or FIFO, which is written to, never
    ///   truncated or removed.
    /// - Throws: `EMLINK` for a file with another name, `EEXIST` for an image under a side file's name.
    private static func prepare(_ file: FileDescriptor, sideFile: Bool) throws(Errno) -> (device: UInt64, inode: UInt64)? {
        let info = try file.stat()
        guard info.type == .regular else { return nil }
        if info.linkCount > 1 { throw .tooManyLinks }
        if sideFile && holdsImage(file) { throw .fileExists }
        do {
            try file.resize(to: 0, retryOnInterrupt: true)
        } catch {
            throw error as? Errno ?? .ioError
        }
        if info.permissions != .ownerReadWrite && fchmod(file.rawValue, 0o600) != 0 { throw Errno(rawValue: errno) }
        return (UInt64(info.deviceID.rawValue), UInt64(info.inode.rawValue))
    }

    /// Opens or creates `path` without following a symlink there, mode 0600 when created.
    private static func open(_ path: String, mode: FileDescriptor.AccessMode, newOnly: Bool) throws(Errno) -> FileDescriptor {
        do {
            var options: FileDescriptor.OpenOptions = [.create, .noFollow, .closeOnExec]
            if newOnly { options.insert(.exclusiveCreate) }
            return try FileDescriptor.open(
                FilePath(path), mode, options: options, permissions: .ownerReadWrite, retryOnInterrupt: true)
        } catch {
            throw error as? Errno ?? .ioError
        }
    }

    deinit {
        if !closed && !isStandardOutput { try? descriptor.close() }
        staging?.deallocate()
    }

    /// Whether the open file starts with a LiME or AVML record header.
    private static func holdsImage(_ descriptor: FileDescriptor) -> Bool {
        var magic = [UInt8](repeating: 0, count: 4)
        guard (try? magic.withUnsafeMutableBytes { try descriptor.readFully(into: $0, atOffset: 0) }) == 4 else { return false }
        let value = magic.le32(at: 0)
        return value == RecordHeader.limeMagic || value == RecordHeader.avmlMagic
    }

    public func write(_ bytes: UnsafeRawBufferPointer) throws(OutputError) {
        var done = 0
        while done < bytes.count {
            guard let staging else { break }
            let count = min(bytes.count - done, staging.count - staged)
            UnsafeMutableRawBufferPointer(rebasing: staging[staged..<staged + count])
                .copyMemory(from: UnsafeRawBufferPointer(rebasing: bytes[done..<done + count]))
            staged += count
            done += count
            if staged == staging.count { try writeStaged() }
        }
        if done < bytes.count {
            try writeThrough(UnsafeRawBufferPointer(rebasing: bytes[done...]))
        }
        offset += UInt64(bytes.count)
        streamOut()
    }

    private func writeThrough(_ bytes: UnsafeRawBufferPointer) throws(OutputError) {
        do {
            _ = try descriptor.writeAll(bytes)
        } catch {
            throw OutputError(.write, path: path, errno: error as? Errno ?? .ioError, offset: offset)
        }
    }

    /// Writes the staged bytes, the last of them padded with zeros to a whole 4 KiB
    /// (`finish` truncates the file to `offset`). If the disk refuses the first direct
    /// write (EINVAL), the file goes on through the page cache.
    private func writeStaged() throws(OutputError) {
        guard let staging, staged > 0 else { return }
        let padded = (staged + 4095) / 4096 * 4096
        UnsafeMutableRawBufferPointer(rebasing: staging[staged..<padded]).initializeMemory(as: UInt8.self, repeating: 0)
        let bytes = UnsafeRawBufferPointer(rebasing: staging[..<padded])
        do {
            _ = try descriptor.writeAll(bytes)
        } catch Errno.invalidArgument {
            _ = avml_set_direct_io(descriptor.rawValue, 0)
            self.staging = nil
            // `bytes` is the staging buffer's: written before the buffer goes.
            defer { staging.deallocate() }
            try writeThrough(UnsafeRawBufferPointer(rebasing: bytes[..<staged]))
        } catch {
            throw OutputError(.write, path: path, errno: error as? Errno ?? .ioError, offset: offset)
        }
        staged = 0
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
        guard identity != nil, staging == nil, offset - writtenBack >= Self.writebackWindow else { return }
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
        if identity != nil && staging == nil {
            guard count <= UInt64(Int64.max) - offset else {
                throw OutputError(.write, path: path, errno: .fileTooLarge, offset: offset)
            }
            do {
                _ = try descriptor.seek(offset: Int64(count), from: .current)
            } catch {
                throw OutputError(.write, path: path, errno: error as? Errno ?? .ioError, offset: offset)
            }
            offset += count
            return
        }
        var remaining = count
        // The closure keeps its error and the function throws it after: Swift 6.2's
        // withUnsafeTemporaryAllocation rethrows only untyped errors (scripts/build-aarch64).
        var failure: OutputError?
        withUnsafeTemporaryAllocation(byteCount: 1 << 16, alignment: 16) { zeros in
            zeros.initializeMemory(as: UInt8.self, repeating: 0)
            do throws(OutputError) {
                while remaining > 0 {
                    let step = Int(min(remaining, UInt64(zeros.count)))
                    try write(UnsafeRawBufferPointer(rebasing: zeros[..<step]))
                    remaining -= UInt64(step)
                }
            } catch {
                failure = error
            }
        }
        if let failure { throw failure }
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
        guard identity != nil, (try? descriptor.resize(to: 0, retryOnInterrupt: true)) != nil,
            (try? descriptor.seek(offset: 0, from: .start)) != nil
        else {
            return false
        }
        offset = 0
        staged = 0
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
        if identity != nil {
            do {
                try writeStaged()
            } catch {
                try? descriptor.close()
                throw error
            }
            do {
                try descriptor.resize(to: Int64(offset), retryOnInterrupt: true)
                if fsync(descriptor.rawValue) != 0 { throw Errno(rawValue: errno) }
            } catch {
                try? descriptor.close()
                throw OutputError(.sync, path: path, errno: error as? Errno ?? .ioError, offset: offset)
            }
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
        guard let info = try? FilePath(path).stat(followTargetSymlink: false),
            UInt64(info.deviceID.rawValue) == identity.device, UInt64(info.inode.rawValue) == identity.inode
        else {
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
