// Helpers shared by the test targets: temporary directories and fast byte comparisons.
import Foundation
import Glibc

/// A fresh directory under /tmp, removed with everything in it when released.
public final class TemporaryDirectory {
    public let path: String

    /// - Throws: `TestSupportError` when the directory cannot be created (never a fallback
    ///   to a shared path, which the cleanup would then remove).
    public init() throws(TestSupportError) {
        var template = Array("/tmp/avml-test-XXXXXX".utf8CString)
        guard let made = template.withUnsafeMutableBufferPointer({ $0.baseAddress.flatMap(mkdtemp).map { String(cString: $0) } })
        else { throw TestSupportError("mkdtemp /tmp/avml-test-XXXXXX", errno: errno) }
        path = made
    }

    /// Removes the directory and what the test left in it, without a shell.
    deinit {
        try? FileManager.default.removeItem(atPath: path)
    }

    public subscript(name: String) -> String { "\(path)/\(name)" }

    /// Writes `bytes` to `name`; a test cannot go on without its file, so failing stops the run, saying why.
    @discardableResult
    public func write(_ name: String, _ bytes: [UInt8]) -> String {
        let target = self[name]
        let fd = open(target, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard fd >= 0 else { fatalError("\(TestSupportError("open \(target)", errno: errno))") }
        defer { close(fd) }
        var offset = 0
        bytes.withUnsafeBytes { raw in
            while offset < raw.count, let base = raw.baseAddress {
                let written = Glibc.write(fd, base + offset, raw.count - offset)
                if written < 0 && errno == EINTR { continue }
                guard written > 0 else { fatalError("\(TestSupportError("write \(target)", errno: errno))") }
                offset += written
            }
        }
        return target
    }

    public func read(_ name: String) -> [UInt8]? {
        readWholeFile(self[name])
    }

    public func exists(_ name: String) -> Bool {
        var info = stat()
        return lstat(self[name], &info) == 0
    }
}

/// The bytes of a regular file (a fixture, a file a test wrote), or nil when it cannot be opened.
public func readWholeFile(_ path: String) -> [UInt8]? {
    let fd = open(path, O_RDONLY)
    guard fd >= 0 else { return nil }
    defer { close(fd) }
    var info = stat()
    fstat(fd, &info)
    let size = Int(info.st_size)
    return [UInt8](unsafeUninitializedCapacity: size) { buffer, count in
        count = 0
        while count < size {
            let got = Glibc.read(fd, buffer.baseAddress.map { $0 + count }, size - count)
            guard got > 0 else { break }
            count += got
        }
    }
}

/// Concatenates byte arrays with memcpy (debug builds copy generic sequences byte by byte).
public func joined(_ parts: [[UInt8]]) -> [UInt8] {
    let total = parts.reduce(0) { $0 + $1.count }
    return [UInt8](unsafeUninitializedCapacity: total) { buffer, initialized in
        var offset = 0
        for part in parts {
            part.withUnsafeBytes {
                UnsafeMutableRawBufferPointer(rebasing: UnsafeMutableRawBufferPointer(buffer)[offset..<offset + part.count])
                    .copyMemory(from: $0)
            }
            offset += part.count
        }
        initialized = total
    }
}

/// Byte equality through memcmp: fast in debug builds, and a failure prints no megabytes of bytes.
public func same(_ a: [UInt8]?, _ b: [UInt8]?) -> Bool {
    guard let a, let b, a.count == b.count else { return false }
    return a.withUnsafeBytes { x in
        b.withUnsafeBytes { y in
            guard let left = x.baseAddress, let right = y.baseAddress else { return true }
            return memcmp(left, right, x.count) == 0
        }
    }
}

/// A little-endian BTF blob with one more record appended to its type section, of a kind
/// this reader does not know (a newer kernel's, 20...31): every other record is untouched.
///
/// - Returns: the new blob, the new record's type id (one past the last), and the byte
///   offset of its `info` word (where the kind is), or nil when `btf` has no valid header.
public func btfWithNewerKind(_ btf: [UInt8], kind: UInt8, typeCount: Int) -> (bytes: [UInt8], typeID: Int, offset: Int)? {
    func word(_ at: Int) -> Int { (0..<4).reduce(0) { $0 | Int(btf[at + $1]) << (8 * $1) } }
    func put(_ value: Int, at: Int, in bytes: inout [UInt8]) {
        for index in 0..<4 { bytes[at + index] = UInt8(truncatingIfNeeded: value >> (8 * index)) }
    }
    guard btf.count >= 24, btf[0] == 0x9f, btf[1] == 0xeb else { return nil }
    let headerLength = word(4)
    let typeOffset = word(8)
    let typeLength = word(12)
    let stringOffset = word(16)
    let end = headerLength + typeOffset + typeLength
    guard end <= btf.count, stringOffset >= typeOffset + typeLength else { return nil }
    // name_off 0, info = kind << 24 (no members), size 0.
    let record: [UInt8] = [0, 0, 0, 0, 0, 0, 0, kind & 0x1f, 0, 0, 0, 0]
    var bytes = Array(btf[..<end]) + record + Array(btf[end...])
    put(typeLength + record.count, at: 12, in: &bytes)
    put(stringOffset + record.count, at: 16, in: &bytes)
    return (bytes, typeCount, end + 4)
}

/// A test's set-up failed: what was done, and the errno.
public struct TestSupportError: Error, CustomStringConvertible {
    public var what: String
    public var errno: Int32

    public init(_ what: String, errno: Int32) {
        self.what = what
        self.errno = errno
    }

    public var description: String { "\(what): \(String(cString: strerror(errno)))" }
}
