import ImageFormats

/// Decides where compressed records are cut, so that Volatility 3 can open every one.
///
/// Volatility's AVML layer reads only `end - start` bytes of a record's framed
/// stream (one less than the memory it holds) and loops forever when the stream
/// is longer: a 16 MiB block that does not compress (keys, encrypted or already
/// compressed pages) gives a stream of 16 MiB plus 8 bytes a chunk. Records may
/// hold any length, so such a block is joined with its neighbours in the same
/// contiguous range until the joined stream is shorter than the joined memory by
/// a margin. The chunks of a block's stream do not depend on the blocks around
/// it, so joining reuses the compressed bytes: nothing is read or compressed twice.
///
/// Blocks arrive in address order. Each safe block is held until the next one
/// arrives (it is the "spare" an incompressible successor can join). All-zero blocks
/// come too, as the best spares there are: written only when joined to such a block,
/// else skipped (a lone incompressible 1 MiB block between free memory once gave a
/// record Volatility could not open); at most
/// `capacity` blocks are held (the writer copies those beyond all its slots but one out
/// of them). A run that no neighbour can absorb within that bound is written
/// anyway and reported.
struct RecordJoiner {
    /// A compressed block: where its record's bytes are, what memory it holds, and its stream's length.
    struct Block: Equatable {
        var slot: Int
        var start: UInt64
        var count: Int
        /// The framed stream's length, stream identifier included.
        var stream: Int
        /// All-zero memory the writer skips unless it absorbs a neighbour that does not compress.
        var zero = false

        var end: UInt64 { start + UInt64(count) }
    }

    /// Blocks to write as one record.
    struct Record: Equatable {
        var blocks: [Block]
        /// Whether Volatility can read it: false only when no neighbour could absorb an incompressible run.
        var safe: Bool

        var start: UInt64 { blocks[0].start }
        var end: UInt64 { blocks[blocks.count - 1].end }
        var memory: Int { blocks.reduce(0) { $0 + $1.count } }
        /// One stream identifier for the whole record: the later blocks' are left out.
        var stream: Int { RecordJoiner.joinedStream(blocks) }
        /// All zero blocks, needed by no neighbour: skipped, not written.
        var isZero: Bool { blocks.allSatisfy(\.zero) }
    }

    /// How much shorter than its memory a record's stream must be: a whole chunk
    /// (an eighth of a small record), far more than the one byte Volatility's reader needs.
    static func margin(memory: Int) -> Int {
        min(1 << 16, memory / 8)
    }

    let capacity: Int
    private(set) var held: [Block] = []

    /// - Parameter capacity: the most blocks that may be held back at once (at least 2).
    init(capacity: Int) {
        precondition(capacity >= 2, "a joiner must hold a spare and an incompressible block")
        self.capacity = capacity
    }

    static func joinedStream(_ blocks: [Block]) -> Int {
        blocks.reduce(0) { $0 + $1.stream } - (blocks.count - 1) * SnappyFraming.streamIdentifier.count
    }

    static func isSafe(stream: Int, memory: Int) -> Bool {
        stream + margin(memory: memory) <= memory
    }

    private static func isSafe(_ blocks: [Block]) -> Bool {
        isSafe(stream: joinedStream(blocks), memory: blocks.reduce(0) { $0 + $1.count })
    }

    /// Takes the next non-zero block.
    /// - Returns: the records that can be written now, in order.
    mutating func add(_ block: Block) -> [Record] {
        var ready: [Record] = []
        if let last = held.last, last.end != block.start {
            ready += flush()
        }
        guard let first = held.first else {
            held = [block]
            return ready
        }
        if held.count == 1 && Self.isSafe([first]) && Self.isSafe([block]) {
            // The common case: the spare is written alone, as AVML cuts it, and the new block becomes the spare.
            ready.append(Record(blocks: [first], safe: true))
            held = [block]
            return ready
        }
        held.append(block)
        if Self.isSafe(held) {
            ready.append(Record(blocks: held, safe: true))
            held = []
        } else if held.count >= capacity {
            ready.append(Record(blocks: held, safe: false))
            held = []
        }
        return ready
    }

    /// Ends the current contiguous run (a gap, an all-zero block, the end of the capture).
    /// - Returns: the held blocks as one record, if any.
    mutating func flush() -> [Record] {
        guard !held.isEmpty else { return [] }
        defer { held = [] }
        return [Record(blocks: held, safe: Self.isSafe(held))]
    }
}
