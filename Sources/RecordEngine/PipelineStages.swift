import Dispatch
import Glibc
import Hashing
import ImageFormats
import Synchronization

// The stages of one `RecordPipeline` run and how a unit of work moves between them.
//
// A unit is a whole block (compressed output) or a 1 MiB piece of one (LiME).
// Unit `k` lives in slot `k % slots` from its claim until it is written and hashed:
//
//   claim     under the claim lock: take index k, wait until slot k % n is free,
//             learn the block from the producer (and, for in-order producers, read it)
//   worker    read (concurrent producers), check for zeros, compress; mark ready
//   writer    wait for slot k to be ready; cut records, write them to the sink
//   hasher    hash what the writer wrote, then free the slots it used
//
// Claims happen one at a time and in index order, and the slot is taken inside
// the claim, so the unit that waits for a slot is always the earliest one: a
// stalled worker keeps its place. A slot holds one unit at a time, so its
// `ready` signal always belongs to the unit the writer waits for. The writer
// holds back units for joining, the latest ones in a row, in at most all slots but
// one (older ones it copies out, `Writer.spill`): unit k + 1 needs the slot of unit
// k + 1 - n, older than any it keeps in a slot, so the writer never waits for a slot
// it holds itself. Workers claiming further ahead wait until the run is joined.

/// One slot's memory and its two hand-off signals.
///
/// Ownership moves with the signals, never shared: the claimer owns the slot
/// from `waitFree` until `markReady`; the writer from `waitReady` until it
/// hands the slot's bytes to the hasher (or frees it); the hasher until `free`.
/// That is why this class may be `@unchecked Sendable`: no two threads use its
/// memory or `unit` at the same time, and each hand-off is a semaphore, which
/// orders the memory accesses on both sides.
final class Slot: @unchecked Sendable {
    let memory: UnsafeMutableRawBufferPointer
    var unit = Unit()
    // Both start at 0 and `free` is signalled once at start: libdispatch traps
    // when a semaphore is disposed of below its initial value.
    private let freeSignal = DispatchSemaphore(value: 0)
    private let readySignal = DispatchSemaphore(value: 0)

    init(bytes: Int) {
        memory = .allocate(byteCount: bytes, alignment: 4096)
        freeSignal.signal()
    }

    deinit {
        memory.deallocate()
    }

    func waitFree() { freeSignal.wait() }
    func free() { freeSignal.signal() }
    func markReady() { readySignal.signal() }
    func waitReady() { readySignal.wait() }
}

/// What a slot holds.
struct Unit {
    var index = 0
    /// The block the unit belongs to.
    var block = ProducedBlock(start: 0, count: 0)
    /// Where the unit starts in its block, and its bytes (a whole block for compressed output).
    var offset = 0
    var count = 0
    /// The end of the run: no more units after this one.
    var isEnd = true
    /// Why the run ended early, or why this unit could not be made.
    var failure: PipelineFailure?
    var allZero = false
    /// Compressed: the framed stream's length, identifier included (header at 0, stream at 32).
    var stream = 0
    var unreadable: [Range<UInt64>] = []
    /// Seconds the claim spent reading an in-order producer.
    var claimReadSeconds = 0.0

    var isLastPiece: Bool { offset + count == block.count }
}

/// A worker's own input buffer, which in-order producers are read into during the claim.
/// Only its worker uses it (the claim runs on the worker's thread). `@unchecked Sendable`
/// because the claim reads into it inside the claim lock's closure, which a plain local
/// buffer pointer may not enter (the compiler cannot see that no other thread holds it).
final class WorkerInput: @unchecked Sendable {
    let memory: UnsafeMutableRawBufferPointer

    init(bytes: Int) {
        memory = .allocate(byteCount: max(bytes, 1), alignment: 4096)
    }

    deinit {
        memory.deallocate()
    }
}

/// Hands out units in index order, each with the slot its index owns.
final class Claims<Producer: BlockProducer>: Sendable {
    fileprivate struct State {
        var producer: Producer
        var index = 0
        var current: ProducedBlock?
        var offset = 0
        var ended = false
    }

    private let state: Mutex<State>
    /// Set by the writer once the run failed: the next claim ends the run.
    let stop = Atomic<Bool>(false)
    /// LiME pieces; nil for whole blocks.
    private let unitSize: Int?

