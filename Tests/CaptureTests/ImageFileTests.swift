import Foundation
import Glibc
import TestSupport
import Testing

@testable import Capture

/// The image written around the page cache (O_DIRECT): the same file, byte for byte, as
/// written through it, whatever the sizes of the writes.
struct ImageFileTests {
    static let sizes = [1, 31, 32, 3 << 20, (1 << 20) + 7, 4096, 0, 5000, 2 << 20, 17]

    static func bytes(_ count: Int, seed: Int) -> [UInt8] {
        [UInt8](unsafeUninitializedCapacity: count) { buffer, initialized in
            for index in 0..<count { buffer[index] = UInt8(truncatingIfNeeded: index &* 31 &+ seed) }
            initialized = count
        }
    }

    func writeAndRead(in folder: String, direct: Bool) throws -> (isDirect: Bool, written: [UInt8], read: [UInt8]) {
        let path = folder + "/image"
        let file = try ImageFile(path: path, direct: direct)
        let isDirect = file.isDirect
        var written: [UInt8] = []
        for (index, size) in Self.sizes.enumerated() {
            let part = Self.bytes(size, seed: index)
            try part.withUnsafeBytes { try file.write($0) }
            written += part
        }
        #expect(file.offset == UInt64(written.count))
        try file.finish()
        let read = try #require(FileManager.default.contents(atPath: path))
        return (isDirect, written, Array(read))
    }

    @Test func directWritesGiveTheSameFileAsWritesThroughThePageCache() throws {
        let directory = try TemporaryDirectory()
        let result = try writeAndRead(in: directory.path, direct: true)
        #expect(result.isDirect, "the test folder's filesystem (ext4 here) takes O_DIRECT")
        #expect(result.read.count == result.written.count)
        let same = result.read == result.written
        #expect(same)
    }

    /// tmpfs takes O_DIRECT since Linux 6.6 and refuses it before: the file is the same either way.
    @Test func onTmpfsTheFileIsTheSameWhicheverWayItIsWritten() throws {
        var template = Array("/dev/shm/avml-test-XXXXXX".utf8CString)
        let folder = try #require(
            template.withUnsafeMutableBufferPointer { $0.baseAddress.flatMap(mkdtemp).map { String(cString: $0) } })
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let result = try writeAndRead(in: folder, direct: true)
        let same = result.read == result.written
        #expect(same)
    }

    @Test func aRestartedDirectFileHoldsOnlyWhatCameAfter() throws {
        let directory = try TemporaryDirectory()
        let file = try ImageFile(path: directory["image"], direct: true)
        try Self.bytes(3 << 20, seed: 1).withUnsafeBytes { try file.write($0) }
        #expect(file.restart())
        let after = Self.bytes(100, seed: 2)
        try after.withUnsafeBytes { try file.write($0) }
        try file.finish()
        let same = FileManager.default.contents(atPath: directory["image"]).map(Array.init) == after
        #expect(same)
    }
}
