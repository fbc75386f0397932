import Dispatch
import Glibc
import ImageFormats
import MemorySources
import Synchronization
import TestSupport
import Testing

@testable import Capture
@testable import RecordEngine

/// The pipeline's guarantees under hostile scheduling and scarce resources.
struct PipelineGuaranteeTests {
    /// Runs `body` on its own thread and waits at most `seconds`: a deadlock fails the test instead of hanging it.
    func withDeadline<T: Sendable>(_ seconds: Int, _ body: @escaping @Sendable () throws -> T) -> Result<T, any Error>? {
        let result = Mutex<Result<T, any Error>?>(nil)
        let done = DispatchSemaphore(value: 0)
        guard
            case .success(let thread) = startThread({
                let value = Result { try body() }
                result.withLock { $0 = value }
                done.signal()
            })
        else { return nil }
        pthread_detach(thread)
        guard done.wait(timeout: .now() + .seconds(seconds)) == .success else { return nil }
        return result.withLock { $0 }
    }

    /// A worker stalls between its claim and its work, with more threads than cores:
    /// later blocks must neither take its slot nor be written in its place.
    /// (On the semaphore rings of the first version this deadlocked.)
    @Test(arguments: [false, true])
    func aStalledWorkerKeepsItsPlace(compressed: Bool) throws {
        let raw = memory(12 * block, seed: 31)
        var pipeline = RecordPipeline(compressed: compressed, threads: 6, hashing: true)
        pipeline.seams.afterClaim = { index in if index == 1 { usleep(300_000) } }
        let stalled = pipeline
        let outcome = withDeadline(60) { () throws -> [UInt8] in
            let sink = MemorySink()
            _ = try stalled.run(
                MemoryBlockProducer(reader: FaultyMemory(raw, failingPages: []), ranges: [0..<UInt64(raw.count)]), to: sink)
            return sink.bytes
        }
        let bytes = try #require(try outcome?.get(), "the pipeline deadlocked")
        #expect(same(bytes, compressed ? referenceCompressed(raw) : referenceLiME(raw)))
    }

    @Test func buffersStayWithinTheBudgetWhateverTheThreadCount() {
        for compressed in [false, true] {
            for readsInOrder in [false, true] {
                for threads in [1, 2, 8, 64, 1024] {
                    let layout = RecordPipeline(compressed: compressed, threads: threads).layout(readsInOrder: readsInOrder)
                    #expect(layout.totalBytes <= RecordPipeline.defaultMemoryBudget, "\(threads) threads: \(layout)")
                    #expect(layout.workers >= 1 && layout.workers <= threads)
                    #expect(layout.slots >= layout.workers + 2)
                }
            }
        }
        // 64 threads on 256 MiB: as many as fit, not 64.
        let wide = RecordPipeline(compressed: true, threads: 64).layout(readsInOrder: false)
        #expect(wide.workers == 13 && wide.totalBytes <= 256 << 20)
        // A smaller budget means fewer threads, never more memory.
        let small = RecordPipeline(compressed: true, threads: 8, memoryBudget: 100 << 20).layout(readsInOrder: false)
        #expect(small.totalBytes <= 100 << 20 && small.workers < 8)
        #expect(RecordPipeline.minimumBudget(compressed: true) < 100 << 20)
        // A compressed capture's 1 MiB blocks: its slots are a few MiB, not 16.8 MiB each.
        let capture = RecordPipeline(compressed: true, threads: 2, blockSize: RecordPipeline.compressedCaptureBlockSize)
            .layout(readsInOrder: false)
        #expect(capture.workers == 2 && capture.slots == 6 && capture.totalBytes < 9 << 20)
        // What the writer may copy out of its slots for joining stays within the budget.
        #expect(capture.joinBytes == 96 << 20)
        let tight = RecordPipeline(compressed: true, threads: 2, memoryBudget: 40 << 20, blockSize: 1 << 20)
            .layout(readsInOrder: false)
        #expect(tight.joinBytes == (40 << 20) - tight.totalBytes && tight.joinBytes > 0)
        let lime = RecordPipeline(compressed: false, threads: 2).layout(readsInOrder: false)
        #expect(lime.joinBytes == 0 && lime.slots == 6)
    }

