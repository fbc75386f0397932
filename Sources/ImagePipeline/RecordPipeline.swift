import Dispatch
import Glibc
import ImageFormats
import Synchronization

/// Where the pipeline's blocks come from: a memory source, a raw file, an image.
///
/// A block is announced first and then read in order, whole or in pieces, so
/// LiME output can stream a block through a small cache-warm buffer.
public protocol BlockProducer: SendableMetatype {
    /// Moves to the next block of memory.
    /// - Returns: the block's address and length, or nil when there are no more.
    mutating func nextBlock() throws -> ProducedBlock?

    /// Reads the next `buffer.count` bytes of the current block, which start `offset` bytes into it.
    mutating func read(into buffer: UnsafeMutableRawBufferPointer, at offset: Int) throws
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

/// Turns blocks of memory into LiME or AVML records, strictly in block order,
/// so the output is the same whatever the thread count.
///
/// AVML records: one thread reads, `threads` threads check for zeros and
/// compress, one thread writes. Memory stays bounded by rings of reused slots:
/// block `k` reads into input `k % (threads + 1)`, is compressed into output
/// `k % (threads + 1)` and is tracked by job `k % (threads + 2)`; an input is
/// freed once compressed, an output and a job once written. Every wait is for
/// an earlier block, so the rings cannot deadlock, and the extra job lets the
/// reader run ahead while the writer writes. Output buffers are touched only as
/// far as the data compresses.
///
/// LiME records need no CPU work but the zero check, so each block streams
/// through one 1 MiB buffer that stays in cache between the read and the write.
public struct RecordPipeline: Sendable {
    /// AVML's block size: records hold at most 16 MiB, and zero-skipping works per block.
    public static let blockSize = 16 << 20
    /// LiME's streaming piece: small enough to stay in cache between read and write.
    static let streamPiece = 1 << 20

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
        guard compressed else { return try streamLiME(&producer, to: sink, progress: progress) }
        let skipZeroBlocks = skipZeroBlocks
        let claims = BlockClaims(producer)
        let outputs = (0...threads).map { _ in OutputSlot() }
        let jobs = (0...threads + 1).map { _ in Job() }
        let state = RunState(sink: sink)
        // Dedicated threads, not Dispatch's pool: they block on semaphores by
        // design, which starves a pool sized to the CPUs.
        let writer = startThread { state.writeAll(jobs: jobs, progress: progress) }
        let workers = (0..<threads).map { _ in
            startThread {
                compressBlocks(claims: claims, jobs: jobs, outputs: outputs, state: state, skipZeroBlocks: skipZeroBlocks)
            }
        }
        for thread in workers + [writer] { pthread_join(thread, nil) }
        let (final, producerError) = claims.finish()
        producer = final
        if let producerError { throw producerError }
        if let error = state.writerError { throw error }
        return state.statistics
    }
}

// Semaphores here start at 0 and are signalled once when "free" should start
// free: libdispatch traps when a semaphore is released below its initial value,
// as a free-semaphore is when the run ends while it is taken.

/// A worker: claims the next block, reads it into its own 16 MiB input, waits
/// for the block's job and output slots, compresses, and hands the record to the writer.
private func compressBlocks<Producer: BlockProducer>(
    claims: BlockClaims<Producer>, jobs: [Job], outputs: [OutputSlot], state: RunState, skipZeroBlocks: Bool
) {
    let input = UnsafeMutableRawBufferPointer.allocate(byteCount: RecordPipeline.blockSize, alignment: 4096)
    defer { input.deallocate() }
    while let (index, block) = claims.next(into: input, stop: state.failed.load(ordering: .acquiring)) {
        let job = jobs[index % jobs.count]
        job.free.wait()
        job.block = block
        guard let block else {
            job.ready.signal()  // the end of the run: the writer stops here
            return
        }
        let output = outputs[index % outputs.count]
        output.free.wait()
        job.output = output
        job.encode(UnsafeRawBufferPointer(rebasing: input[..<block.count]), skipZeroBlocks: skipZeroBlocks)
        job.ready.signal()
    }
}

