import Glibc
import ImageFormats
import TestSupport
import Testing

@testable import ImagePipeline

struct ConversionTests {
    let directory = TemporaryDirectory()

    /// zero block, data, zero block, partial data, zero block, data (partial last block).
    func sparseRaw() -> [UInt8] {
        joined([
            [UInt8](repeating: 0, count: block), memory(block, seed: 1), [UInt8](repeating: 0, count: block),
            memory(block / 4, seed: 2), [UInt8](repeating: 0, count: block - block / 4), memory(block / 3, seed: 3),
        ])
    }

    func convert(_ source: String, _ from: ImageFormat, _ destination: String, _ to: ImageFormat, threads: Int = 2) throws {
        _ = try Conversion(
            source: directory[source], sourceFormat: from, destination: directory[destination], format: to, threads: threads
        ).run()
    }

    @Test func rawToLiMEFollowsAVMLsBlockRules() throws {
        let raw = sparseRaw()
        directory.write("memory.raw", raw)
        try convert("memory.raw", .raw, "memory.lime", .lime)
        let lime = try #require(directory.read("memory.lime"))
        #expect(same(lime, referenceLiME(raw)))
        // Three non-zero blocks: 16 MiB at 16 MiB, 16 MiB at 48 MiB (partly data), and the partial last one.
        #expect(lime.count == 3 * 32 + 2 * block + block / 3)
    }

    @Test func allSixDirectionsRoundTrip() throws {
        let raw = sparseRaw()
        directory.write("memory.raw", raw)
        try convert("memory.raw", .raw, "a.lime", .lime)
        try convert("memory.raw", .raw, "a.avml", .limeCompressed)
        try convert("a.lime", .lime, "b.avml", .limeCompressed)
        try convert("a.avml", .limeCompressed, "b.lime", .lime)
        try convert("b.avml", .limeCompressed, "c.raw", .raw)
        try convert("a.lime", .lime, "d.raw", .raw)
        #expect(same(directory.read("a.avml"), directory.read("b.avml")))
        #expect(same(directory.read("b.lime"), directory.read("a.lime")))
        #expect(same(directory.read("c.raw"), raw))
        #expect(same(directory.read("d.raw"), raw))
        // A trailing all-zero block is not in the image, so not in the raw output either.
        let trimmed = Array(raw.prefix(4 * block))
        directory.write("padded.raw", joined([trimmed, [UInt8](repeating: 0, count: block)]))
        try convert("padded.raw", .raw, "padded.lime", .lime)
        try convert("padded.lime", .lime, "padded-out.raw", .raw)
        #expect(same(directory.read("padded-out.raw"), trimmed))
    }

    @Test func liMEToCompressedRecutsLargeRecordsAt16MiB() throws {
        // One LiME record of 40 MiB at 1 MiB, the middle 16 MiB of its blocks zero.
        let body = joined([memory(block, seed: 4), [UInt8](repeating: 0, count: block), memory(8 << 20, seed: 5)])
        directory.write(
            "big.lime",
            joined([RecordHeader(compressed: false, start: 1 << 20, end: (1 << 20) + UInt64(body.count) - 1).bytes, body]))
        try convert("big.lime", .lime, "big.avml", .limeCompressed)
        let reader = try ImageReader(path: directory["big.avml"])
        var starts: [UInt64] = []
        while let record = try reader.nextRecord() { starts.append(record.header.start) }
        #expect(starts == [1 << 20, (1 << 20) + 2 * UInt64(block)])
    }

    @Test func compressedToLiMEKeepsEachRecordsRange() throws {
        // AVML writes one LiME record per compressed record, even an all-zero one.
        let zeros = [UInt8](repeating: 0, count: 8192)
        let text = memory(100_000, seed: 6)
        var image: [UInt8] = []
        for (start, data) in [(UInt64(0x1000), zeros), (0x10_0000, text)] {
            let framed = SnappyFraming.encode(data)
            image += RecordHeader(compressed: true, start: start, end: start + UInt64(data.count) - 1).bytes + framed
            image += withUnsafeBytes(of: UInt64(framed.count).littleEndian) { Array($0) }
        }
        directory.write("in.avml", image)
        try convert("in.avml", .limeCompressed, "out.lime", .lime)
        let expected =
            RecordHeader(compressed: false, start: 0x1000, end: 0x2fff).bytes + zeros
            + RecordHeader(compressed: false, start: 0x10_0000, end: 0x10_0000 + UInt64(text.count) - 1).bytes + text
        #expect(same(directory.read("out.lime"), expected))
    }

