import ImageFormats
import MemorySources
import SystemPackage
import TestSupport
import Testing

@testable import ImagePipeline

struct PipelineTests {
    static let raw = joined([memory(3 * block + 12345, seed: 11), [UInt8](repeating: 0, count: block), memory(5000, seed: 12)])

    func run(compressed: Bool, threads: Int) throws -> [UInt8] {
        let sink = MemorySink()
        var producer = MemoryBlockProducer(reader: FaultyMemory(Self.raw, failingPages: []), ranges: [0..<UInt64(Self.raw.count)])
        _ = try RecordPipeline(compressed: compressed, threads: threads).run(&producer, to: sink)
        return sink.bytes
    }

    @Test func outputIsTheSameWhateverTheThreadCount() throws {
        let lime = try run(compressed: false, threads: 1)
        #expect(same(lime, referenceLiME(Self.raw)))
        let compressed = try run(compressed: true, threads: 1)
        for threads in [2, 3, 8] {
            #expect(same(try run(compressed: false, threads: threads), lime))
            #expect(same(try run(compressed: true, threads: threads), compressed))
        }
    }

    @Test func aFailingSinkStopsTheRunWithItsError() throws {
        let sink = MemorySink()
        sink.failAfter = block + 100
        var producer = MemoryBlockProducer(reader: FaultyMemory(Self.raw, failingPages: []), ranges: [0..<UInt64(Self.raw.count)])
        #expect(throws: OutputError.self) { _ = try RecordPipeline(compressed: false, threads: 3).run(&producer, to: sink) }
        // The first record, then the second's header: its body is what failed.
        #expect(sink.bytes.count == 2 * 32 + block)
    }

    @Test func unreadablePagesAreZeroFilledAndReported() throws {
        let bytes = memory(64 * 4096, seed: 13)
        // Pages 3, 4 and 40 fail with EIO; the block around them is retried page by page.
        let reader = FaultyMemory(bytes, failingPages: [3, 4, 40])
        var producer = MemoryBlockProducer(reader: reader, ranges: [0x1000..<0x3f800])
        let sink = MemorySink()
        _ = try RecordPipeline(compressed: false, threads: 2).run(&producer, to: sink)
        #expect(producer.unreadable == [0x3000..<0x5000, 0x28000..<0x29000])
        var expected = Array(bytes[0x1000..<0x3f800])
        for page in [3, 4, 40] {
            expected.replaceSubrange(page * 4096 - 0x1000..<page * 4096, with: [UInt8](repeating: 0, count: 4096))
        }
        #expect(same(Array(sink.bytes.dropFirst(32)), expected))
        // The last, partial page is read too.
        #expect(reader.reads.contains { $0.0 == 0x3f000 && $0.1 == 0x800 })
    }

    @Test func aPermissionErrorFailsTheSource() {
        let reader = FaultyMemory(memory(8 * 4096, seed: 14), failingPages: [2], errno: .notPermitted)
        var producer = MemoryBlockProducer(reader: reader, ranges: [0..<0x8000])
        #expect(throws: SourceError.self) {
            _ = try RecordPipeline(compressed: false, threads: 1).run(&producer, to: MemorySink())
        }
    }

    @Test func rangesAreCutIntoBlocksFromTheirOwnStart() throws {
        let bytes = memory(3 * block, seed: 15)
        var producer = MemoryBlockProducer(
            reader: FaultyMemory(bytes, failingPages: []), ranges: [0x1000..<UInt64(2 * block + 0x3000)])
        var starts: [UInt64] = []
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: block, alignment: 16)
        defer { buffer.deallocate() }
        while let produced = try producer.nextBlock(into: buffer) { starts.append(produced.start) }
        #expect(starts == [0x1000, 0x1000 + UInt64(block), 0x1000 + 2 * UInt64(block)])
    }

    @Test func zeroCheckFindsASingleNonZeroByte() {
        var bytes = [UInt8](repeating: 0, count: 100_000)
        #expect(bytes.withUnsafeBytes(isAllZero))
        for index in [0, 15, 16, 17, 99_999] {
            bytes[index] = 1
            #expect(!bytes.withUnsafeBytes(isAllZero))
            bytes[index] = 0
        }
        #expect([UInt8]().withUnsafeBytes(isAllZero))
    }
}