    init(_ producer: consuming sending Producer, unitSize: Int?) {
        state = Mutex(State(producer: producer))
        self.unitSize = unitSize
    }

    /// Claims the next unit into its slot.
    ///
    /// - Parameters:
    ///   - slots: the ring; unit k takes slot k % count, waiting here until it is free.
    ///   - input: where an in-order producer's block is read (compressed output); nil
    ///     reads LiME pieces into the slot, or leaves reading to the worker.
    ///   - readsInOrder: whether the producer must be read here.
    /// - Returns: the slot, its `unit` filled in (an end unit closes the run); nil once the run has ended.
    func next(slots: [Slot], input: WorkerInput?, readsInOrder: Bool) -> Slot? {
        let unitSize = unitSize
        return state.withLock { state -> Slot? in
            guard !state.ended else { return nil }
            let index = state.index
            state.index += 1
            let slot = slots[index % slots.count]
            slot.waitFree()
            var unit = Unit()
            unit.index = index
            do {
                if !stop.load(ordering: .acquiring) {
                    try Interruption.check()
                    if let (block, offset, count) = try state.advance(unitSize: unitSize) {
                        unit.block = block
                        unit.offset = offset
                        unit.count = count
                        unit.isEnd = false
                        if readsInOrder {
                            let started = monotonicSeconds()
                            let target =
                                input?.memory
                                ?? UnsafeMutableRawBufferPointer(rebasing: slot.memory[RecordPipeline.limeHeaderRoom...])
                            try state.producer.read(into: UnsafeMutableRawBufferPointer(rebasing: target[..<count]), at: offset)
                            unit.claimReadSeconds = monotonicSeconds() - started
                        }
                    }
                }
            } catch let error as Interrupted {
                unit.isEnd = true
                unit.failure = .interrupted(error)
            } catch {
                unit.isEnd = true
                unit.failure = .source(error)
            }
            if unit.isEnd { state.ended = true }
            slot.unit = unit
            return slot
        }
    }
}

extension Claims.State {
    /// The next unit's block, offset and length.
    fileprivate mutating func advance(unitSize: Int?) throws -> (ProducedBlock, Int, Int)? {
        guard let unitSize else {
            guard let block = try producer.nextBlock() else { return nil }
            return (block, 0, block.count)
        }
        if current == nil || offset == current?.count {
            current = try producer.nextBlock()
            offset = 0
        }
        guard let block = current else { return nil }
        let count = min(unitSize, block.count - offset)
        defer { offset += count }
        return (block, offset, count)
    }
}

/// Hashes what the writer wrote, in order, on its own thread, and frees the
/// slots once their bytes are hashed. Without a thread (none could be started)
/// it hashes on the writer's.
final class Hasher: Sendable {
    /// Bytes the writer wrote: parts of slots, or of the shared zero buffer.
    struct Emission: Sendable {
        var parts: [Part]
        /// Slots to free once hashed.
        var frees: [Int]
    }

    struct Part: Sendable {
        enum Source: Sendable {
            case slot(Int)
            case zeros
            /// A held block's bytes, copied out of its slot (see `Writer.spill`).
            case copy([UInt8])
        }

        var source: Source
        var range: Range<Int>
    }

    private let slots: [Slot]
    private let zeros: Zeros
    private let enabled: Bool
    private let queue = Mutex<[Emission]>([])
    private let available = DispatchSemaphore(value: 0)
    private let state = Mutex<(sha: SHA256, seconds: Double)>((SHA256(), 0))
    private let onThread = Atomic<Bool>(false)

    init(slots: [Slot], zeros: Zeros, enabled: Bool) {
        self.slots = slots
        self.zeros = zeros
        self.enabled = enabled
    }

    func withBytes<Result>(_ part: Part, _ body: (UnsafeRawBufferPointer) throws -> Result) rethrows -> Result {
        switch part.source {
        case .slot(let slot): return try body(UnsafeRawBufferPointer(rebasing: slots[slot].memory[part.range]))
        case .zeros: return try body(UnsafeRawBufferPointer(rebasing: zeros.buffer[part.range]))
        case .copy(let bytes): return try bytes.withUnsafeBytes { try body(UnsafeRawBufferPointer(rebasing: $0[part.range])) }
        }
    }

