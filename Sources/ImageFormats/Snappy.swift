// Snappy's raw block format.
//
//   block   := varint(uncompressed length) element*
//   element := literal | copy
//   tag byte, low two bits:
//     00 literal: length-1 in the upper 6 bits (0..59), or 60..63 meaning
//        1..4 little-endian bytes of length-1 follow; then the bytes
//     01 copy:    length 4..11 in bits 2..4, offset bits 8..10 in bits 5..7,
//        then one byte of offset (offset < 2048)
//     10 copy:    length-1 in the upper 6 bits, then a u16 LE offset
//     11 copy:    length-1 in the upper 6 bits, then a u32 LE offset
//   A copy repeats `length` bytes starting `offset` bytes back in the output
//   (offset may be smaller than length: the copy then repeats a pattern).

/// Why a Snappy block or framed stream could not be decoded.
import Glibc

public enum SnappyError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The leading varint is cut short or longer than five bytes.
    case badLengthPrefix
    /// The block declares more output than the caller allows.
    case declaredLengthTooLarge(declared: Int, limit: Int)
    /// An element runs past the end of the block.
    case truncatedElement(at: Int)
    /// A copy reaches before the start of the output, or has offset 0.
    case badCopyOffset(offset: Int, at: Int)
    /// Elements produce more bytes than the block declared.
    case outputOverrun(at: Int)
    /// The elements ended before producing the declared length.
    case outputShort(declared: Int, produced: Int)
    /// A framed stream does not begin with the stream identifier chunk.
    case missingStreamIdentifier
    /// A stream identifier chunk whose body is not "sNaPpY".
    case badStreamIdentifier
    /// Chunk types 0x02-0x7f are reserved and must not be skipped.
    case reservedChunk(type: UInt8)
    /// A data chunk too short to hold its CRC, or holding more than 65,536 bytes.
    case badChunkLength(type: UInt8, length: Int)
    /// The masked CRC-32C stored in a chunk does not match its data.
    case crcMismatch(stored: UInt32, computed: UInt32)

    public var description: String {
        switch self {
        case .badLengthPrefix:
            return "Snappy block has a malformed length prefix"
        case .declaredLengthTooLarge(let declared, let limit):
            return "Snappy block declares \(declared) bytes, more than the \(limit) allowed"
        case .truncatedElement(let at):
            return "Snappy block is cut short in the element at byte \(at)"
        case .badCopyOffset(let offset, let at):
            return "Snappy copy at byte \(at) has offset \(offset), outside the data decoded so far"
        case .outputOverrun(let at):
            return "Snappy element at byte \(at) writes past the declared length"
        case .outputShort(let declared, let produced):
            return "Snappy block declares \(declared) bytes but decodes to \(produced)"
        case .missingStreamIdentifier:
            return "Snappy framed stream does not start with the stream identifier (ff 06 00 00 sNaPpY)"
        case .badStreamIdentifier:
            return "Snappy stream identifier chunk is not \"sNaPpY\""
        case .reservedChunk(let type):
            return "Snappy framed stream has reserved chunk type \(hex(UInt64(type)))"
        case .badChunkLength(let type, let length):
            return "Snappy chunk of type \(hex(UInt64(type))) has invalid length \(length)"
        case .crcMismatch(let stored, let computed):
            return "Snappy chunk CRC mismatch: stored \(hex(UInt64(stored))), data gives \(hex(UInt64(computed)))"
        }
    }
}

/// Snappy's raw block format: fast, modest compression, which is what AVML's
/// compressed images carry inside the framing format.
public enum Snappy {
    /// The largest block `SnappyCompressor` can produce for `sourceLength` bytes.
    public static func maxCompressedLength(_ sourceLength: Int) -> Int {
        32 + sourceLength + sourceLength / 6
    }

    /// Reads the uncompressed length a block declares, and where its elements start.
    public static func declaredLength(_ block: UnsafeRawBufferPointer) throws(SnappyError) -> (length: Int, headerSize: Int) {
        var value: UInt64 = 0
        for index in 0..<min(5, block.count) {
            let byte = block[index]
            value |= UInt64(byte & 0x7f) << (7 * UInt64(index))
            if byte & 0x80 == 0 {
                guard value <= UInt64(UInt32.max) else { throw .badLengthPrefix }
                return (Int(value), index + 1)
            }
        }
        throw .badLengthPrefix
    }

