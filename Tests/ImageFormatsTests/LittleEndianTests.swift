import ImageFormats
import Testing

struct LittleEndianTests {
    // An ELF64 header's start: e_ident, e_type 4 (ET_CORE), e_machine 0x3e, e_version 1.
    static let bytes: [UInt8] = [
        0x7f, 0x45, 0x4c, 0x46, 0x02, 0x01, 0x01, 0x00, 0, 0, 0, 0, 0, 0, 0, 0,
        0x04, 0x00, 0x3e, 0x00, 0x01, 0, 0, 0,
    ]

    @Test func readsAtAnyOffset() {
        #expect(Self.bytes.le16(at: 16) == 4)
        #expect(Self.bytes.le16(at: 18) == 0x3e)
        #expect(Self.bytes.le32(at: 0) == 0x464c_457f)
        #expect(Self.bytes.le32(at: 1) == 0x0246_4c45)
        #expect(Self.bytes.le64(at: 0) == 0x0001_0102_464c_457f)
        #expect(Self.bytes.le64(at: 16) == 0x0000_0001_003e_0004)
    }
}
