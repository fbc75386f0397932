import Testing

@testable import ImageFormats

struct RecordHeaderTests {
    // AVML's own header test vectors: range 0x1000..<0x20001, i.e. end 0x20000 inclusive.
    static let limeBytes: [UInt8] = [
        0x45, 0x4d, 0x69, 0x4c, 0x01, 0, 0, 0, 0x00, 0x10, 0, 0, 0, 0, 0, 0,
        0x00, 0x00, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    ]
    static let avmlBytes: [UInt8] = [
        0x41, 0x56, 0x4d, 0x4c, 0x02, 0, 0, 0, 0x00, 0x10, 0, 0, 0, 0, 0, 0,
        0x00, 0x00, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    ]

    @Test func encodesLikeAVML() {
        #expect(RecordHeader(compressed: false, start: 0x1000, end: 0x20000).bytes == Self.limeBytes)
        #expect(RecordHeader(compressed: true, start: 0x1000, end: 0x20000).bytes == Self.avmlBytes)
    }

    @Test func decodesWhatItEncodes() throws {
        let header = try RecordHeader.decode(Self.avmlBytes)
        #expect(header == RecordHeader(compressed: true, start: 0x1000, end: 0x20000))
        #expect(header.length == 0x1f001)
    }

    @Test(arguments: [
        // Wrong magic.
        (0, [0x00, 0x00, 0x00, 0x00] as [UInt8], RecordHeaderError.badMagic(0)),
        // LiME magic with version 2.
        (4, [0x02, 0, 0, 0], .badVersion(magic: RecordHeader.limeMagic, version: 2)),
        // End before start.
        (16, [0x00, 0x00, 0, 0, 0, 0, 0, 0], .endBeforeStart(start: 0x1000, end: 0)),
        // Reserved field not zero.
        (24, [0x01, 0, 0, 0, 0, 0, 0, 0], .reservedNotZero(1)),
    ])
    func rejects(offset: Int, patch: [UInt8], expected: RecordHeaderError) {
        var bytes = Self.limeBytes
        bytes.replaceSubrange(offset..<offset + patch.count, with: patch)
        #expect(throws: expected) { try RecordHeader.decode(bytes) }
    }

    @Test func rejectsARecordCoveringEveryAddress() {
        var bytes = Self.limeBytes
        bytes.replaceSubrange(
            8..<32, with: [UInt8](repeating: 0, count: 8) + [UInt8](repeating: 0xff, count: 8) + [UInt8](repeating: 0, count: 8))
        #expect(throws: RecordHeaderError.endAtLastAddress) { try RecordHeader.decode(bytes) }
        // Any record ending there: its exclusive end would overflow.
        bytes[8] = 0x10
        #expect(throws: RecordHeaderError.endAtLastAddress) { try RecordHeader.decode(bytes) }
    }

    @Test func escapesControlCharactersInLogText() {
        #expect(escapedForLog("a\u{1b}[31mb\nc\\") == "a\\u{1b}[31mb\\u{a}c\\\\")
        #expect(escapedForLog("mémoire.lime") == "mémoire.lime")
    }
}
