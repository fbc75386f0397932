import Testing

@testable import ImageFormats

/// Deterministic data of the kinds memory holds.
enum Samples {
    static func random(_ count: Int, seed: UInt64) -> [UInt8] {
        var state = seed &+ 0x9E37_79B9_7F4A_7C15
        return (0..<count).map { _ in
            state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            return UInt8(truncatingIfNeeded: state >> 33)
        }
    }

    static func text(_ count: Int) -> [UInt8] {
        let words = Array("the kernel maps physical memory into the direct map; pages are 4096 bytes. ".utf8)
        return (0..<count).map { words[($0 * 7 + $0 / 13) % words.count] }
    }

    static func pointers(_ count: Int) -> [UInt8] {
        (0..<count).map { index in
            let word = index / 8
            let value: UInt64 = word % 3 == 0 ? 0 : 0xffff_8880_0000_0000 + UInt64(word % 97) * 64
            return UInt8(truncatingIfNeeded: value >> (8 * UInt64(index % 8)))
        }
    }

    static func hex(_ text: String) -> [UInt8] {
        var bytes: [UInt8] = []
        var index = text.startIndex
        while index < text.endIndex {
            let next = text.index(index, offsetBy: 2)
            bytes.append(UInt8(text[index..<next], radix: 16) ?? 0)
            index = next
        }
        return bytes
    }
}

struct SnappyBlockTests {
    @Test(
        arguments: [
            // Empty input: just the length varint.
            [UInt8](),
            // Shorter than the 15-byte margin: one literal.
            Array("short".utf8),
            // Exactly at and around the margin.
            Samples.text(15), Samples.text(16), Samples.text(17),
            // A 61-byte literal needs one extra length byte.
            Samples.random(61, seed: 1),
            // Long literals need two and three extra length bytes.
            Samples.random(300, seed: 2), Samples.random(70_000, seed: 3),
            // A run of one byte: copies that overlap their own output.
            [UInt8](repeating: 0x41, count: 5000),
            // A zero page and a whole fragment of zeros.
            [UInt8](repeating: 0, count: 4096), [UInt8](repeating: 0, count: 65536),
            // Text and pointers: copies with short and long offsets.
            Samples.text(100_000), Samples.pointers(200_000),
            // Repeats 3000 bytes apart: copies with 2-byte offsets.
            Array((Samples.random(3000, seed: 4) + Samples.random(100, seed: 5) + Samples.random(3000, seed: 4)).prefix(6100)),
        ] as [[UInt8]])
    func roundTrip(data: [UInt8]) throws {
        let compressed = Snappy.compress(data)
        #expect(compressed.count <= Snappy.maxCompressedLength(data.count))
        #expect(try Snappy.decompress(compressed) == data)
    }

    @Test func compressesRepetitiveData() {
        #expect(Snappy.compress([UInt8](repeating: 0, count: 65536)).count < 4000)
        #expect(Snappy.compress(Samples.text(65536)).count < 65536 / 4)
    }

    @Test func decodesABlockFromGoogleSnappy() throws {
        // python-snappy (libsnappy) compress() of the text below.
        let block = Samples.hex(
            "8b011468656c6c6f20420600202c20736e6170707921461b000912aa21009c000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f2021222324252627"
        )
        let expected = Array(String(repeating: "hello hello hello hello, snappy! ", count: 3).utf8) + (0..<40).map { UInt8($0) }
        #expect(try Snappy.decompress(block) == expected)
    }

    @Test(
        arguments: [
            // No varint at all.
            ([], SnappyError.badLengthPrefix),
            // A varint that never ends.
            ([0x80, 0x80, 0x80, 0x80, 0x80, 0x01], .badLengthPrefix),
            // Declares 5 bytes, holds a 1-byte literal whose byte is missing.
            ([0x05, 0x00], .truncatedElement(at: 1)),
            // Declares 2 bytes, literal of 3.
            ([0x02, 0x08, 0x61, 0x62, 0x63], .outputOverrun(at: 1)),
            // Declares 4 bytes, literal of 1: output short.
            ([0x04, 0x00, 0x61], .outputShort(declared: 4, produced: 1)),
            // Copy with offset 0.
            ([0x05, 0x00, 0x61, 0x01, 0x00], .badCopyOffset(offset: 0, at: 3)),
            // Copy reaching before the start of the output.
            ([0x06, 0x00, 0x61, 0x05, 0x02], .badCopyOffset(offset: 2, at: 3)),
            // 2-byte-offset copy cut short.
            ([0x06, 0x00, 0x61, 0x0a, 0x01], .truncatedElement(at: 3)),
            // 4-byte-offset copy cut short.
            ([0x06, 0x00, 0x61, 0x0b, 0x01, 0x00], .truncatedElement(at: 3)),
            // Literal whose 2-byte length is cut short.
            ([0x40, 0xf4, 0x3f], .truncatedElement(at: 1)),
        ] as [([UInt8], SnappyError)])
    func rejectsMalformedBlocks(block: [UInt8], expected: SnappyError) {
        #expect(throws: expected) { try Snappy.decompress(block) }
    }

    @Test func refusesToAllocateBeyondTheLimit() {
        // Declares 4 GiB - 1 in five bytes.
        #expect(throws: SnappyError.declaredLengthTooLarge(declared: 0xffff_ffff, limit: 1 << 16)) {
            try Snappy.decompress([0xff, 0xff, 0xff, 0xff, 0x0f], limit: 1 << 16)
        }
    }

    @Test func aFourByteOffsetCopyDecodes() throws {
        // Literal "ab", then copy length 4 at offset 2 with the 4-byte-offset tag.
        #expect(try Snappy.decompress([0x06, 0x04, 0x61, 0x62, 0x0f, 0x02, 0x00, 0x00, 0x00]) == Array("ababab".utf8))
    }
}