    /// Decodes one block into `destination`, which must have room for its declared length.
    ///
    /// Every length and offset is checked against both buffers before use, so
    /// hostile input can only make this throw.
    /// - Returns: the number of bytes written, equal to the declared length.
    public static func decompress(
        _ block: UnsafeRawBufferPointer,
        into destination: UnsafeMutableRawBufferPointer
    ) throws(SnappyError) -> Int {
        let (length, headerSize) = try declaredLength(block)
        guard length <= destination.count else {
            throw .declaredLengthTooLarge(declared: length, limit: destination.count)
        }
        guard length > 0 else {
            guard headerSize == block.count else { throw .outputOverrun(at: headerSize) }
            return 0
        }
        guard let src = block.baseAddress, let dst = destination.baseAddress else {
            throw .outputShort(declared: length, produced: 0)
        }
        let inputEnd = block.count
        var ip = headerSize
        var op = 0
        while ip < inputEnd {
            let elementStart = ip
            let tag = src.load(fromByteOffset: ip, as: UInt8.self)
            ip += 1
            if tag & 3 == 0 {
                var literalLength = Int(tag >> 2) + 1
                if literalLength > 60 {
                    let extra = literalLength - 60
                    guard extra <= inputEnd - ip else { throw .truncatedElement(at: elementStart) }
                    var value = 0
                    for index in 0..<extra {
                        value |= Int(src.load(fromByteOffset: ip + index, as: UInt8.self)) << (8 * index)
                    }
                    ip += extra
                    literalLength = value + 1
                }
                guard literalLength <= inputEnd - ip else { throw .truncatedElement(at: elementStart) }
                guard literalLength <= length - op else { throw .outputOverrun(at: elementStart) }
                if literalLength <= 16 && inputEnd - ip >= 16 && length - op >= 16 {
                    // Both buffers have slack: copy a fixed 16 bytes, cheaper than memcpy.
                    dst.storeBytes(of: src.loadUnaligned(fromByteOffset: ip, as: UInt64.self), toByteOffset: op, as: UInt64.self)
                    dst.storeBytes(
                        of: src.loadUnaligned(fromByteOffset: ip + 8, as: UInt64.self), toByteOffset: op + 8, as: UInt64.self)
                } else {
                    (dst + op).copyMemory(from: src + ip, byteCount: literalLength)
                }
                ip += literalLength
                op += literalLength
                continue
            }
            let copyLength: Int
            let offset: Int
            switch tag & 3 {
            case 1:
                guard inputEnd - ip >= 1 else { throw .truncatedElement(at: elementStart) }
                copyLength = 4 + Int((tag >> 2) & 7)
                offset = Int(tag >> 5) << 8 | Int(src.load(fromByteOffset: ip, as: UInt8.self))
                ip += 1
            case 2:
                guard inputEnd - ip >= 2 else { throw .truncatedElement(at: elementStart) }
                copyLength = Int(tag >> 2) + 1
                offset = Int(UInt16(littleEndian: src.loadUnaligned(fromByteOffset: ip, as: UInt16.self)))
                ip += 2
            default:
                guard inputEnd - ip >= 4 else { throw .truncatedElement(at: elementStart) }
                copyLength = Int(tag >> 2) + 1
                offset = Int(UInt32(littleEndian: src.loadUnaligned(fromByteOffset: ip, as: UInt32.self)))
                ip += 4
            }
            guard offset > 0 && offset <= op else { throw .badCopyOffset(offset: offset, at: elementStart) }
            guard copyLength <= length - op else { throw .outputOverrun(at: elementStart) }
            copyWithinOutput(dst, at: op, offset: offset, count: copyLength, outputEnd: length)
            op += copyLength
        }
        guard op == length else { throw .outputShort(declared: length, produced: op) }
        return op
    }

    /// Repeats `count` bytes from `offset` bytes back; callers have checked both bounds.
    @inline(__always)
    private static func copyWithinOutput(
        _ dst: UnsafeMutableRawPointer, at op: Int, offset: Int, count: Int, outputEnd: Int
    ) {
        guard outputEnd - op >= count + 8 else {
            // Near the end of the output: no slack for wide stores.
            for index in 0..<count {
                dst.storeBytes(
                    of: dst.load(fromByteOffset: op - offset + index, as: UInt8.self), toByteOffset: op + index, as: UInt8.self)
            }
            return
        }
        var done = 0
        var distance = offset
        // A short offset repeats a pattern (a zero page is one byte repeated). The
        // output is periodic with period `offset`, so any multiple of it is an
        // equally good distance: copy whole periods, doubling the distance, until
        // 8-byte steps no longer overlap what they read.
        while distance < 8 && done < count {
            let chunk = min(distance, count - done)
            (dst + op + done).copyMemory(from: dst + op + done - distance, byteCount: chunk)
            done += chunk
            distance += distance
        }
        // 8-byte steps read only bytes already written, since each is at least 8 bytes behind.
        while done < count {
            dst.storeBytes(
                of: dst.loadUnaligned(fromByteOffset: op + done - distance, as: UInt64.self), toByteOffset: op + done,
                as: UInt64.self)
            done += 8
        }
    }
}

