/// Compact JSON written straight into a byte buffer.
///
/// A symbol table is tens of MB of JSON made of a few shapes; writing it directly
/// keeps it well under a second and the key order fixed, where building a tree
/// of Codable values first would take several times the time and memory.
struct JSONWriter {
    private(set) var bytes: [UInt8] = []
    private static let hexDigits = Array("0123456789abcdef".utf8)

    init(capacity: Int) {
        bytes.reserveCapacity(capacity)
    }

    mutating func raw(_ text: StaticString) {
        text.withUTF8Buffer { bytes.append(contentsOf: $0) }
    }

    mutating func raw(_ other: [UInt8]) {
        bytes.append(contentsOf: other)
    }

    mutating func byte(_ value: UInt8) {
        bytes.append(value)
    }

    /// A quoted string; quotes, backslashes and control characters escaped (RFC 8259).
    mutating func string(_ text: String) {
        bytes.append(0x22)
        var text = text
        text.withUTF8 { utf8 in
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
        }
        bytes.append(0x22)
    }

    /// `"key":`
    mutating func key(_ text: String) {
        string(text)
        bytes.append(0x3a)
    }

    mutating func number(_ value: UInt64) {
        let start = bytes.count
        var rest = value
        repeat {
            bytes.append(UInt8(ascii: "0") + UInt8(rest % 10))
            rest /= 10
        } while rest > 0
        bytes[start...].reverse()
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