/// Hands out blocks in order, one reader at a time: each worker reads the block
/// it claims, so reads stay sequential while other workers compress.
private final class BlockClaims<Producer: BlockProducer>: @unchecked Sendable {
    // Guarded by `lock` (a semaphore of one: the producer is not Sendable, so no Mutex).
    private let lock = DispatchSemaphore(value: 1)
    private var producer: Producer
    private var nextIndex = 0
    private var ended = false
    private var error: Error?

    init(_ producer: Producer) {
        self.producer = producer
    }

    /// Claims the next block and reads it into `input`.
    /// - Returns: its index and the block, a nil block for the end of the run, or nil once the end was claimed.
    func next(into input: UnsafeMutableRawBufferPointer, stop: Bool) -> (Int, ProducedBlock?)? {
        lock.wait()
        defer { lock.signal() }
        guard !ended else { return nil }
        let index = nextIndex
        nextIndex += 1
        do {
            if !stop {
                try Interruption.check()
                if let block = try producer.nextBlock() {
                    try producer.read(into: UnsafeMutableRawBufferPointer(rebasing: input[..<block.count]), at: 0)
                    return (index, block)
                }
            }
        } catch {
            self.error = error
        }
        ended = true
        return (index, nil)
    }

    /// The producer as the run left it, and the error that ended the run early, if any.
    func finish() -> (Producer, Error?) {
        lock.wait()
        defer { lock.signal() }
        return (producer, error)
    }
}

/// Runs `body` on a new thread; the caller joins it.
private func startThread(_ body: @escaping @Sendable () -> Void) -> pthread_t {
    final class Body {
        let run: @Sendable () -> Void
        init(_ run: @escaping @Sendable () -> Void) { self.run = run }
    }
    var thread = pthread_t()
    let context = Unmanaged.passRetained(Body(body)).toOpaque()
    let created = pthread_create(
        &thread, nil,
        { context in
            if let context { Unmanaged<Body>.fromOpaque(context).takeRetainedValue().run() }
            return nil
        }, context)
    // Running out of threads is not something a capture can recover from.
    precondition(created == 0, "cannot start a pipeline thread: error \(created)")
    return thread
}

/// A record's buffer: header, framed stream and trailer, and the encoder that fills it.
private final class OutputSlot: @unchecked Sendable {
    let buffer = UnsafeMutableRawBufferPointer.allocate(
        byteCount: RecordHeader.size + SnappyFraming.maxFramedLength(RecordPipeline.blockSize) + 8, alignment: 4096)
    let encoder = SnappyFrameEncoder()
    let free = DispatchSemaphore(value: 0)

    init() {
        free.signal()
    }

    deinit {
        buffer.deallocate()
    }
}

/// One block on its way to the sink: its record in an output slot, handed on
/// by `free` and `ready`.
private final class Job: @unchecked Sendable {
    let free = DispatchSemaphore(value: 0)
    let ready = DispatchSemaphore(value: 0)
    /// The block held, nil for the end of the run.
    var block: ProducedBlock?
    var output: OutputSlot?
    /// Bytes of the output to write; 0 when the block was all zeros.
    var outputCount = 0

    init() {
        free.signal()
    }

    /// Builds the record: header, framed stream, trailer.
    func encode(_ data: UnsafeRawBufferPointer, skipZeroBlocks: Bool) {
        guard let block, let output else { return }
        if skipZeroBlocks && isAllZero(data) {
            outputCount = 0
            return
        }
        RecordHeader(compressed: true, start: block.start, end: block.start + UInt64(block.count) - 1).encode(into: output.buffer)
        let framed = output.encoder.encode(
            data, into: UnsafeMutableRawBufferPointer(rebasing: output.buffer[RecordHeader.size...]))
        output.buffer.storeBytes(of: UInt64(framed).littleEndian, toByteOffset: RecordHeader.size + framed, as: UInt64.self)
        outputCount = RecordHeader.size + framed + 8
    }
}