    @Test(arguments: ImageFormat.allCases)
    func sameFormatNeedsNoConversion(format: ImageFormat) {
        directory.write("x", [1])
        #expect(throws: ConvertError.noConversionRequired(format)) { try convert("x", format, "y", format) }
        #expect(!directory.exists("y"))
    }

    @Test func refusesASymlinkDestinationAndLeavesItsTargetAlone() throws {
        directory.write("memory.raw", memory(4096, seed: 7))
        directory.write("precious", Array("keep me".utf8))
        symlink(directory["precious"], directory["out.lime"])
        do {
            try convert("memory.raw", .raw, "out.lime", .lime)
            Issue.record("a symlink destination must be refused")
        } catch let error as OutputError {
            #expect(error.errno == .tooManySymbolicLinkLevels)
            #expect(error.description.contains("symbolic link"))
        }
        #expect(directory.read("precious") == Array("keep me".utf8))
    }

    @Test func refusesADestinationWithOtherHardLinks() throws {
        directory.write("memory.raw", memory(4096, seed: 8))
        directory.write("precious", Array("keep me".utf8))
        link(directory["precious"], directory["out.lime"])
        #expect(throws: OutputError.self) { try convert("memory.raw", .raw, "out.lime", .lime) }
        #expect(directory.read("precious") == Array("keep me".utf8))
    }

    @Test func rawOutputLeavesGapsAsHoles() throws {
        // Two pages, 64 GiB apart: the raw image is 64 GiB long but holds two pages.
        let far: UInt64 = 64 << 30
        directory.write(
            "sparse.lime",
            joined([
                RecordHeader(compressed: false, start: 0x1000, end: 0x1fff).bytes, [UInt8](repeating: 1, count: 4096),
                RecordHeader(compressed: false, start: far, end: far + 0xfff).bytes, [UInt8](repeating: 2, count: 4096),
            ]))
        try convert("sparse.lime", .lime, "sparse.raw", .raw)
        var info = stat()
        stat(directory["sparse.raw"], &info)
        #expect(UInt64(info.st_size) == far + 0x1000)
        #expect(info.st_blocks * 512 < 1 << 20)
    }

    @Test func createsImagesMode0600EvenOverAnExistingFile() throws {
        directory.write("memory.raw", memory(4096, seed: 8))
        directory.write("out.lime", [1, 2, 3])
        chmod(directory["out.lime"], 0o644)
        try convert("memory.raw", .raw, "out.lime", .lime)
        var info = stat()
        stat(directory["out.lime"], &info)
        #expect(info.st_mode & 0o777 == 0o600)
    }

    @Test func corruptInputLeavesNoDestination() throws {
        let good = SnappyFraming.encode(memory(200_000, seed: 9))
        var image = RecordHeader(compressed: true, start: 0, end: 199_999).bytes + good
        image += withUnsafeBytes(of: UInt64(good.count).littleEndian) { Array($0) }
        image[32 + 30_000] ^= 0x55
        directory.write("bad.avml", image)
        #expect(throws: ImageError.self) { try convert("bad.avml", .limeCompressed, "out.lime", .lime) }
        #expect(!directory.exists("out.lime"))
        #expect(throws: ImageError.self) { try convert("bad.avml", .limeCompressed, "out.raw", .raw) }
        #expect(!directory.exists("out.raw"))
    }

    @Test func refusesToOverwriteTheSource() throws {
        let raw = memory(4096, seed: 10)
        directory.write("memory.raw", raw)
        #expect(throws: ConvertError.destinationIsSource(directory["memory.raw"])) {
            try convert("memory.raw", .raw, "memory.raw", .lime)
        }
        #expect(same(directory.read("memory.raw"), raw))
    }

    @Test func emptySourceIsAnError() {
        directory.write("empty", [])
        #expect(throws: ImageError.self) { try convert("empty", .raw, "out.lime", .lime) }
        #expect(throws: ImageError.self) { try convert("empty", .lime, "out.raw", .raw) }
        #expect(!directory.exists("out.lime") && !directory.exists("out.raw"))
    }
}
