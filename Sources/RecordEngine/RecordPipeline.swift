import Glibc
import ImageFormats

/// Where the pipeline's blocks come from: a memory source, a raw file, an image.
///
/// Blocks are announced in output order. A producer whose bytes can be read by
/// address from any thread (memory, raw files) offers a `ConcurrentBlockReader`,
/// so workers read their blocks in parallel, in cache-sized pieces; one whose
/// bytes come in order (an image being decoded) is read right after `nextBlock`.
public protocol BlockProducer: SendableMetatype {
    /// Moves to the next block; called by one thread at a time, in order.
    /// - Returns: the block's address and length, or nil when there are no more.
    mutating func nextBlock() throws -> ProducedBlock?

    /// How the blocks' bytes are read.
    var reading: BlockReading { get }

    /// Reads the next `buffer.count` bytes of the current block, `offset` bytes
    /// into it (`.inOrder` producers only).
    mutating func read(into buffer: UnsafeMutableRawBufferPointer, at offset: Int) throws
}

/// How a producer's bytes are read.
public enum BlockReading: Sendable {
    /// Right after `nextBlock`, with `read(into:at:)`, one thread at a time.
    case inOrder
    /// By address, from any thread, with this reader.
    case concurrent(any ConcurrentBlockReader)
}

/// Reads any part of any block, from any thread.
public protocol ConcurrentBlockReader: Sendable {
    /// Fills `buffer` with the bytes of `block` that start `offset` bytes into it.
    /// - Returns: address ranges that could not be read and were zero-filled.
    func read(_ block: ProducedBlock, at offset: Int, into buffer: UnsafeMutableRawBufferPointer) throws -> [Range<UInt64>]
}

/// A block a producer placed in the pipeline's buffer.
public struct ProducedBlock: Sendable, Equatable {
    /// Physical address of the first byte.
    public var start: UInt64
    /// Bytes in the block, 1 to the pipeline's `blockSize`.
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

/// Seconds each stage spent working, summed over its threads: where a capture's time goes.
public struct StageTimings: Sendable, Equatable, Codable {
    public var read = 0.0
    public var zeroCheck = 0.0
    public var compress = 0.0
    public var hash = 0.0
    public var write = 0.0

    public init() {}

    enum CodingKeys: String, CodingKey {
        case read, compress, hash, write
        case zeroCheck = "zero_check"
    }

    static func + (left: StageTimings, right: StageTimings) -> StageTimings {
        var sum = left
        sum.read += right.read
        sum.zeroCheck += right.zeroCheck
        sum.compress += right.compress
        sum.hash += right.hash
        sum.write += right.write
        return sum
    }
}

/// Everything a run produced besides the bytes.
public struct PipelineResult: Sendable {
    public var statistics = PipelineStatistics()
    /// The SHA-256 (hex) of every byte handed to the sink, when hashing was asked for.
    public var sha256: String?
    /// Pages that could not be read and were written as zeros, merged, in address order.
    public var unreadable: [Range<UInt64>] = []
    /// Compressed records written although Volatility 3 cannot open them: memory
    /// that does not compress, with no neighbour in reach to absorb it.
    public var volatilityUnreadable: [Range<UInt64>] = []
    public var timings = StageTimings()
    /// Worker threads that ran.
    public var workers = 0

    public init() {}
}

/// Why a run stopped, by side: the memory source (or the image being read), or the destination.
public enum PipelineFailure: Error, CustomStringConvertible {
    case source(any Error)
    case destination(any Error)
    case interrupted(Interrupted)
    /// Not even one worker thread could be started.
    case noThreads(errno: Int32)

    public var description: String {
        switch self {
        case .source(let error), .destination(let error): return String(describing: error)
        case .interrupted(let error): return error.description
        case .noThreads(let errno):
            return
                "cannot start a pipeline thread: \(String(cString: strerror(errno))) (too many processes or too little memory?)"
        }
    }
}

/// How many worker threads and buffers a run uses, from its thread count and memory budget.
public struct PipelineLayout: Sendable, Equatable {
    public var workers: Int
    /// Buffers that hold units between a worker, the writer and the hasher.
    public var slots: Int
    public var slotBytes: Int
    /// Each worker's own input buffer (compressed output only).
    public var workerBytes: Int
    /// How much compressed memory the writer may hold back for joining beyond what the slots
    /// hold, as copies (`Writer.spill`): the budget's rest, up to 96 MiB (compressed output only).
    public var joinBytes = 0