    @Test(arguments: [false, true])
    func threadsThatCannotStartMeanFewerWorkersNotACrash(compressed: Bool) throws {
        let raw = memory(3 * block, seed: 32)
        let started = Atomic<Int>(0)
        var pipeline = RecordPipeline(compressed: compressed, threads: 4, hashing: true)
        // The hasher and one worker start; every other thread fails with EAGAIN.
        pipeline.seams.startThread = { body in
            guard started.add(1, ordering: .relaxed).newValue <= 2 else { return .failure(ThreadStartError(errno: EAGAIN)) }
            return startThread(body)
        }
        let sink = MemorySink()
        let result = try pipeline.run(
            MemoryBlockProducer(reader: FaultyMemory(raw, failingPages: []), ranges: [0..<UInt64(raw.count)]), to: sink)
        #expect(result.workers == 1)
        #expect(same(sink.bytes, compressed ? referenceCompressed(raw) : referenceLiME(raw)))
        #expect(result.sha256 != nil)
    }

    @Test func noThreadAtAllIsAClearError() {
        var pipeline = RecordPipeline(compressed: true, threads: 2, hashing: true)
        pipeline.seams.startThread = { _ in .failure(ThreadStartError(errno: EAGAIN)) }
        let raw = memory(block, seed: 33)
        do {
            _ = try pipeline.run(
                MemoryBlockProducer(reader: FaultyMemory(raw, failingPages: []), ranges: [0..<UInt64(raw.count)]),
                to: MemorySink())
            Issue.record("must fail")
        } catch {
            guard case .noThreads = error else {
                Issue.record("expected noThreads, got \(error)")
                return
            }
            #expect(error.description.contains("cannot start a pipeline thread"))
        }
    }
}

/// Compressed records that Volatility 3 can open: incompressible blocks are joined with a neighbour.
struct VolatilitySafeRecordTests {
    func compress(_ raw: [UInt8], threads: Int) throws -> ([UInt8], PipelineResult) {
        let sink = MemorySink()
        let result = try RecordPipeline(compressed: true, threads: threads).run(
            MemoryBlockProducer(reader: FaultyMemory(raw, failingPages: []), ranges: [0..<UInt64(raw.count)]), to: sink)
        return (sink.bytes, result)
    }