    /// Runs the hashing loop on `starter`'s thread; false if none could be started.
    func start(with starter: PipelineSeams) -> pthread_t? {
        guard enabled, case .success(let thread) = starter.startThread({ self.loop() }) else { return nil }
        onThread.store(true, ordering: .releasing)
        return thread
    }

    /// Takes bytes that were written; their slots are freed once hashed.
    func push(_ emission: Emission) {
        guard enabled else {
            for slot in emission.frees { slots[slot].free() }
            return
        }
        guard onThread.load(ordering: .acquiring) else {
            hash(emission)
            return
        }
        queue.withLock { $0.append(emission) }
        available.signal()
    }

    /// No more emissions; the caller then joins the thread.
    func finish() {
        guard onThread.load(ordering: .acquiring) else { return }
        available.signal()  // the one signal without an emission: the loop ends
    }

    /// The digest of everything pushed, and the seconds spent hashing.
    func result() -> (sha256: String?, seconds: Double) {
        guard enabled else { return (nil, 0) }
        return state.withLock { ($0.sha.finalize().description, $0.seconds) }
    }

    private func loop() {
        while true {
            available.wait()
            let next = queue.withLock { queue -> Emission? in queue.isEmpty ? nil : queue.removeFirst() }
            guard let next else { return }
            hash(next)
        }
    }

    private func hash(_ emission: Emission) {
        let started = monotonicSeconds()
        state.withLock { state in
            for part in emission.parts { withBytes(part) { state.sha.update(bufferPointer: $0) } }
            state.seconds += monotonicSeconds() - started
        }
        for slot in emission.frees { slots[slot].free() }
    }
}

/// A zero-filled buffer shared by the writer and the hasher, and the encoded
/// chunk that 64 KiB of zeros compress to: blocks start with zeros often
/// (free memory), and those need no compression pass. One chunk long: LiME's
/// leading zeros go out in as many parts as they need, and every page filled
/// here is a page of the examined host's memory overwritten.
final class Zeros: @unchecked Sendable {
    /// Never written after `init`, so every thread may read it.
    let buffer: UnsafeMutableRawBufferPointer
    let chunk: [UInt8]

    init() {
        buffer = .allocate(byteCount: SnappyFraming.maxChunkData, alignment: 4096)
        buffer.initializeMemory(as: UInt8.self, repeating: 0)
        var scratch = [UInt8](repeating: 0, count: SnappyFraming.maxFramedLength(SnappyFraming.maxChunkData))
        let source = UnsafeRawBufferPointer(rebasing: buffer[..<SnappyFraming.maxChunkData])
        let end = scratch.withUnsafeMutableBytes { SnappyFrameEncoder().appendChunks(source, into: $0, at: 0) }
        chunk = Array(scratch[..<end])
    }

    deinit {
        buffer.deallocate()
    }

    /// Appends the chunks of `count` zero bytes to a stream, as `appendChunks` would encode them.
    func appendChunks(count: Int, into stream: UnsafeMutableRawBufferPointer, at offset: Int, encoder: SnappyFrameEncoder) -> Int
    {
        var op = offset
        for _ in 0..<count / SnappyFraming.maxChunkData {
            chunk.withUnsafeBytes { UnsafeMutableRawBufferPointer(rebasing: stream[op..<op + $0.count]).copyMemory(from: $0) }
            op += chunk.count
        }
        let rest = count % SnappyFraming.maxChunkData
        guard rest > 0 else { return op }
        return encoder.appendChunks(UnsafeRawBufferPointer(rebasing: buffer[..<rest]), into: stream, at: op)
    }
}

/// One run's stages, threads and buffers.
struct PipelineStages<Producer: BlockProducer> {
    let layout: PipelineLayout
    let compressed: Bool
    let skipZeroBlocks: Bool
    let reading: BlockReading
    let seams: PipelineSeams
    let claims: Claims<Producer>