struct SnappyFramingTests {
    @Test(arguments: [0, 1, 100, 65535, 65536, 65537, 200_000])
    func roundTrip(size: Int) throws {
        let data = Samples.text(size / 2) + Samples.random(size - size / 2, seed: UInt64(size))
        let framed = SnappyFraming.encode(data)
        #expect(Array(framed.prefix(10)) == SnappyFraming.streamIdentifier)
        #expect(framed.count <= SnappyFraming.maxFramedLength(size))
        #expect(try SnappyFraming.decode(framed) == data)
    }

    @Test func storesIncompressibleChunksUncompressed() throws {
        let framed = SnappyFraming.encode(Samples.random(65536, seed: 9))
        #expect(framed[10] == 0x01)
        #expect(framed.count == 10 + 8 + 65536)
    }

    @Test func compressesCompressibleChunksAndChecksumsThem() throws {
        let data = Samples.text(65536)
        let framed = SnappyFraming.encode(data)
        #expect(framed[10] == 0x00)
        let stored = UInt32(framed[14]) | UInt32(framed[15]) << 8 | UInt32(framed[16]) << 16 | UInt32(framed[17]) << 24
        #expect(stored == CRC32C.masked(CRC32C.checksum(data)))
    }

    @Test func decodesAStreamFromGoogleSnappy() throws {
        // python-snappy's StreamCompressor over "AVML memory " × 100.
        let stream = Samples.hex(
            "ff060000734e61507059004c0000e6ece74cb0092c41564d4c206d656d6f727920fe0c00fe0c00fe0c00fe0c00fe0c00fe0c00fe0c00fe0c00fe0c00fe0c00fe0c00fe0c00fe0c00fe0c00fe0c00fe0c00fe0c00fe0c008e0c00"
        )
        #expect(try SnappyFraming.decode(stream) == Array(String(repeating: "AVML memory ", count: 100).utf8))
    }

    static let hello = SnappyFraming.encode(Array("hello, framing".utf8))

    @Test func skipsPaddingSkippableChunksAndRepeatedIdentifiers() throws {
        let stream =
            SnappyFraming.streamIdentifier + [0xfe, 0x03, 0x00, 0x00, 1, 2, 3] + [0x80, 0x01, 0x00, 0x00, 9]
            + Array(Self.hello.dropFirst(10)) + Self.hello
        #expect(try SnappyFraming.decode(stream) == Array("hello, framinghello, framing".utf8))
    }

    @Test(arguments: [0x02, 0x30, 0x7f] as [UInt8])
    func rejectsReservedChunks(type: UInt8) {
        let stream = SnappyFraming.streamIdentifier + [type, 0x01, 0x00, 0x00, 0]
        #expect(throws: SnappyError.reservedChunk(type: type)) { try SnappyFraming.decode(stream) }
    }

    @Test func rejectsAFlippedCRC() {
        var stream = Self.hello
        stream[14] ^= 1
        #expect(throws: SnappyError.self) { try SnappyFraming.decode(stream) }
    }

    @Test func rejectsAFlippedDataByte() {
        var stream = Self.hello
        stream[stream.count - 1] ^= 0x20
        #expect(throws: SnappyError.self) { try SnappyFraming.decode(stream) }
    }

    @Test func requiresTheStreamIdentifierFirst() {
        #expect(throws: SnappyError.missingStreamIdentifier) { try SnappyFraming.decode(Array(Self.hello.dropFirst(10))) }
        var wrong = Self.hello
        wrong[4] = 0x53
        #expect(throws: SnappyError.badStreamIdentifier) { try SnappyFraming.decode(wrong) }
    }

    @Test func rejectsChunksOverSixtyFourKiB() throws {
        // An uncompressed chunk of 65,537 bytes.
        let body = [UInt8](repeating: 7, count: 65537)
        var crc = CRC32C.masked(CRC32C.checksum(body))
        let length = body.count + 4
        let chunk: [UInt8] =
            [0x01, UInt8(length & 0xff), UInt8(length >> 8 & 0xff), UInt8(length >> 16)]
            + withUnsafeBytes(of: &crc) { Array($0) } + body
        #expect(throws: SnappyError.badChunkLength(type: 1, length: length)) {
            try SnappyFraming.decode(SnappyFraming.streamIdentifier + chunk)
        }
        // A compressed chunk declaring 65,537 bytes.
        let block = Snappy.compress([UInt8](repeating: 0, count: 65537))
        let compressedLength = block.count + 4
        let compressed: [UInt8] = [0x00, UInt8(compressedLength & 0xff), UInt8(compressedLength >> 8), 0, 0, 0, 0, 0] + block
        #expect(throws: SnappyError.declaredLengthTooLarge(declared: 65537, limit: 65536)) {
            try SnappyFraming.decode(SnappyFraming.streamIdentifier + compressed)
        }
    }

    @Test func rejectsTruncatedChunks() {
        #expect(throws: SnappyError.self) { try SnappyFraming.decode(Array(Self.hello.dropLast(1))) }
        #expect(throws: SnappyError.self) { try SnappyFraming.decode(Array(Self.hello.prefix(12))) }
    }
}
