import Hashing
import ImageFormats
import MemorySources
import SystemPackage
import TestSupport
import Testing

@testable import Capture
@testable import RecordEngine

struct PipelineTests {
    /// Three blocks of data and a partial one, then a zero block, then a short tail.
    static let raw = joined([memory(3 * block + 12345, seed: 11), [UInt8](repeating: 0, count: block), memory(5000, seed: 12)])

    func run(_ raw: [UInt8] = raw, compressed: Bool, threads: Int, hashing: Bool = false) throws -> ([UInt8], PipelineResult) {
        let sink = MemorySink()
        let producer = MemoryBlockProducer(reader: FaultyMemory(raw, failingPages: []), ranges: [0..<UInt64(raw.count)])
        let result = try RecordPipeline(compressed: compressed, threads: threads, hashing: hashing).run(producer, to: sink)
        return (sink.bytes, result)
    }

    @Test func outputIsAVMLsWhateverTheThreadCount() throws {
        let lime = referenceLiME(Self.raw)
        let compressed = referenceCompressed(Self.raw)
        for threads in [1, 2, 3, 8] {
            #expect(same(try run(compressed: false, threads: threads).0, lime), "LiME, \(threads) threads")
            #expect(same(try run(compressed: true, threads: threads).0, compressed), "compressed, \(threads) threads")
        }
    }

    @Test func theHashIsOfTheBytesWritten() throws {
        for compressed in [false, true] {
            let (bytes, result) = try run(compressed: compressed, threads: 2, hashing: true)
            #expect(result.sha256 == SHA256.hash(data: bytes).description)
            #expect(result.statistics.bytesWritten == UInt64(bytes.count))
        }
    }

    @Test func blocksThatStartWithZerosEncodeAsAWholeBlockWould() throws {
        // Block 0: 3 MiB of zeros, then data. Block 1: zeros but its very last byte.
        // Block 2: all zeros (left out). Block 3: a partial block of data.
        var raw = [UInt8](repeating: 0, count: 3 * block + 5000)
        raw.replaceSubrange(3 << 20..<(3 << 20) + 4096, with: [UInt8](repeating: 0x5a, count: 4096))
        raw[2 * block - 1] = 0x42
        raw.replaceSubrange(3 * block..<3 * block + 5000, with: [UInt8](repeating: 0xa5, count: 5000))
        let (lime, statistics) = try run(raw, compressed: false, threads: 2)
        #expect(same(lime, referenceLiME(raw)))
        #expect(statistics.statistics.records == 3 && statistics.statistics.zeroBlocksSkipped == 1)
        #expect(same(try run(raw, compressed: true, threads: 2).0, referenceCompressed(raw)))
    }

    @Test func aFailingSinkStopsTheRunAsTheDestinationsFailure() throws {
        for compressed in [false, true] {
            let sink = MemorySink()
            sink.failAfter = compressed ? referenceCompressed(Self.raw).count / 2 : block + 100
            let producer = MemoryBlockProducer(
                reader: FaultyMemory(Self.raw, failingPages: []), ranges: [0..<UInt64(Self.raw.count)])
            do {
                _ = try RecordPipeline(compressed: compressed, threads: 3).run(producer, to: sink)
                Issue.record("a failing sink must fail the run")
            } catch {
                guard case .destination(let cause) = error else {
                    Issue.record("expected the destination's failure, got \(error)")
                    continue
                }
                #expect(cause is OutputError)
            }
            // LiME: the first record, then the second's header; its body is what failed.
            if !compressed { #expect(sink.bytes.count == 2 * 32 + block) }
        }
    }

    @Test func unreadablePagesAreZeroFilledAndReported() throws {
        let bytes = memory(64 * 4096, seed: 13)
        // Pages 3, 4 and 40 fail with EIO; the piece around them is retried page by page.
        let reader = FaultyMemory(bytes, failingPages: [3, 4, 40])
        for compressed in [false, true] {
            let sink = MemorySink()
            let result = try RecordPipeline(compressed: compressed, threads: 2).run(
                MemoryBlockProducer(reader: reader, ranges: [0x1000..<0x3f800]), to: sink)
            #expect(result.unreadable == [0x3000..<0x5000, 0x28000..<0x29000])
            var expected = Array(bytes[0x1000..<0x3f800])
            for page in [3, 4, 40] {
                expected.replaceSubrange(page * 4096 - 0x1000..<page * 4096, with: [UInt8](repeating: 0, count: 4096))
            }
            let image =
                compressed
                ? try SnappyFraming.decode(Array(sink.bytes.dropFirst(32).dropLast(8))) : Array(sink.bytes.dropFirst(32))
            #expect(same(image, expected))
        }
        // The last, partial page is read too.
        #expect(reader.reads.contains { $0.0 == 0x3f000 && $0.1 == 0x800 })
    }

    @Test func aPermissionErrorFailsTheSource() {
        let reader = FaultyMemory(memory(8 * 4096, seed: 14), failingPages: [2], errno: .notPermitted)
        for compressed in [false, true] {
            do {
                _ = try RecordPipeline(compressed: compressed, threads: 1).run(
                    MemoryBlockProducer(reader: reader, ranges: [0..<0x8000]), to: MemorySink())
                Issue.record("must fail")
            } catch {
                guard case .source(let cause) = error else {
                    Issue.record("expected the source's failure, got \(error)")
                    continue
                }
                #expect(cause is SourceError)
            }
        }
    }

    @Test func rangesAreCutIntoBlocksFromTheirOwnStart() throws {
        let bytes = memory(3 * block, seed: 15)
        var producer = MemoryBlockProducer(
            reader: FaultyMemory(bytes, failingPages: []), ranges: [0x1000..<UInt64(2 * block + 0x3000)])
        var starts: [UInt64] = []
        while let produced = try producer.nextBlock() { starts.append(produced.start) }
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

    @Test func framingPiecesGivesTheStreamOfTheWhole() {
        let data = memory(5 * 65536 + 777, seed: 16)
        var whole = [UInt8](repeating: 0, count: SnappyFraming.maxFramedLength(data.count))
        var pieces = whole
        let encoder = SnappyFrameEncoder()
        let wholeLength = data.withUnsafeBytes { source in whole.withUnsafeMutableBytes { encoder.encode(source, into: $0) } }
        let piecesLength = data.withUnsafeBytes { source in
            pieces.withUnsafeMutableBytes { output in
                var end = encoder.encode(UnsafeRawBufferPointer(rebasing: source[..<(2 * 65536)]), into: output)
                end = encoder.appendChunks(UnsafeRawBufferPointer(rebasing: source[(2 * 65536)...]), into: output, at: end)
                return end
            }
        }
        #expect(wholeLength == piecesLength && whole[..<wholeLength] == pieces[..<piecesLength])
    }
}