    func run(sink: ImageSink, hashing: Bool, progress: ((UInt64) -> Void)?) throws(PipelineFailure) -> PipelineResult {
        let slots = (0..<layout.slots).map { _ in Slot(bytes: layout.slotBytes) }
        let zeros = Zeros()
        let hasher = Hasher(slots: slots, zeros: zeros, enabled: hashing)
        let timings = SharedTimings()
        let hasherThread = hasher.start(with: seams)
        var threads: [pthread_t] = []
        var lastFailure: Int32 = EAGAIN
        for _ in 0..<layout.workers {
            let worker = Worker(
                claims: claims, slots: slots, zeros: zeros, reading: reading, compressed: compressed,
                skipZeroBlocks: skipZeroBlocks, inputBytes: layout.workerBytes, seams: seams, timings: timings)
            switch seams.startThread({ worker.run() }) {
            case .success(let thread): threads.append(thread)
            case .failure(let error): lastFailure = error.errno
            }
        }
        var result = PipelineResult()
        var failure: PipelineFailure?
        if threads.isEmpty {
            // Nothing was claimed: end the run without a writer.
            failure = .noThreads(errno: lastFailure)
        } else {
            var writer = Writer(
                slots: slots, zeros: zeros, hasher: hasher, sink: sink, compressed: compressed, skipZeroBlocks: skipZeroBlocks,
                joinBytes: layout.joinBytes)
            failure = writer.run(stopClaims: { claims.stop.store(true, ordering: .releasing) }, progress: progress)
            result.statistics = writer.statistics
            result.unreadable = writer.unreadable
            result.volatilityUnreadable = writer.volatilityUnreadable
            var written = StageTimings()
            written.write = writer.writeSeconds
            timings.add(written)
        }
        hasher.finish()
        if let hasherThread { pthread_join(hasherThread, nil) }
        for thread in threads { pthread_join(thread, nil) }
        if let failure { throw failure }
        let (sha256, hashSeconds) = hasher.result()
        result.sha256 = sha256
        result.timings = timings.total
        result.timings.hash = hashSeconds
        result.workers = threads.count
        return result
    }
}

/// A worker thread: claims units and fills them.
struct Worker<Producer: BlockProducer>: Sendable {
    let claims: Claims<Producer>
    let slots: [Slot]
    let zeros: Zeros
    let reading: BlockReading
    let compressed: Bool
    let skipZeroBlocks: Bool
    let inputBytes: Int
    let seams: PipelineSeams
    let timings: SharedTimings

    func run() {
        var reader: (any ConcurrentBlockReader)?
        if case .concurrent(let concurrent) = reading { reader = concurrent }
        let buffer = WorkerInput(bytes: inputBytes)
        let input = buffer.memory
        let encoder = SnappyFrameEncoder()
        var spent = StageTimings()
        defer { timings.add(spent) }
        let readsInOrder = reader == nil
        while let slot = claims.next(slots: slots, input: compressed && readsInOrder ? buffer : nil, readsInOrder: readsInOrder) {
            if slot.unit.isEnd {
                slot.markReady()
                return
            }
            seams.afterClaim?(slot.unit.index)
            spent.read += slot.unit.claimReadSeconds
            do {
                if compressed {
                    try compress(&slot.unit, into: slot.memory, input: input, reader: reader, encoder: encoder, spent: &spent)
                } else {
                    try check(&slot.unit, in: slot.memory, reader: reader, spent: &spent)
                }
            } catch {
                slot.unit.failure = .source(error)
            }
            slot.markReady()
        }
    }

    /// LiME: reads the piece into the slot (unless the claim did) and checks it for zeros.
    private func check(
        _ unit: inout Unit, in memory: UnsafeMutableRawBufferPointer, reader: (any ConcurrentBlockReader)?,
        spent: inout StageTimings
    ) throws {
        let data = UnsafeMutableRawBufferPointer(
            rebasing: memory[RecordPipeline.limeHeaderRoom..<RecordPipeline.limeHeaderRoom + unit.count])
        var clock = monotonicSeconds()
        if let reader {
            unit.unreadable = try reader.read(unit.block, at: unit.offset, into: data)
            spent.read += lap(&clock)
        }
        unit.allZero = isAllZero(UnsafeRawBufferPointer(data))
        spent.zeroCheck += lap(&clock)
    }