    /// Walks records (header, stream length) of an image in memory, independently of ImageReader.
    func records(_ image: [UInt8]) -> [(start: UInt64, end: UInt64, stream: UInt64)] {
        var result: [(UInt64, UInt64, UInt64)] = []
        var offset = 0
        while offset < image.count {
            let start = image.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: offset + 8, as: UInt64.self) }
            let end = image.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: offset + 16, as: UInt64.self) }
            // The stream is followed by its length; find it by walking chunks.
            var chunk = offset + 32
            var decoded: UInt64 = 0
            while decoded < end - start + 1 {
                let type = image[chunk]
                let length = Int(image[chunk + 1]) | Int(image[chunk + 2]) << 8 | Int(image[chunk + 3]) << 16
                if type == 0x01 { decoded += UInt64(length - 4) }
                if type == 0x00 {
                    let body = Array(image[(chunk + 8)..<(chunk + 4 + length)])
                    decoded += UInt64((try? Snappy.decompress(body).count) ?? 0)
                }
                chunk += 4 + length
            }
            let stream = UInt64(chunk - offset - 32)
            result.append((start, end, stream))
            offset = chunk + 8
        }
        return result
    }

    @Test(arguments: [1, 2, 4])
    func anIncompressibleBlockIsJoinedWithItsNeighbour(threads: Int) throws {
        let raw = joined([memory(block, seed: 41), noise(block, seed: 42), memory(block, seed: 43), memory(5000, seed: 44)])
        let (image, result) = try compress(raw, threads: threads)
        let found = records(image)
        // Block 0 and the noise block are one record; the rest as AVML cuts them.
        #expect(found.map(\.start) == [0, 2 * UInt64(block), 3 * UInt64(block)])
        for record in found {
            let memory = record.end - record.start + 1
            #expect(record.stream + UInt64(RecordJoiner.margin(memory: Int(memory))) <= memory)
        }
        #expect(result.volatilityUnreadable.isEmpty)
        // Decoding gives the memory back.
        let directory = try TemporaryDirectory()
        let path = directory.write("joined.avml", image)
        let decoded = try decodedRecords(path)
        #expect(same(joined(decoded.map(\.1)), raw))
    }

    /// A compressed capture's 1 MiB blocks: a run of noise longer than the pipeline's slots
    /// (11 MiB against 5 or 6 slots) is still joined, its blocks copied out of their slots while
    /// held, and a block of noise that ends the range joins the block before it.
    @Test(arguments: [1, 2])
    func longRunsOfNoiseAreJoinedWithSmallBlocks(threads: Int) throws {
        let mebibyte = 1 << 20
        let raw = joined([
            memory(2 * mebibyte, seed: 51), noise(12 * mebibyte, seed: 52), memory(3 * mebibyte, seed: 53),
            noise(mebibyte, seed: 54),
        ])
        let sink = MemorySink()
        let pipeline = RecordPipeline(compressed: true, threads: threads, blockSize: mebibyte)
        #expect(pipeline.layout(readsInOrder: false).slots == threads + 4)
        let result = try pipeline.run(
            MemoryBlockProducer(
                reader: FaultyMemory(raw, failingPages: []), ranges: [0..<UInt64(raw.count)], blockSize: mebibyte),
            to: sink)
        let found = records(sink.bytes)
        for record in found {
            let memory = record.end - record.start + 1
            #expect(record.stream + UInt64(RecordJoiner.margin(memory: Int(memory))) <= memory)
        }
        #expect(result.volatilityUnreadable.isEmpty)
        // The first noise block joins the block before it (held as the spare, as AVML would
        // cut it); the eleven after it join the compressible block after them; the last joins
        // the block before it.
        let cuts = found.map { [$0.start >> 20, ($0.end + 1) >> 20] }
        #expect(cuts == [[0, 1], [1, 3], [3, 15], [15, 16], [16, 18]])
        let directory = try TemporaryDirectory()
        let decoded = try decodedRecords(directory.write("runs.avml", sink.bytes))
        #expect(same(joined(decoded.map(\.1)), raw))
    }

    /// A lone 1 MiB block of noise between free (all-zero) memory joins the zero block before
    /// it (held as the spare), which is then written; zero blocks no neighbour needs are skipped.
    @Test(arguments: [1, 2])
    func aLoneBlockOfNoiseBetweenZeroBlocksJoinsOne(threads: Int) throws {
        let mebibyte = 1 << 20
        let zero = [UInt8](repeating: 0, count: mebibyte)
        let raw = joined([zero, zero, noise(mebibyte, seed: 61), zero, zero, memory(mebibyte, seed: 62), zero])
        let sink = MemorySink()
        let result = try RecordPipeline(compressed: true, threads: threads, blockSize: mebibyte).run(
            MemoryBlockProducer(
                reader: FaultyMemory(raw, failingPages: []), ranges: [0..<UInt64(raw.count)], blockSize: mebibyte),
            to: sink)
        #expect(result.volatilityUnreadable.isEmpty)
        let cuts = records(sink.bytes).map { [$0.start >> 20, ($0.end + 1) >> 20] }
        #expect(cuts == [[1, 3], [5, 6]], "\(cuts)")
        #expect(result.statistics.zeroBlocksSkipped == 4)
        let directory = try TemporaryDirectory()
        for (header, data) in try decodedRecords(directory.write("lone.avml", sink.bytes)) {
            let start = Int(header.start)
            #expect(same(data, Array(raw[start..<start + data.count])))
        }
    }

    @Test func aWholeRangeOfNoiseIsWrittenAndReported() throws {
        let raw = noise(2 * block, seed: 45)
        let (image, result) = try compress(raw, threads: 2)
        #expect(result.volatilityUnreadable == [0..<UInt64(2 * block)])
        let found = records(image)
        #expect(found.count == 1 && found[0].stream > found[0].end - found[0].start)
    }
}