/// The writer's side of a run. The sink is used only on the writer thread.
private final class RunState: @unchecked Sendable {
    let sink: ImageSink
    let failed = Atomic<Bool>(false)
    // Written by the writer thread, read after it is joined.
    var writerError: Error?
    var statistics = PipelineStatistics()

    init(sink: ImageSink) {
        self.sink = sink
    }

    func writeAll(jobs: [Job], progress: (@Sendable (UInt64) -> Void)?) {
        var index = 0
        var handled: UInt64 = 0
        while true {
            let job = jobs[index % jobs.count]
            job.ready.wait()
            guard let block = job.block else { break }
            if writerError == nil {
                do {
                    try write(job, block: block)
                } catch {
                    writerError = error
                    failed.store(true, ordering: .releasing)
                }
                handled += UInt64(block.count)
                progress?(handled)
            }
            if let output = job.output {
                job.output = nil
                output.free.signal()
            }
            job.free.signal()
            index += 1
        }
    }

    private func write(_ job: Job, block: ProducedBlock) throws {
        guard job.outputCount > 0 else {
            statistics.zeroBlocksSkipped += 1
            statistics.zeroBytesSkipped += UInt64(block.count)
            return
        }
        guard let output = job.output else { return }
        try sink.write(UnsafeRawBufferPointer(rebasing: output.buffer[..<job.outputCount]))
        statistics.bytesWritten += UInt64(job.outputCount)
        statistics.records += 1
        statistics.memoryBytes += UInt64(block.count)
    }
}

extension RecordPipeline {
    /// LiME: each block read in 1 MiB pieces and each piece written while still in
    /// cache (16 MiB round trips made the kernel's copies about 2.7 times slower
    /// here). Leading all-zero pieces are only counted; once a non-zero byte shows
    /// the block is kept, they are written from a zero buffer.
    func streamLiME<Producer: BlockProducer>(
        _ producer: inout Producer, to sink: ImageSink, progress: (@Sendable (UInt64) -> Void)?
    ) throws -> PipelineStatistics {
        let piece = UnsafeMutableRawBufferPointer.allocate(byteCount: Self.streamPiece, alignment: 4096)
        let zeros = UnsafeMutableRawBufferPointer.allocate(byteCount: Self.streamPiece, alignment: 4096)
        defer {
            piece.deallocate()
            zeros.deallocate()
        }
        zeros.initializeMemory(as: UInt8.self, repeating: 0)
        var statistics = PipelineStatistics()
        var handled: UInt64 = 0
        func emit(_ bytes: UnsafeRawBufferPointer) throws {
            try sink.write(bytes)
            statistics.bytesWritten += UInt64(bytes.count)
        }
        while let block = try producer.nextBlock() {
            let header = RecordHeader(compressed: false, start: block.start, end: block.start + UInt64(block.count) - 1).bytes
            var kept = !skipZeroBlocks
            if kept { try header.withUnsafeBytes(emit) }
            var offset = 0
            while offset < block.count {
                try Interruption.check()
                let chunk = UnsafeMutableRawBufferPointer(rebasing: piece[..<min(Self.streamPiece, block.count - offset)])
                try producer.read(into: chunk, at: offset)
                if !kept && !isAllZero(UnsafeRawBufferPointer(chunk)) {
                    kept = true
                    try header.withUnsafeBytes(emit)
                    var leadingZeros = offset
                    while leadingZeros > 0 {
                        let count = min(leadingZeros, zeros.count)
                        try emit(UnsafeRawBufferPointer(rebasing: zeros[..<count]))
                        leadingZeros -= count
                    }
                }
                if kept { try emit(UnsafeRawBufferPointer(chunk)) }
                offset += chunk.count
            }
            if kept {
                statistics.records += 1
                statistics.memoryBytes += UInt64(block.count)
            } else {
                statistics.zeroBlocksSkipped += 1
                statistics.zeroBytesSkipped += UInt64(block.count)
            }
            handled += UInt64(block.count)
            progress?(handled)
        }
        return statistics
    }
}