    /// AVML: reads the block piece by piece (`input`'s size at a time) and compresses each
    /// piece while it is in cache, leaving header, stream and trailer in `output`. The zero check is
    /// fused with compression: each 64 KiB chunk is checked just before it would be
    /// compressed, and an all-zero chunk (free memory, mostly) becomes a copy of one
    /// precomputed chunk instead. Zero chunks that start the block wait until a
    /// non-zero one shows the block is kept; a block of zeros is not encoded at all.
    private func compress(
        _ unit: inout Unit, into output: UnsafeMutableRawBufferPointer, input: UnsafeMutableRawBufferPointer,
        reader: (any ConcurrentBlockReader)?, encoder: SnappyFrameEncoder, spent: inout StageTimings
    ) throws {
        let identifier = SnappyFraming.streamIdentifier
        UnsafeMutableRawBufferPointer(rebasing: output[RecordHeader.size..<RecordHeader.size + identifier.count])
            .copyBytes(from: identifier)
        var op = RecordHeader.size + identifier.count
        var leadingZeros = 0
        var offset = 0
        var clock = monotonicSeconds()
        while offset < unit.count {
            let count = min(input.count, unit.count - offset)
            let piece: UnsafeRawBufferPointer
            if let reader {
                let target = UnsafeMutableRawBufferPointer(rebasing: input[..<count])
                unit.unreadable += try reader.read(unit.block, at: offset, into: target)
                piece = UnsafeRawBufferPointer(target)
                spent.read += lap(&clock)
            } else {
                piece = UnsafeRawBufferPointer(rebasing: input[offset..<offset + count])
            }
            var start = 0
            while start < count {
                let chunk = UnsafeRawBufferPointer(rebasing: piece[start..<min(count, start + SnappyFraming.maxChunkData)])
                let zero = isAllZero(chunk)
                spent.zeroCheck += lap(&clock)
                if zero && op == RecordHeader.size + identifier.count {
                    leadingZeros += chunk.count
                } else if zero {
                    op = zeros.appendChunks(count: chunk.count, into: output, at: op, encoder: encoder)
                } else {
                    op = zeros.appendChunks(count: leadingZeros, into: output, at: op, encoder: encoder)
                    leadingZeros = 0
                    op = encoder.appendChunks(chunk, into: output, at: op)
                    spent.compress += lap(&clock)
                }
                start += chunk.count
            }
            offset += count
        }
        if leadingZeros == unit.count {
            // Encoded even when zero blocks are skipped: the writer keeps one that a neighbour needs.
            unit.allZero = true
            op = zeros.appendChunks(count: leadingZeros, into: output, at: op, encoder: encoder)
        }
        unit.stream = op - RecordHeader.size
        RecordHeader(compressed: true, start: unit.block.start, end: unit.block.start + UInt64(unit.count) - 1).encode(
            into: output)
        output.storeBytes(of: UInt64(unit.stream).littleEndian, toByteOffset: op, as: UInt64.self)
    }
}

/// Stage timings that worker threads add to as they finish.
final class SharedTimings: Sendable {
    private let value = Mutex(StageTimings())

    func add(_ timings: StageTimings) {
        value.withLock { $0 = $0 + timings }
    }

    var total: StageTimings { value.withLock { $0 } }
}

/// Seconds since `clock`, which moves to now.
private func lap(_ clock: inout Double) -> Double {
    let now = monotonicSeconds()
    defer { clock = now }
    return now - clock
}

/// The writer: takes units in index order and writes records to the sink.
struct Writer {
    let slots: [Slot]
    let zeros: Zeros
    let hasher: Hasher
    let sink: ImageSink
    let compressed: Bool
    let skipZeroBlocks: Bool
    private(set) var statistics = PipelineStatistics()
    private(set) var unreadable: [Range<UInt64>] = []
    private(set) var volatilityUnreadable: [Range<UInt64>] = []
    private(set) var writeSeconds = 0.0
    private var joiner: RecordJoiner
    /// Held blocks copied out of their slots, by start address (see `spill`).
    private var spilled: [UInt64: [UInt8]] = [:]
    /// LiME: whether the current block's header is out, and the zero bytes that lead it so far.
    private var kept = false
    private var leadingZeros = 0

