import Dispatch
import ImageFormats
import Synchronization

/// Where the pipeline's blocks come from: a memory source, a raw file, a LiME image.
public protocol BlockProducer {
    /// Fills the start of `buffer` (16 MiB) with the next block of memory.
    /// - Returns: the block's address and length, or nil when there are no more.
    mutating func nextBlock(into buffer: UnsafeMutableRawBufferPointer) throws -> ProducedBlock?
}

/// A block a producer placed in the pipeline's buffer.
public struct ProducedBlock: Sendable, Equatable {
    /// Physical address of the first byte.
    public var start: UInt64
    /// Bytes in the block, 1 to `RecordPipeline.blockSize`.
    public var count: Int

    public init(start: UInt64, count: Int) {
        self.start = start
        self.count = count
    }
}

/// What a pipeline run wrote.
public struct PipelineStatistics: Sendable, Equatable {
    /// Records written.
    public var records = 0
    /// Bytes of memory in the records written.
    public var memoryBytes: UInt64 = 0
    /// All-zero blocks left out.
    public var zeroBlocksSkipped = 0
    /// Bytes of memory in the blocks left out.
    public var zeroBytesSkipped: UInt64 = 0
    /// Bytes handed to the sink.
    public var bytesWritten: UInt64 = 0

    public init() {}
}

/// Turns blocks of memory into LiME or AVML records: one thread reads, `threads`
/// threads check for zeros and compress, and one thread writes records strictly
/// in block order, so the output is the same whatever the thread count.
///
/// Memory stays bounded: `threads + 2` slots, each a 16 MiB input buffer and,
/// for compressed output, a framed-stream buffer that is only touched as far
/// as the data compresses.
public struct RecordPipeline: Sendable {
    /// AVML's block size: records hold at most 16 MiB, and zero-skipping works per block.
    public static let blockSize = 16 << 20

    public var compressed: Bool
    public var threads: Int
    public var skipZeroBlocks: Bool

    public init(compressed: Bool, threads: Int, skipZeroBlocks: Bool = true) {
        self.compressed = compressed
        self.threads = max(1, threads)
        self.skipZeroBlocks = skipZeroBlocks
    }

    /// Runs `producer` to its end, writing records to `sink`.
    ///
    /// - Parameters:
    ///   - producer: the blocks, in output order.
    ///   - sink: where records go.
    ///   - progress: called on the writer thread with the memory bytes handled so far.
    /// - Returns: counts of what was written and skipped.
    /// - Throws: the producer's error, else the sink's; on either, no further record is written.
    public func run<Producer: BlockProducer>(
        _ producer: inout Producer,
        to sink: ImageSink,
        progress: (@Sendable (UInt64) -> Void)? = nil
    ) throws -> PipelineStatistics {
        let compressed = compressed
        let skipZeroBlocks = skipZeroBlocks
        let slots = (0..<threads + 2).map { _ in Slot(compressed: compressed) }
        let state = RunState(sink: sink)
        let cpus = DispatchSemaphore(value: threads)

        DispatchQueue.global().async {
            state.writeAll(slots: slots, compressed: compressed, progress: progress)
        }

        var producerError: Error?
        var index = 0
        while true {
            let slot = slots[index % slots.count]
            slot.free.wait()
            if state.failed.load(ordering: .acquiring) {
                slot.block = nil
                slot.ready.signal()
                break
            }
            do {
                slot.block = try producer.nextBlock(into: slot.input)
            } catch {
                producerError = error
                slot.block = nil
            }
            guard slot.block != nil else {
                slot.ready.signal()
                break
            }
            DispatchQueue.global().async {
                cpus.wait()
                slot.encode(skipZeroBlocks: skipZeroBlocks)
                cpus.signal()
                slot.ready.signal()
            }
            index += 1
        }
        state.done.wait()
        if let producerError { throw producerError }
        if let error = state.writerError { throw error }
        return state.statistics
    }
}