/// Compresses in Snappy's raw block format.
///
/// Holds the 16 K-entry hash table so that compressing many chunks allocates
/// nothing; one per thread.
public final class SnappyCompressor {
    private static let maxTableSize = 1 << 14
    /// Bytes at the end of a fragment the match finder never starts in, so it can load 8 bytes freely.
    private static let inputMargin = 15
    private static let maxFragment = 1 << 16

    private let table: UnsafeMutablePointer<UInt16>

    public init() {
        table = .allocate(capacity: Self.maxTableSize)
        table.initialize(repeating: 0, count: Self.maxTableSize)
    }

    deinit {
        table.deallocate()
    }

    /// Compresses `source` into `destination`.
    ///
    /// - Parameters:
    ///   - source: the bytes to compress, at most 4 GiB - 1.
    ///   - destination: at least `Snappy.maxCompressedLength(source.count)` bytes.
    /// - Returns: the length of the block written.
    public func compress(_ source: UnsafeRawBufferPointer, into destination: UnsafeMutableRawBufferPointer) -> Int {
        precondition(destination.count >= Snappy.maxCompressedLength(source.count), "Snappy output buffer too small")
        precondition(source.count <= Int(UInt32.max), "Snappy block too large")
        guard let dst = destination.baseAddress else { return 0 }
        var op = dst
        var remaining = UInt32(source.count)
        while remaining >= 0x80 {
            op.storeBytes(of: UInt8(truncatingIfNeeded: remaining) | 0x80, as: UInt8.self)
            op += 1
            remaining >>= 7
        }
        op.storeBytes(of: UInt8(remaining), as: UInt8.self)
        op += 1
        guard let src = source.baseAddress else { return op - dst }
        var offset = 0
        while offset < source.count {
            let fragment = min(source.count - offset, Self.maxFragment)
            op = compressFragment(src + offset, count: fragment, output: op)
            offset += fragment
        }
        return op - dst
    }

    @inline(__always)
    private static func hash(_ bytes: UInt32, shift: UInt32) -> Int {
        Int((bytes &* 0x1e35_a7bd) >> shift)
    }

    private func compressFragment(_ input: UnsafeRawPointer, count: Int, output: UnsafeMutableRawPointer)
        -> UnsafeMutableRawPointer
    {
        var op = output
        let inputEnd = input + count
        var nextEmit = input
        if count >= Self.inputMargin {
            var tableSize = 256
            while tableSize < Self.maxTableSize && tableSize < count { tableSize <<= 1 }
            let shift = UInt32(32 - tableSize.trailingZeroBitCount)
            // memset, not update(repeating:): the static build is -Osize, where that call
            // stays a loop over 16-bit stores (10% of a conversion's instructions).
            memset(table, 0, tableSize * MemoryLayout<UInt16>.stride)

            let inputLimit = input + (count - Self.inputMargin)
            var ip = input + 1
            var nextHash = Self.hash(ip.loadUnaligned(as: UInt32.self), shift: shift)
            search: while true {
                // Skip faster through data that does not compress: after 32
                // misses look at every second byte, after 64 every third...
                var skip: UInt32 = 32
                var nextIp = ip
                var candidate: UnsafeRawPointer
                repeat {
                    ip = nextIp
                    let hash = nextHash
                    nextIp = ip + Int(skip >> 5)
                    skip &+= 1
                    if nextIp > inputLimit { break search }
                    nextHash = Self.hash(nextIp.loadUnaligned(as: UInt32.self), shift: shift)
                    candidate = input + Int(table[hash])
                    table[hash] = UInt16(truncatingIfNeeded: ip - input)
                } while ip.loadUnaligned(as: UInt32.self) != candidate.loadUnaligned(as: UInt32.self)

                op = Self.emitLiteral(op, from: nextEmit, count: ip - nextEmit, inputHasSlack: true)
                repeat {
                    let matchStart = ip
                    let matched = 4 + Self.matchLength(candidate + 4, ip + 4, limit: inputEnd)
                    ip += matched
                    op = Self.emitCopy(op, offset: matchStart - candidate, count: matched)
                    nextEmit = ip
                    if ip >= inputLimit { break search }
                    let previous = Self.hash((ip - 1).loadUnaligned(as: UInt32.self), shift: shift)
                    table[previous] = UInt16(truncatingIfNeeded: ip - 1 - input)
                    let current = Self.hash(ip.loadUnaligned(as: UInt32.self), shift: shift)
                    candidate = input + Int(table[current])
                    table[current] = UInt16(truncatingIfNeeded: ip - input)
                } while ip.loadUnaligned(as: UInt32.self) == candidate.loadUnaligned(as: UInt32.self)
                ip += 1
                nextHash = Self.hash(ip.loadUnaligned(as: UInt32.self), shift: shift)
            }
        }
        if nextEmit < inputEnd {
            op = Self.emitLiteral(op, from: nextEmit, count: inputEnd - nextEmit, inputHasSlack: false)
        }
        return op
    }