    /// Sets up the writer of one run; `joinBytes` is what it may hold back for joining beyond
    /// its slots, as copies (`PipelineLayout.joinBytes`).
    init(
        slots: [Slot], zeros: Zeros, hasher: Hasher, sink: ImageSink, compressed: Bool, skipZeroBlocks: Bool,
        joinBytes: Int
    ) {
        self.slots = slots
        self.zeros = zeros
        self.hasher = hasher
        self.sink = sink
        self.compressed = compressed
        self.skipZeroBlocks = skipZeroBlocks
        heldInSlots = max(1, slots.count - 1)
        // The copies stay within the budget: at most `joinBytes` of them, each at most a slot.
        joiner = RecordJoiner(capacity: max(2, heldInSlots + joinBytes / max(1, slots.first?.memory.count ?? 1)))
    }

    /// The most held blocks left in their slots; the rest are copied out (`spill`).
    private let heldInSlots: Int

    /// Whether the block's bytes are still in its slot (not copied out by `spill`).
    private func inSlot(_ block: RecordJoiner.Block) -> Bool { spilled[block.start] == nil }

    /// Copies held blocks out of their slots, oldest first, until all slots but one at most
    /// are held: a run of memory that does not compress longer than the ring then costs the
    /// copies, and the ring keeps turning, instead of every capture's ring being sized for it
    /// (each slot of which fills to its size over a capture). Holding in all slots but one
    /// rather than half of them left the 6.1 guest's 6-block run uncopied: 14.1–14.5 MiB of its
    /// memory changed by `acquire --compress` beyond idle against 16.2–16.4 (two runs each).
    private mutating func spill() {
        // The common case, one spare held: nothing to copy, and no array made for each unit.
        guard joiner.held.count > heldInSlots else { return }
        var held = joiner.held.filter(inSlot)
        while held.count > heldInSlots {
            let block = held.removeFirst()
            let memory = slots[block.slot].memory
            spilled[block.start] = Array(UnsafeRawBufferPointer(rebasing: memory[0..<RecordHeader.size + block.stream + 8]))
            slots[block.slot].free()
        }
    }

    /// Writes every unit until the end unit.
    /// - Returns: why the run failed, or nil.
    mutating func run(stopClaims: () -> Void, progress: ((UInt64) -> Void)?) -> PipelineFailure? {
        var failure: PipelineFailure?
        var handled: UInt64 = 0
        var index = 0
        while true {
            let slotIndex = index % slots.count
            let slot = slots[slotIndex]
            slot.waitReady()
            index += 1
            let unit = slot.unit
            if unit.isEnd {
                if failure == nil {
                    failure = unit.failure
                    if failure == nil {
                        do { try writeRecords(joiner.flush()) } catch { failure = .destination(error) }
                    }
                }
                slot.free()
                break
            }
            guard failure == nil else {
                slot.free()  // draining after a failure: nothing more is written
                continue
            }
            do {
                if let unitFailure = unit.failure {
                    slot.free()
                    throw unitFailure
                }
                merge(unit.unreadable)
                try compressed ? take(compressed: unit, slot: slotIndex) : take(lime: unit, slot: slotIndex)
                handled += UInt64(unit.count)
                progress?(handled)
            } catch let error as PipelineFailure {
                failure = error
            } catch {
                failure = .destination(error)
            }
            if failure != nil {
                stopClaims()
                for block in joiner.held where inSlot(block) { slots[block.slot].free() }
                joiner = RecordJoiner(capacity: joiner.capacity)
                spilled.removeAll()
            }
        }
        return failure
    }

    private mutating func merge(_ ranges: [Range<UInt64>]) {
        for range in ranges {
            if let last = unreadable.last, last.upperBound == range.lowerBound {
                unreadable[unreadable.count - 1] = last.lowerBound..<range.upperBound
            } else {
                unreadable.append(range)
            }
        }
    }

    /// A compressed block: skipped if all zeros, else handed to the joiner, whose cut records are written.
    private mutating func take(compressed unit: Unit, slot: Int) throws {
        try writeRecords(
            joiner.add(
                RecordJoiner.Block(
                    slot: slot, start: unit.block.start, count: unit.count, stream: unit.stream,
                    zero: unit.allZero && skipZeroBlocks)))
        spill()
    }

