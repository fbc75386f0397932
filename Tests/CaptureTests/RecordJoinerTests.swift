import ImageFormats
import Testing

@testable import Capture
@testable import RecordEngine

struct RecordJoinerTests {
    static let size = 16 << 20
    /// A block that compresses to a quarter, one that does not compress, one that barely does.
    static func good(_ slot: Int, at index: UInt64) -> RecordJoiner.Block {
        .init(slot: slot, start: index * UInt64(size), count: size, stream: size / 4)
    }
    static func bad(_ slot: Int, at index: UInt64) -> RecordJoiner.Block {
        .init(slot: slot, start: index * UInt64(size), count: size, stream: size + 2058)
    }

    @Test func compressibleBlocksAreWrittenOneRecordEachOneBlockLate() {
        var joiner = RecordJoiner(capacity: 4)
        #expect(joiner.add(Self.good(0, at: 0)).isEmpty)
        #expect(joiner.add(Self.good(1, at: 1)) == [.init(blocks: [Self.good(0, at: 0)], safe: true)])
        #expect(joiner.flush() == [.init(blocks: [Self.good(1, at: 1)], safe: true)])
    }

    @Test func anIncompressibleBlockJoinsThePreviousOne() {
        var joiner = RecordJoiner(capacity: 4)
        _ = joiner.add(Self.good(0, at: 0))
        let records = joiner.add(Self.bad(1, at: 1))
        #expect(records == [.init(blocks: [Self.good(0, at: 0), Self.bad(1, at: 1)], safe: true)])
        #expect(records[0].stream == Self.size / 4 + Self.size + 2058 - 10)
        #expect(joiner.held.isEmpty)
    }

    @Test func anIncompressibleFirstBlockJoinsTheNextOne() {
        var joiner = RecordJoiner(capacity: 4)
        #expect(joiner.add(Self.bad(0, at: 0)).isEmpty)
        #expect(joiner.add(Self.good(1, at: 1)) == [.init(blocks: [Self.bad(0, at: 0), Self.good(1, at: 1)], safe: true)])
    }

    @Test func aGapEndsTheRun() {
        var joiner = RecordJoiner(capacity: 4)
        _ = joiner.add(Self.bad(0, at: 0))
        // Block 2 is not contiguous with block 0: block 0 goes out alone, unsafe.
        #expect(joiner.add(Self.good(1, at: 2)) == [.init(blocks: [Self.bad(0, at: 0)], safe: false)])
    }

    @Test func aRunLongerThanTheCapacityIsWrittenAndReported() {
        var joiner = RecordJoiner(capacity: 3)
        #expect(joiner.add(Self.bad(0, at: 0)).isEmpty)
        #expect(joiner.add(Self.bad(1, at: 1)).isEmpty)
        let records = joiner.add(Self.bad(2, at: 2))
        #expect(records.count == 1 && !records[0].safe && records[0].blocks.count == 3)
    }

    @Test func twoIncompressibleBlocksNeedAGoodNeighbourEach() {
        var joiner = RecordJoiner(capacity: 8)
        _ = joiner.add(Self.good(0, at: 0))
        // good + bad + bad: the good block's savings (12 MiB) cover both overheads.
        #expect(joiner.add(Self.bad(1, at: 1)).count == 1)
        #expect(joiner.add(Self.bad(2, at: 2)).isEmpty)
        let records = joiner.add(Self.good(3, at: 3))
        #expect(records == [.init(blocks: [Self.bad(2, at: 2), Self.good(3, at: 3)], safe: true)])
    }

    @Test func theMarginIsKept() {
        let memory = 16 << 20
        #expect(RecordJoiner.isSafe(stream: memory - 65536, memory: memory))
        #expect(!RecordJoiner.isSafe(stream: memory - 65535, memory: memory))
        // Small records (the end of a range) keep an eighth.
        #expect(RecordJoiner.isSafe(stream: 4375, memory: 5000) && !RecordJoiner.isSafe(stream: 4376, memory: 5000))
    }
}