    /// Bytes of buffers the run allocates.
    public var totalBytes: Int { workers * workerBytes + slots * slotBytes }
}

/// Turns blocks of memory into LiME or AVML records, strictly in block order,
/// so the output is the same whatever the thread count.
///
/// AVML records: each worker claims a block and, under the same lock, the
/// output slot that the block's index owns (so no scheduling can give a later
/// block an earlier one's slot), reads the block in 256 KiB pieces and
/// compresses each piece while it is in cache. LiME records: workers claim
/// 1 MiB pieces into slots, read them and check them for zeros. The calling
/// thread writes units in index order (cutting compressed records so that
/// Volatility can open each one, see `RecordJoiner`), and a hasher thread
/// hashes what was written, one unit behind, before the slot is reused.
///
///     claim (index → slot, in order) ─▶ workers: read, zero check, compress
///         ─▶ writer (this thread): records → sink ─▶ hasher: SHA-256 ─▶ slot free
///
/// Memory is the layout's buffers, fixed at the start from `memoryBudget`; more
/// threads than fit are not started.
public struct RecordPipeline: Sendable {
    /// AVML's block size: records are cut and zero-skipped per 16 MiB block.
    public static let blockSize = 16 << 20
    /// Compressed captures cut records every 1 MiB instead. The writer holds compressed blocks
    /// back for joining (`RecordJoiner`) in slots that each fit a whole block's stream, and
    /// over a capture every slot fills to its size: with 16 MiB blocks the slots alone changed
    /// about 130 MiB of a 512 MiB guest's memory, with 1 MiB blocks about 8. Records of any
    /// length are AVML's format: Volatility 3's and AVML's readers take them.
    public static let compressedCaptureBlockSize = 1 << 20
    /// Default for all buffers of a run: a capture must not crowd the host it examines.
    public static let defaultMemoryBudget = 256 << 20
    /// The default thread count: the CPUs this process may use, at most 8
    /// (compression beyond that outruns any disk or network).
    public static var defaultThreads: Int { min(availableProcessors(), 8) }
    /// What workers read and hand on at a time: small enough to stay in cache.
    static let piece = 1 << 20
    /// What a compressing worker reads at a time into its own buffer, one per worker: a
    /// quarter of `piece`, since every byte of those buffers is the examined host's memory
    /// overwritten (1.5 MiB less with two workers), for four reads where there was one.
    static let compressedPiece = 256 << 10
    /// The most memory that does not compress, in a row, the writer holds back to find a
    /// neighbour that absorbs it: what six 16 MiB blocks gave before blocks could be 1 MiB.
    static let joinBytes = 96 << 20
    /// A LiME slot: room for a record header, then one piece.
    static let limeHeaderRoom = 64

    public var compressed: Bool
    /// The largest block the producer gives (`blockSize` unless a capture chose smaller):
    /// compressed slots are sized to hold one block's stream.
    public var blockSize: Int
    public var threads: Int
    public var memoryBudget: Int
    /// Whether to compute the SHA-256 of the output (captures do, conversions need not).
    public var hashing: Bool
    public var skipZeroBlocks: Bool
    /// Test seams: a stall after a claim, a thread starter that fails.
    var seams = PipelineSeams()

    public init(
        compressed: Bool, threads: Int, memoryBudget: Int = RecordPipeline.defaultMemoryBudget, hashing: Bool = false,
        skipZeroBlocks: Bool = true, blockSize: Int = RecordPipeline.blockSize
    ) {
        self.compressed = compressed
        self.blockSize = max(1, blockSize)
        self.threads = max(1, threads)
        self.memoryBudget = memoryBudget
        self.hashing = hashing
        self.skipZeroBlocks = skipZeroBlocks
    }

    /// The smallest budget a run can have: one worker and the slots it needs.
    public static func minimumBudget(compressed: Bool) -> Int {
        RecordPipeline(compressed: compressed, threads: 1, memoryBudget: 0).layout(readsInOrder: true).totalBytes
    }

