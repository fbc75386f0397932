import Testing

@testable import ImageFormats

struct CRC32CTests {
    @Test(
        arguments: [
            // The check value of the CRC-32C catalogue entry.
            (Array("123456789".utf8), UInt32(0xE306_9283)),
            // RFC 3720, B.4: 32 bytes of zeros.
            ([UInt8](repeating: 0, count: 32), 0x8A91_36AA),
            // RFC 3720, B.4: 32 bytes of 0xff.
            ([UInt8](repeating: 0xff, count: 32), 0x62A8_AB43),
            // RFC 3720, B.4: 32 incrementing bytes.
            ((0..<32).map { UInt8($0) }, 0x46DD_794E),
            // RFC 3720, B.4: 32 decrementing bytes.
            ((0..<32).map { UInt8(31 - $0) }, 0x113F_DB5C),
            // Nothing at all.
            ([], 0),
        ] as [([UInt8], UInt32)])
    func knownVectors(bytes: [UInt8], expected: UInt32) {
        #expect(bytes.withUnsafeBytes { CRC32C.checksum($0) } == expected)
        #expect(bytes.withUnsafeBytes { CRC32C.portableChecksum($0) } == expected)
    }

    @Test func rfc3720ReadCommandPDU() {
        // RFC 3720, B.4: a READ (10) command PDU.
        var pdu = [UInt8](repeating: 0, count: 48)
        for (index, value) in [(0, 0x01), (1, 0xc0), (16, 0x14), (22, 0x04), (27, 0x14), (31, 0x18), (32, 0x28), (40, 0x02)] {
            pdu[index] = UInt8(value)
        }
        #expect(CRC32C.checksum(pdu) == 0xD996_3A56)
    }

    @Test func hardwareAndTablesAgreeOnEveryLengthAndAlignment() {
        var generator = SystemRandomNumberGenerator()
        let data = (0..<4096).map { _ in UInt8.random(in: 0...255, using: &generator) }
        data.withUnsafeBytes { raw in
            for start in 0..<9 {
                for length in [0, 1, 7, 8, 9, 63, 64, 65, 1000, 4000] where start + length <= raw.count {
                    let slice = UnsafeRawBufferPointer(rebasing: raw[start..<start + length])
                    #expect(CRC32C.checksum(slice) == CRC32C.portableChecksum(slice))
                }
            }
        }
    }

    @Test func extendingMatchesOneShot() {
        let data = (0..<1000).map { UInt8(truncatingIfNeeded: $0 &* 31) }
        data.withUnsafeBytes { raw in
            let whole = CRC32C.checksum(raw)
            let first = CRC32C.checksum(UnsafeRawBufferPointer(rebasing: raw[..<333]))
            #expect(CRC32C.checksum(UnsafeRawBufferPointer(rebasing: raw[333...]), extending: first) == whole)
        }
    }

    @Test func maskIsSnappys() {
        // ((c >> 15) | (c << 17)) + 0xa282ead8, from the framing format description.
        #expect(CRC32C.masked(0) == 0xa282_ead8)
        #expect(CRC32C.masked(0x0000_8000) == 0xa282_ead9)
        #expect(CRC32C.masked(1) == 0xa282_ead8 &+ 0x20000)
    }
}
