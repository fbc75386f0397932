/// Compact JSON written straight into a byte buffer, or through it into gzip.
///
/// A symbol table is tens of MB of JSON made of a few shapes; writing it directly
/// keeps it well under a second and the key order fixed, where building a tree
/// of Codable values first would take several times the time and memory.
struct JSONWriter {
    /// What was written and not yet handed to the deflater.
    private(set) var bytes: [UInt8] = []
    /// Where each 128 KiB written goes; nil keeps the whole document in `bytes`.
    private let deflater: Gzip.BackgroundDeflater?
    private var failure: GzipError?
    private static let spillBytes = 128 << 10
    private static let hexDigits = Array("0123456789abcdef".utf8)

    /// A document kept whole in memory.
    init(capacity: Int) {
        deflater = nil
        bytes.reserveCapacity(capacity)
    }

    /// A document compressed as it is written, so that at most about 256 KiB of it (the piece
    /// being written, the one being compressed) is in memory at once: on the examined host
    /// every page filled overwrites evidence.
    init(compressingInto deflater: Gzip.BackgroundDeflater) {
        self.deflater = deflater
        bytes.reserveCapacity(Self.spillBytes + (4 << 10))
    }

    /// Hands the rest to the deflater and ends its stream (nothing to do for a document kept whole).
    mutating func finishCompressed() throws(GzipError) {
        guard let deflater else { return }
        if let failure { throw failure }
        try deflater.exchange(&bytes)
        try deflater.finish()
    }

    /// Hands what was written to the deflater once there is enough of it. Called before
    /// each write, never inside one.
    private mutating func spill() {
        guard let deflater, bytes.count >= Self.spillBytes else { return }
        if failure == nil {
            do {
                try deflater.exchange(&bytes)
            } catch {
                failure = error
            }
        }
        bytes.removeAll(keepingCapacity: true)
    }

    mutating func raw(_ text: StaticString) {
        spill()
        text.withUTF8Buffer { bytes.append(contentsOf: $0) }
    }

    mutating func raw(_ other: [UInt8]) {
        spill()
        bytes.append(contentsOf: other)
    }

    mutating func byte(_ value: UInt8) {
        spill()
        bytes.append(value)
    }

    /// A quoted string; quotes, backslashes and control characters escaped (RFC 8259).
    mutating func string(_ text: String) {
        var text = text
        text.withUTF8 { string($0) }
    }

    /// A quoted string of UTF-8 bytes, escaped as `string(_: String)` escapes.
    mutating func string(_ utf8: UnsafeBufferPointer<UInt8>) {
        spill()
        bytes.append(0x22)
        // Names almost never need escaping: copied whole when none does.
        if !utf8.contains(where: { $0 == 0x22 || $0 == 0x5c || $0 < 0x20 || $0 == 0x7f }) {
            bytes.append(contentsOf: utf8)
            bytes.append(0x22)
            return
        }
        for byte in utf8 {
            switch byte {
            case 0x22, 0x5c:
                bytes.append(0x5c)
                bytes.append(byte)
            case 0x00..<0x20, 0x7f:
                bytes.append(contentsOf: [
                    0x5c, 0x75, 0x30, 0x30, Self.hexDigits[Int(byte >> 4)], Self.hexDigits[Int(byte & 0xf)],
                ])
            default:
                bytes.append(byte)
            }
        }
        bytes.append(0x22)
    }

    /// `"key":`
    mutating func key(_ text: String) {
        string(text)
        bytes.append(0x3a)
    }

    /// `"key":` from UTF-8 bytes.
    mutating func key(_ utf8: ArraySlice<UInt8>) {
        utf8.withUnsafeBufferPointer { string($0) }
        bytes.append(0x3a)
    }

    mutating func number(_ value: UInt64) {
        spill()
        // Digits made right to left in a 24-byte buffer, then appended at once: a table has
        // hundreds of thousands of 20-digit addresses.
        var digits: (UInt64, UInt64, UInt64) = (0, 0, 0)
        withUnsafeMutableBytes(of: &digits) { buffer in
            var index = buffer.count
            var rest = value
            repeat {
                index -= 1
                buffer[index] = UInt8(ascii: "0") + UInt8(rest % 10)
                rest /= 10
            } while rest > 0
            bytes.append(contentsOf: UnsafeRawBufferPointer(rebasing: buffer[index...]))
        }
    }

    mutating func number(_ value: Int64) {
        if value < 0 {
            bytes.append(0x2d)
            number(value.magnitude)
        } else {
            number(UInt64(value))
        }
    }

    mutating func number(_ value: Int) {
        number(Int64(value))
    }

    mutating func bool(_ value: Bool) {
        value ? raw("true") : raw("false")
    }
}