/// One block's buffers, handed between reader, encoder and writer by semaphores:
/// whoever last waited on `free` or `ready` owns the slot.
private final class Slot: @unchecked Sendable {
    let input: UnsafeMutableRawBufferPointer
    let output: UnsafeMutableRawBufferPointer
    let encoder: SnappyFrameEncoder?
    // Both start at 0: libdispatch traps when a semaphore is freed below its
    // initial value, which `free` is when the run ends on this slot.
    let free = DispatchSemaphore(value: 0)
    let ready = DispatchSemaphore(value: 0)
    /// The block held, nil for the end of the run.
    var block: ProducedBlock?
    /// Bytes of `output` to write; 0 when the block was all zeros.
    var outputCount = 0

    init(compressed: Bool) {
        input = .allocate(byteCount: RecordPipeline.blockSize, alignment: 4096)
        let outputSize = RecordHeader.size + (compressed ? SnappyFraming.maxFramedLength(RecordPipeline.blockSize) + 8 : 0)
        output = .allocate(byteCount: outputSize, alignment: 4096)
        encoder = compressed ? SnappyFrameEncoder() : nil
        free.signal()
    }

    deinit {
        input.deallocate()
        output.deallocate()
    }

    /// Builds the record's header and, for AVML, its framed stream and trailer.
    func encode(skipZeroBlocks: Bool) {
        guard let block else { return }
        let data = UnsafeRawBufferPointer(rebasing: input[..<block.count])
        if skipZeroBlocks && isAllZero(data) {
            outputCount = 0
            return
        }
        let header = RecordHeader(compressed: encoder != nil, start: block.start, end: block.start + UInt64(block.count) - 1)
        header.encode(into: output)
        guard let encoder else {
            outputCount = RecordHeader.size
            return
        }
        let framed = encoder.encode(data, into: UnsafeMutableRawBufferPointer(rebasing: output[RecordHeader.size...]))
        output.storeBytes(of: UInt64(framed).littleEndian, toByteOffset: RecordHeader.size + framed, as: UInt64.self)
        outputCount = RecordHeader.size + framed + 8
    }
}

/// The writer's side of a run. The sink is used only on the writer thread.
private final class RunState: @unchecked Sendable {
    let sink: ImageSink
    let failed = Atomic<Bool>(false)
    let done = DispatchSemaphore(value: 0)
    // Written by the writer thread before it signals `done`, read after.
    var writerError: Error?
    var statistics = PipelineStatistics()

    init(sink: ImageSink) {
        self.sink = sink
    }

    func writeAll(slots: [Slot], compressed: Bool, progress: (@Sendable (UInt64) -> Void)?) {
        var index = 0
        var handled: UInt64 = 0
        while true {
            let slot = slots[index % slots.count]
            slot.ready.wait()
            guard let block = slot.block else { break }
            if writerError == nil {
                do {
                    try write(slot, block: block, compressed: compressed)
                } catch {
                    writerError = error
                    failed.store(true, ordering: .releasing)
                }
                handled += UInt64(block.count)
                progress?(handled)
            }
            slot.free.signal()
            index += 1
        }
        done.signal()
    }

    private func write(_ slot: Slot, block: ProducedBlock, compressed: Bool) throws {
        guard slot.outputCount > 0 else {
            statistics.zeroBlocksSkipped += 1
            statistics.zeroBytesSkipped += UInt64(block.count)
            return
        }
        try sink.write(UnsafeRawBufferPointer(rebasing: slot.output[..<slot.outputCount]))
        statistics.bytesWritten += UInt64(slot.outputCount)
        if !compressed {
            try sink.write(UnsafeRawBufferPointer(rebasing: slot.input[..<block.count]))
            statistics.bytesWritten += UInt64(block.count)
        }
        statistics.records += 1
        statistics.memoryBytes += UInt64(block.count)
    }
}
