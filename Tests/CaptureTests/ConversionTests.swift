import Glibc
import ImageFormats
import Synchronization
import TestSupport
import Testing

@testable import Capture
@testable import RecordEngine

struct ConversionTests {
    let directory: TemporaryDirectory

    init() throws {
        directory = try TemporaryDirectory()
    }

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
    func sameFormatNeedsNoConversion(format: ImageFormat) throws {
        let raw = memory(block + 4096, seed: 20)
        directory.write("x.raw", raw)
        try convert("x.raw", .raw, "x.lime", .lime)
        try convert("x.raw", .raw, "x.avml", .limeCompressed)
        let name = ["x.raw", "x.lime", "x.avml"][ImageFormat.allCases.firstIndex(of: format) ?? 0]
        let error = captureError { try convert(name, format, "y", format) }
        #expect(error?.side == "refused" && error?.cause as? ConvertError == .noConversionRequired(format))
        #expect(!directory.exists("y"))
    }

    /// AVML's own output for `raw`: one record per 16 MiB block, however badly it compresses.
    func avmlStyleImage(_ raw: [UInt8]) -> [UInt8] { referenceCompressed(raw) }

    @Test func compressedImagesVolatilityCannotOpenAreRecut() throws {
        let raw = joined([memory(block, seed: 21), noise(block, seed: 22), memory(block / 2, seed: 23)])
        directory.write("avml.avml", avmlStyleImage(raw))
        #expect(try ImageSummary.read(path: directory["avml.avml"]).volatilityUnreadable.count == 1)
        try convert("avml.avml", .limeCompressed, "fixed.avml", .limeCompressed)
        let fixed = try ImageSummary.read(path: directory["fixed.avml"])
        #expect(fixed.volatilityUnreadable.isEmpty)
        #expect(fixed.records.map(\.header.start) == [0, 2 * UInt64(block)])
        #expect(same(joined(try decodedRecords(directory["fixed.avml"]).map(\.1)), raw))
        // A repaired image needs no second repair.
        let error = captureError { try convert("fixed.avml", .limeCompressed, "again.avml", .limeCompressed) }
        #expect(error?.cause as? ConvertError == .noConversionRequired(.limeCompressed))
    }

    /// A record far beyond any physical address must not make raw output fill
    /// petabytes, to a file or a pipe: it is a corrupt image, named with its offset.
    @Test func aRecordBeyondPhysicalAddressesIsACorruptImage() throws {
        let far: UInt64 = 1 << 62
        directory.write(
            "hostile.lime",
            joined([
                RecordHeader(compressed: false, start: 0, end: 0xfff).bytes, [UInt8](repeating: 1, count: 4096),
                RecordHeader(compressed: false, start: 0, end: 0).bytes.enumerated().map { index, byte in
                    // start and end = 2^62 (the initialiser refuses such a header, as it should).
                    (8..<24).contains(index) ? UInt8(truncatingIfNeeded: far >> (8 * UInt64((index - 8) % 8))) : byte
                },
                [UInt8](repeating: 2, count: 1),
            ]))
        let error = captureError { try convert("hostile.lime", .lime, "out.raw", .raw) }
        #expect(error?.side == "source")
        let description = error.map(String.init(describing:)) ?? ""
        #expect(description.contains("beyond any physical address space") && description.contains("0x1020"))
        #expect(!directory.exists("out.raw"))
        // The same to a pipe: an error, and no more than the first record's page before it.
        let received = try drainFIFO("pipe") { try convert("hostile.lime", .lime, "pipe", .raw) }
        #expect(received.error?.side == "source" && received.bytes <= 4096)
        #expect(throws: ImageError.self) { _ = try ImageSummary.read(path: directory["hostile.lime"]) }
    }

    @Test func aHugeGapToAPipeIsRefusedNotStreamedAsZeros() throws {
        let far: UInt64 = 1 << 48
        directory.write(
            "gap.lime",
            joined([
                RecordHeader(compressed: false, start: 0, end: 0xfff).bytes, [UInt8](repeating: 1, count: 4096),
                RecordHeader(compressed: false, start: far, end: far + 0xfff).bytes, [UInt8](repeating: 2, count: 4096),
            ]))
        let received = try drainFIFO("pipe") { try convert("gap.lime", .lime, "pipe", .raw) }
        #expect(received.error?.side == "destination" && received.bytes <= 4096)
        #expect(received.error.map(String.init(describing:))?.contains("convert to a file") == true)
    }

    /// Runs `body`, which writes to the FIFO `name`, while another thread reads it; returns what arrived.
    func drainFIFO(_ name: String, _ body: () throws -> Void) throws -> (error: CaptureError?, bytes: Int) {
        mkfifo(directory[name], 0o600)
        let path = directory[name]
        let count = Mutex(0)
        guard
            case .success(let reader) = startThread({
                let fd = open(path, O_RDONLY)
                var buffer = [UInt8](repeating: 0, count: 1 << 16)
                while true {
                    let got = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
                    if got <= 0 { break }
                    count.withLock { $0 += got }
                }
                close(fd)
            })
        else { throw ThreadStartError(errno: EAGAIN) }
        var failure: CaptureError?
        do { try body() } catch let error as CaptureError { failure = error }
        pthread_join(reader, nil)
        return (failure, count.withLock { $0 })
    }

    @Test func refusesASymlinkDestinationAndLeavesItsTargetAlone() throws {
        directory.write("memory.raw", memory(4096, seed: 7))
        directory.write("precious", Array("keep me".utf8))
        symlink(directory["precious"], directory["out.lime"])
        let error = captureError { try convert("memory.raw", .raw, "out.lime", .lime) }
        let output = try #require(error?.cause as? OutputError)
        #expect(error?.side == "destination")
        #expect(output.errno == .tooManySymbolicLinkLevels)
        #expect(output.description.contains("symbolic link"))
        #expect(directory.read("precious") == Array("keep me".utf8))
    }

    @Test func refusesADestinationWithOtherHardLinks() throws {
        directory.write("memory.raw", memory(4096, seed: 8))
        directory.write("precious", Array("keep me".utf8))
        link(directory["precious"], directory["out.lime"])
        let error = captureError { try convert("memory.raw", .raw, "out.lime", .lime) }
        #expect(error?.side == "destination" && error?.cause is OutputError)
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
        for (name, format) in [("out.lime", ImageFormat.lime), ("out.raw", .raw), ("out.avml", .limeCompressed)] {
            let error = captureError { try convert("bad.avml", .limeCompressed, name, format) }
            #expect(error?.side == "source" && error?.cause is ImageError, "\(format)")
            #expect(!directory.exists(name))
        }
    }

    @Test func refusesToOverwriteTheSource() throws {
        let raw = memory(4096, seed: 10)
        directory.write("memory.raw", raw)
        for spelling in ["memory.raw", "./memory.raw"] {
            let error = captureError {
                _ = try Conversion(
                    source: directory["memory.raw"], sourceFormat: .raw,
                    destination: spelling.hasPrefix("./") ? directory.path + "/" + spelling : directory[spelling],
                    format: .lime, threads: 1
                ).run()
            }
            #expect(error?.side == "refused" && error?.cause is ConvertError)
        }
        #expect(same(directory.read("memory.raw"), raw))
    }

    @Test func emptySourceIsAnError() {
        directory.write("empty", [])
        #expect(captureError { try convert("empty", .raw, "out.lime", .lime) }?.cause is ImageError)
        #expect(captureError { try convert("empty", .lime, "out.raw", .raw) }?.cause is ImageError)
        #expect(!directory.exists("out.lime") && !directory.exists("out.raw"))
    }
}