    /// Writes records cut by the joiner, skipping those of zero blocks alone; if one fails,
    /// the slots of the rest are freed unwritten.
    private mutating func writeRecords(_ records: [RecordJoiner.Record]) throws {
        for (position, record) in records.enumerated() {
            if record.isZero {
                for block in record.blocks {
                    if inSlot(block) { slots[block.slot].free() }
                    spilled[block.start] = nil
                    statistics.zeroBlocksSkipped += 1
                    statistics.zeroBytesSkipped += UInt64(block.count)
                }
                continue
            }
            do {
                try write(record)
            } catch {
                for rest in records[(position + 1)...] {
                    for block in rest.blocks where inSlot(block) { slots[block.slot].free() }
                }
                throw error
            }
        }
    }

    /// Writes one record. A joined record gets a new header in its first block and
    /// its trailer after its last stream; later blocks' stream identifiers are left out.
    private mutating func write(_ record: RecordJoiner.Record) throws {
        let first = record.blocks[0]
        let last = record.blocks[record.blocks.count - 1]
        if record.blocks.count > 1 {
            edit(first) { RecordHeader(compressed: true, start: record.start, end: record.end - 1).encode(into: $0) }
            edit(last) {
                $0.storeBytes(
                    of: UInt64(record.stream).littleEndian, toByteOffset: RecordHeader.size + last.stream, as: UInt64.self)
            }
        }
        let skip = RecordHeader.size + SnappyFraming.streamIdentifier.count
        let parts = record.blocks.map { block in
            let from = block == first ? 0 : skip
            let to = RecordHeader.size + block.stream + (block == last ? 8 : 0)
            return Hasher.Part(source: spilled[block.start].map { .copy($0) } ?? .slot(block.slot), range: from..<to)
        }
        let frees = record.blocks.filter(inSlot).map(\.slot)
        for block in record.blocks { spilled[block.start] = nil }
        try emit(parts, freeing: frees)
        statistics.records += 1
        statistics.memoryBytes += UInt64(record.memory)
        if !record.safe { volatilityUnreadable.append(record.start..<record.end) }
    }

    /// Changes a held block's bytes, in its slot or its copy.
    private mutating func edit(_ block: RecordJoiner.Block, _ change: (UnsafeMutableRawBufferPointer) -> Void) {
        if spilled[block.start] != nil {
            spilled[block.start]?.withUnsafeMutableBytes(change)
        } else {
            change(slots[block.slot].memory)
        }
    }

    /// A LiME piece. Leading all-zero pieces of a block are only counted; once a
    /// non-zero piece shows the block is kept, its header and those zeros go first.
    private mutating func take(lime unit: Unit, slot: Int) throws {
        if unit.offset == 0 {
            kept = false
            leadingZeros = 0
        }
        var parts: [Hasher.Part] = []
        if !kept {
            if unit.allZero && skipZeroBlocks {
                leadingZeros += unit.count
                slots[slot].free()
                if unit.isLastPiece {
                    statistics.zeroBlocksSkipped += 1
                    statistics.zeroBytesSkipped += UInt64(unit.block.count)
                }
                return
            }
            kept = true
            let block = unit.block
            RecordHeader(compressed: false, start: block.start, end: block.start + UInt64(block.count) - 1).encode(
                into: slots[slot].memory)
            parts.append(Hasher.Part(source: .slot(slot), range: 0..<RecordHeader.size))
            while leadingZeros > 0 {
                let count = min(leadingZeros, zeros.buffer.count)
                parts.append(Hasher.Part(source: .zeros, range: 0..<count))
                leadingZeros -= count
            }
        }
        let start = RecordPipeline.limeHeaderRoom
        parts.append(Hasher.Part(source: .slot(slot), range: start..<start + unit.count))
        try emit(parts, freeing: [slot])
        if unit.isLastPiece {
            statistics.records += 1
            statistics.memoryBytes += UInt64(unit.block.count)
        }
    }

    /// Writes `parts` to the sink, then passes them to the hasher, which frees the slots.
    private mutating func emit(_ parts: [Hasher.Part], freeing frees: [Int]) throws {
        let started = monotonicSeconds()
        defer { writeSeconds += monotonicSeconds() - started }
        do {
            for part in parts {
                try hasher.withBytes(part) { try sink.write($0) }
                statistics.bytesWritten += UInt64(part.range.count)
            }
        } catch {
            for slot in frees { slots[slot].free() }
            throw PipelineFailure.destination(error)
        }
        hasher.push(Hasher.Emission(parts: parts, frees: frees))
    }
}
