// LiME and AVML record headers: 32 bytes, little-endian.
//
//   0      4        8              16             24             32
//   +------+--------+--------------+--------------+--------------+
//   |magic |version | start (u64)  | end (u64,    | reserved = 0 |
//   |(u32) | (u32)  |              |  inclusive)  |              |
//   +------+--------+--------------+--------------+--------------+
//   LiME:  magic 0x4C694D45 ("EMiL" on disk), version 1, then end-start+1 bytes.
//   AVML:  magic 0x4C4D5641 ("AVML" on disk), version 2, then one Snappy framed
//          stream of the end-start+1 bytes, then u64 LE length of that stream.

/// The three image layouts `avml convert` moves between.
public enum ImageFormat: String, Sendable, CaseIterable, CustomStringConvertible {
    /// A flat file where byte offset equals physical address.
    case raw
    /// LiME v1 records.
    case lime
    /// AVML v2 records: LiME-style headers over Snappy framed streams.
    case limeCompressed = "lime_compressed"

    public var description: String { rawValue }
}

/// Why 32 bytes are not a valid record header.
public enum RecordHeaderError: Error, Equatable, Sendable, CustomStringConvertible {
    case badMagic(UInt32)
    case badVersion(magic: UInt32, version: UInt32)
    case endBeforeStart(start: UInt64, end: UInt64)
    case reservedNotZero(UInt64)
    case endAtLastAddress
    case beyondPhysicalAddresses(end: UInt64)

    public var description: String {
        switch self {
        case .badMagic(let magic):
            return "bad magic \(hex(UInt64(magic))) (LiME is 0x4c694d45, AVML 0x4c4d5641)"
        case .badVersion(let magic, let version):
            let expected = magic == RecordHeader.limeMagic ? 1 : 2
            return "unsupported version \(version) (expected \(expected))"
        case .endBeforeStart(let start, let end):
            return "end \(hex(end)) is before start \(hex(start))"
        case .reservedNotZero(let value):
            return "reserved field is \(hex(value)), not zero"
        case .endAtLastAddress:
            return "end is the last 64-bit address, where no memory can be"
        case .beyondPhysicalAddresses(let end):
            return
                "end \(hex(end)) is at or above \(hex(RecordHeader.physicalAddressLimit)), beyond any physical address space (52 bits on x86-64 and arm64)"
        }
    }
}

/// One record header, LiME or AVML.
public struct RecordHeader: Equatable, Sendable {
    public static let size = 32
    public static let limeMagic: UInt32 = 0x4C69_4D45
    public static let avmlMagic: UInt32 = 0x4C4D_5641
    /// No physical memory lies at or above 2^52: that is the widest physical
    /// address space of x86-64 (five-level paging) and arm64 (LPA). A record
    /// there is corrupt or hostile, and must not make raw output fill petabytes.
    public static let physicalAddressLimit: UInt64 = 1 << 52

    /// Whether the body is a Snappy framed stream (AVML v2) rather than raw bytes (LiME v1).
    public var compressed: Bool
    /// First physical address the record holds.
    public var start: UInt64
    /// Last physical address the record holds (inclusive, as on disk).
    public var end: UInt64

    public init(compressed: Bool, start: UInt64, end: UInt64) {
        precondition(end >= start && end < UInt64.max, "record range must be non-empty and below the last address")
        self.compressed = compressed
        self.start = start
        self.end = end
    }

    /// Bytes of memory the record holds.
    public var length: UInt64 { end - start + 1 }

    /// Encodes the header into `buffer`, which must have room for 32 bytes.
    public func encode(into buffer: UnsafeMutableRawBufferPointer) {
        precondition(buffer.count >= Self.size)
        buffer.storeBytes(of: (compressed ? Self.avmlMagic : Self.limeMagic).littleEndian, toByteOffset: 0, as: UInt32.self)
        buffer.storeBytes(of: UInt32(compressed ? 2 : 1).littleEndian, toByteOffset: 4, as: UInt32.self)
        buffer.storeBytes(of: start.littleEndian, toByteOffset: 8, as: UInt64.self)
        buffer.storeBytes(of: end.littleEndian, toByteOffset: 16, as: UInt64.self)
        buffer.storeBytes(of: UInt64(0), toByteOffset: 24, as: UInt64.self)
    }

    /// The 32 header bytes.
    public var bytes: [UInt8] {
        var result = [UInt8](repeating: 0, count: Self.size)
        result.withUnsafeMutableBytes { encode(into: $0) }
        return result
    }

    /// Decodes a header field by field.
    ///
    /// - Throws: `RecordHeaderError` for a wrong magic or version, a non-zero
    ///   reserved field, an end before the start, or addresses beyond 2^52.
    public static func decode(_ bytes: UnsafeRawBufferPointer) throws(RecordHeaderError) -> RecordHeader {
        precondition(bytes.count >= size)
        let magic = UInt32(littleEndian: bytes.loadUnaligned(fromByteOffset: 0, as: UInt32.self))
        let version = UInt32(littleEndian: bytes.loadUnaligned(fromByteOffset: 4, as: UInt32.self))
        let start = UInt64(littleEndian: bytes.loadUnaligned(fromByteOffset: 8, as: UInt64.self))
        let end = UInt64(littleEndian: bytes.loadUnaligned(fromByteOffset: 16, as: UInt64.self))
        let reserved = UInt64(littleEndian: bytes.loadUnaligned(fromByteOffset: 24, as: UInt64.self))
        let compressed: Bool
        switch magic {
        case limeMagic: compressed = false
        case avmlMagic: compressed = true
        default: throw .badMagic(magic)
        }
        guard version == (compressed ? 2 : 1) else { throw .badVersion(magic: magic, version: version) }
        guard reserved == 0 else { throw .reservedNotZero(reserved) }
        guard end >= start else { throw .endBeforeStart(start: start, end: end) }
        // No machine has memory at the last address, and an exclusive end past it
        // would overflow every range computed from the record.
        guard end < UInt64.max else { throw .endAtLastAddress }
        guard end < physicalAddressLimit else { throw .beyondPhysicalAddresses(end: end) }
        return RecordHeader(compressed: compressed, start: start, end: end)
    }

    /// Decodes a header from a byte array of at least 32 bytes.
    /// - Throws: `RecordHeaderError`.
    public static func decode(_ bytes: [UInt8]) throws -> RecordHeader {
        try bytes.withUnsafeBytes { try decode($0) }
    }
}