    /// Workers and slots for this run: as many of the requested threads as the
    /// budget holds (at least one), and for compressed output up to two extra
    /// slots, which let the writer hold incompressible runs back for joining (longer
    /// runs are copied out, `Writer.spill`). Every slot fills to its size over a capture:
    /// four extra changed about 2.5 MiB more of the 6.1 guest's memory than none (12.8 MiB
    /// beyond idle against 15.4, `--no-symbols --compress`, two runs each), and two were as
    /// fast as four on the host (a 1 GiB raw-file capture, median of 5). LiME
    /// runs have four slots beyond the workers' (the writer's, the hasher's, two
    /// ahead): twice the workers' plus four was no faster (a 1 GiB raw-file capture
    /// on the host, median 1.19 s of 5 either way; 5.8 s in the 6.1 guest) and held
    /// 2 MiB more of the examined host's memory.
    public func layout(readsInOrder: Bool) -> PipelineLayout {
        if compressed {
            // A slot: header, the largest framed stream of a block, trailer.
            let slot = RecordHeader.size + SnappyFraming.maxFramedLength(blockSize) + 8
            let input = readsInOrder ? blockSize : min(Self.compressedPiece, blockSize)
            var workers = threads
            while workers > 1 && workers * input + (workers + 2) * slot > memoryBudget { workers -= 1 }
            let spare = memoryBudget - workers * input - (workers + 2) * slot
            let extra = max(0, min(2, spare / slot))
            var layout = PipelineLayout(workers: workers, slots: workers + 2 + extra, slotBytes: slot, workerBytes: input)
            layout.joinBytes = max(0, min(Self.joinBytes, memoryBudget - layout.totalBytes))
            return layout
        }
        let slot = Self.limeHeaderRoom + Self.piece
        var workers = threads
        while workers > 1 && (workers + 4) * slot > memoryBudget { workers -= 1 }
        return PipelineLayout(workers: workers, slots: workers + 4, slotBytes: slot, workerBytes: 0)
    }

    /// Runs `producer` to its end, writing records to `sink`.
    ///
    /// - Parameters:
    ///   - producer: the blocks, in output order.
    ///   - sink: where records go; written only on this thread. It is neither
    ///     finished nor aborted here: that is the caller's lifecycle.
    ///   - progress: called on this thread with the memory bytes handled so far.
    /// - Returns: counts, hash, unreadable pages, and where the time went.
    /// - Throws: `PipelineFailure` naming the side that failed; once anything
    ///   fails, no further byte is written.
    public func run<Producer: BlockProducer>(
        _ producer: consuming Producer, to sink: ImageSink, progress: ((UInt64) -> Void)? = nil
    ) throws(PipelineFailure) -> PipelineResult {
        let reading = producer.reading
        // The run owns the producer from here (`consuming`), and uses it only under
        // the claim lock: no caller can reach it while worker threads do.
        nonisolated(unsafe) let owned = producer
        var readsInOrder = false
        if case .inOrder = reading { readsInOrder = true }
        let layout = layout(readsInOrder: readsInOrder)
        let stages = PipelineStages(
            layout: layout, compressed: compressed, skipZeroBlocks: skipZeroBlocks, reading: reading, seams: seams,
            claims: Claims(owned, unitSize: compressed ? nil : Self.piece))
        return try stages.run(sink: sink, hashing: hashing, progress: progress)
    }
}

/// Where tests reach into a run.
struct PipelineSeams: Sendable {
    /// Called by a worker right after it claimed unit `index`, before it reads.
    var afterClaim: (@Sendable (_ index: Int) -> Void)?
    /// Starts a thread; tests make it fail.
    var startThread: @Sendable (@escaping @Sendable () -> Void) -> Result<pthread_t, ThreadStartError> = startThread(_:)
}

/// `pthread_create` failed.
struct ThreadStartError: Error {
    var errno: Int32
}

/// Runs `body` on a new thread, which the caller joins.
func startThread(_ body: @escaping @Sendable () -> Void) -> Result<pthread_t, ThreadStartError> {
    final class Body {
        let run: @Sendable () -> Void
        init(_ run: @escaping @Sendable () -> Void) { self.run = run }
    }
    var thread = pthread_t()
    let context = Unmanaged.passRetained(Body(body))
    let created = pthread_create(
        &thread, nil,
        { context in
            if let context { Unmanaged<Body>.fromOpaque(context).takeRetainedValue().run() }
            return nil
        }, context.toOpaque())
    guard created == 0 else {
        context.release()
        return .failure(ThreadStartError(errno: created))
    }
    return .success(thread)
}

/// Seconds on the monotonic clock, for timings and rates.
public func monotonicSeconds() -> Double {
    var now = timespec()
    clock_gettime(CLOCK_MONOTONIC, &now)
    return Double(now.tv_sec) + Double(now.tv_nsec) / 1e9
}
