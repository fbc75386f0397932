import ImageFormats
import SystemPackage
import TestSupport
import Testing

/// The one loop that reads files reporting no size (/proc, sysfs, securityfs) to their end.
struct ReadToEndTests {
    @Test func aFileIsReadWholeAcrossTheBuffersGrowth() throws {
        let directory = try TemporaryDirectory()
        let bytes = (0..<200_000).map { UInt8(truncatingIfNeeded: $0 &* 7) }
        let path = directory.write("big", bytes)
        #expect(try FileDescriptor.readFile(path, limit: 1 << 20) == bytes)
    }

    @Test func readingStopsAtTheLimit() throws {
        let directory = try TemporaryDirectory()
        let bytes = (0..<70_000).map { UInt8(truncatingIfNeeded: $0) }
        let path = directory.write("long", bytes)
        #expect(try FileDescriptor.readFile(path, limit: 65_537) == Array(bytes.prefix(65_537)))
        #expect(try FileDescriptor.readFile(path, limit: 4) == Array(bytes.prefix(4)))
        #expect(try FileDescriptor.readFile(path, limit: 0) == [])
    }

    @Test func aProcFileWithoutASizeIsReadToItsEnd() throws {
        let text = try FileDescriptor.readFile("/proc/self/status", limit: 1 << 16)
        #expect(String(decoding: text, as: UTF8.self).contains("CapEff:"))
        let status = try FileDescriptor.open("/proc/self/status", .readOnly)
        defer { try? status.close() }
        #expect(try status.stat().size == 0)
    }

    @Test func aMissingFileThrowsItsErrno() {
        #expect(throws: Errno.noSuchFileOrDirectory) { try FileDescriptor.readFile("/nonexistent/avml", limit: 16) }
    }
}