    /// How many bytes at `a` and `b` agree, `b` not passing `limit`; `a` is before `b`.
    @inline(__always)
    private static func matchLength(_ a: UnsafeRawPointer, _ b: UnsafeRawPointer, limit: UnsafeRawPointer) -> Int {
        var matched = 0
        while limit - b - matched >= 8 {
            let difference =
                a.loadUnaligned(fromByteOffset: matched, as: UInt64.self)
                ^ b.loadUnaligned(fromByteOffset: matched, as: UInt64.self)
            if difference != 0 {
                return matched + UInt64(littleEndian: difference).trailingZeroBitCount >> 3
            }
            matched += 8
        }
        while b + matched < limit
            && a.load(fromByteOffset: matched, as: UInt8.self) == b.load(fromByteOffset: matched, as: UInt8.self)
        {
            matched += 1
        }
        return matched
    }

    @inline(__always)
    private static func emitLiteral(
        _ output: UnsafeMutableRawPointer, from literal: UnsafeRawPointer, count: Int, inputHasSlack: Bool
    ) -> UnsafeMutableRawPointer {
        var op = output
        let n = count - 1
        if n < 60 {
            op.storeBytes(of: UInt8(n << 2), as: UInt8.self)
            op += 1
            if inputHasSlack && count <= 16 {
                // A fixed 16-byte copy beats memcpy for short literals. The main
                // loop keeps 15 bytes of input past every literal it emits, and
                // maxCompressedLength leaves the output more slack than that.
                op.storeBytes(of: literal.loadUnaligned(as: UInt64.self), as: UInt64.self)
                op.storeBytes(of: literal.loadUnaligned(fromByteOffset: 8, as: UInt64.self), toByteOffset: 8, as: UInt64.self)
                return op + count
            }
        } else {
            var extra = 0
            var value = n
            while value > 0 {
                extra += 1
                value >>= 8
            }
            op.storeBytes(of: UInt8((59 + extra) << 2), as: UInt8.self)
            op += 1
            for index in 0..<extra {
                op.storeBytes(of: UInt8(truncatingIfNeeded: n >> (8 * index)), toByteOffset: index, as: UInt8.self)
            }
            op += extra
        }
        op.copyMemory(from: literal, byteCount: count)
        return op + count
    }

    @inline(__always)
    private static func emitCopy(_ output: UnsafeMutableRawPointer, offset: Int, count: Int) -> UnsafeMutableRawPointer {
        var op = output
        var remaining = count
        // Copies carry at most 64 bytes; keep the last piece at 4 or more.
        while remaining >= 68 {
            op = emitCopyUpTo64(op, offset: offset, count: 64)
            remaining -= 64
        }
        if remaining > 64 {
            op = emitCopyUpTo64(op, offset: offset, count: 60)
            remaining -= 60
        }
        return emitCopyUpTo64(op, offset: offset, count: remaining)
    }

    @inline(__always)
    private static func emitCopyUpTo64(_ op: UnsafeMutableRawPointer, offset: Int, count: Int) -> UnsafeMutableRawPointer {
        if count < 12 && offset < 2048 {
            op.storeBytes(of: UInt8(1 | ((count - 4) << 2) | ((offset >> 8) << 5)), as: UInt8.self)
            op.storeBytes(of: UInt8(truncatingIfNeeded: offset), toByteOffset: 1, as: UInt8.self)
            return op + 2
        }
        op.storeBytes(of: UInt8(2 | ((count - 1) << 2)), as: UInt8.self)
        op.storeBytes(of: UInt16(truncatingIfNeeded: offset).littleEndian, toByteOffset: 1, as: UInt16.self)
        return op + 3
    }
}

extension Snappy {
    /// Compresses a byte array into one raw block (tests and small data).
    public static func compress(_ bytes: [UInt8]) -> [UInt8] {
        let compressor = SnappyCompressor()
        var output = [UInt8](repeating: 0, count: maxCompressedLength(bytes.count))
        let written = bytes.withUnsafeBytes { source in
            output.withUnsafeMutableBytes { compressor.compress(source, into: $0) }
        }
        output.removeSubrange(written...)
        return output
    }

    /// Decodes one raw block, refusing to allocate more than `limit` bytes for it.
    /// - Throws: `SnappyError`.
    public static func decompress(_ block: [UInt8], limit: Int = 1 << 24) throws -> [UInt8] {
        let length = try block.withUnsafeBytes { try declaredLength($0).length }
        guard length <= limit else { throw SnappyError.declaredLengthTooLarge(declared: length, limit: limit) }
        var output = [UInt8](repeating: 0, count: length)
        _ = try block.withUnsafeBytes { raw in
            try output.withUnsafeMutableBytes { try decompress(raw, into: $0) }
        }
        return output
    }
}
