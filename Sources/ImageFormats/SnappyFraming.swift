// Snappy's framing format, as AVML writes it inside each compressed record.
//
//   stream := identifier chunk*
//   chunk  := type:u8 length:u24le body[length]
//   0xff  stream identifier, body "sNaPpY" (may repeat: streams concatenate)
//   0x00  compressed data:   masked CRC-32C:u32le of the uncompressed bytes,
//                            then one raw Snappy block of at most 65,536 bytes
//   0x01  uncompressed data: masked CRC-32C:u32le, then at most 65,536 bytes
//   0x02-0x7f reserved: a reader must stop
//   0x80-0xfe skippable (0xfe is padding)

/// Limits and helpers shared by the frame encoder and decoder.
public enum SnappyFraming {
    /// The chunk every framed stream starts with.
    public static let streamIdentifier: [UInt8] = [0xff, 0x06, 0x00, 0x00, 0x73, 0x4e, 0x61, 0x50, 0x70, 0x59]
    /// The most uncompressed bytes one data chunk may carry.
    public static let maxChunkData = 1 << 16
    /// Chunk type and 24-bit length.
    public static let chunkHeaderSize = 4

    /// Room `SnappyFrameEncoder.encode` needs for `sourceLength` bytes, including the
    /// scratch space it compresses the last chunk into.
    public static func maxFramedLength(_ sourceLength: Int) -> Int {
        let chunks = (sourceLength + maxChunkData - 1) / maxChunkData
        return streamIdentifier.count + chunks * (chunkHeaderSize + 4) + sourceLength
            + Snappy.maxCompressedLength(maxChunkData) - maxChunkData
    }
}

/// Writes complete framed streams into caller-owned buffers.
///
/// Compresses each chunk straight into its place in the output and falls back
/// to an uncompressed chunk when Snappy saves less than an eighth, so
/// incompressible memory (keys, encrypted pages) costs eight bytes a chunk.
public final class SnappyFrameEncoder {
    private let compressor = SnappyCompressor()

    public init() {}

    /// Encodes `source` as one framed stream.
    ///
    /// - Parameters:
    ///   - source: the bytes to frame.
    ///   - destination: at least `SnappyFraming.maxFramedLength(source.count)` bytes.
    /// - Returns: the length of the stream written.
    public func encode(_ source: UnsafeRawBufferPointer, into destination: UnsafeMutableRawBufferPointer) -> Int {
        precondition(destination.count >= SnappyFraming.streamIdentifier.count, "framing output buffer too small")
        UnsafeMutableRawBufferPointer(rebasing: destination[..<SnappyFraming.streamIdentifier.count])
            .copyBytes(from: SnappyFraming.streamIdentifier)
        return appendChunks(source, into: destination, at: SnappyFraming.streamIdentifier.count)
    }

    /// Appends the data chunks of `source` to a stream being built in `destination`,
    /// so a block read in pieces is compressed piece by piece while each is in cache.
    /// Every chunk but the last of `source` holds 64 KiB, so pieces that are
    /// multiples of 64 KiB give exactly the stream `encode` gives for the whole.
    ///
    /// - Parameters:
    ///   - source: the next bytes of the stream.
    ///   - destination: the stream's buffer.
    ///   - offset: where the stream ends so far; at least
    ///     `SnappyFraming.maxFramedLength(source.count) - 10` bytes must follow it.
    /// - Returns: where the stream ends now.
    public func appendChunks(_ source: UnsafeRawBufferPointer, into destination: UnsafeMutableRawBufferPointer, at offset: Int)
        -> Int
    {
        precondition(
            destination.count - offset >= SnappyFraming.maxFramedLength(source.count) - SnappyFraming.streamIdentifier.count,
            "framing output buffer too small")
        guard let dst = destination.baseAddress else { return offset }
        var op = offset
        var consumed = 0
        while consumed < source.count {
            let count = min(SnappyFraming.maxChunkData, source.count - consumed)
            let chunk = UnsafeRawBufferPointer(rebasing: source[consumed..<consumed + count])
            let crc = CRC32C.masked(CRC32C.checksum(chunk))
            let bodyStart = op + SnappyFraming.chunkHeaderSize + 4
            let compressedSize = compressor.compress(
                chunk,
                into: UnsafeMutableRawBufferPointer(
                    rebasing: destination[bodyStart..<bodyStart + Snappy.maxCompressedLength(count)]))
            let type: UInt8
            let bodySize: Int
            if compressedSize < count - count / 8 {
                type = 0x00
                bodySize = compressedSize
            } else {
                type = 0x01
                bodySize = count
                UnsafeMutableRawBufferPointer(rebasing: destination[bodyStart..<bodyStart + count]).copyMemory(from: chunk)
            }
            let length = UInt32(bodySize + 4)
            dst.storeBytes(of: (UInt32(type) | length << 8).littleEndian, toByteOffset: op, as: UInt32.self)
            dst.storeBytes(of: crc.littleEndian, toByteOffset: op + 4, as: UInt32.self)
            op = bodyStart + bodySize
            consumed += count
        }
        return op
    }
}

/// Decodes a framed stream one chunk at a time, so callers can read chunks from
/// a file without holding the whole stream.
public struct SnappyFrameDecoder {
    private var sawStreamIdentifier = false

    public init() {}

    /// Decodes one chunk.
    ///
    /// - Parameters:
    ///   - type: the chunk's type byte.
    ///   - body: the chunk's body (its length is at most 16 MiB by construction).
    ///   - output: at least `SnappyFraming.maxChunkData` bytes.
    /// - Returns: how many bytes the chunk decoded to (0 for identifier, padding and skippable chunks).
    /// - Throws: `SnappyError` for reserved types, bad lengths, corrupt blocks and CRC mismatches.
    public mutating func decodeChunk(
        type: UInt8, body: UnsafeRawBufferPointer, into output: UnsafeMutableRawBufferPointer
    ) throws(SnappyError) -> Int {
        if type == 0xff {
            guard body.elementsEqual(SnappyFraming.streamIdentifier[4...]) else { throw .badStreamIdentifier }
            sawStreamIdentifier = true
            return 0
        }
        guard sawStreamIdentifier else { throw .missingStreamIdentifier }
        switch type {
        case 0x00, 0x01:
            guard body.count >= 4 else { throw .badChunkLength(type: type, length: body.count) }
            let stored = UInt32(littleEndian: body.loadUnaligned(as: UInt32.self))
            let data = UnsafeRawBufferPointer(rebasing: body[4...])
            let window = UnsafeMutableRawBufferPointer(rebasing: output[..<SnappyFraming.maxChunkData])
            let produced: Int
            if type == 0x00 {
                produced = try Snappy.decompress(data, into: window)
            } else {
                guard data.count <= SnappyFraming.maxChunkData else {
                    throw .badChunkLength(type: type, length: body.count)
                }
                UnsafeMutableRawBufferPointer(rebasing: window[..<data.count]).copyMemory(from: data)
                produced = data.count
            }
            let computed = CRC32C.masked(CRC32C.checksum(UnsafeRawBufferPointer(rebasing: window[..<produced])))
            guard computed == stored else { throw .crcMismatch(stored: stored, computed: computed) }
            return produced
        case 0x02...0x7f:
            throw .reservedChunk(type: type)
        default:
            return 0
        }
    }
}

extension SnappyFraming {
    /// Frames a byte array (tests and small data).
    public static func encode(_ bytes: [UInt8]) -> [UInt8] {
        var output = [UInt8](repeating: 0, count: maxFramedLength(bytes.count))
        let written = bytes.withUnsafeBytes { source in
            output.withUnsafeMutableBytes { SnappyFrameEncoder().encode(source, into: $0) }
        }
        output.removeSubrange(written...)
        return output
    }

    /// Decodes a whole framed stream held in memory, refusing to produce more than `limit` bytes.
    /// - Throws: `SnappyError`.
    public static func decode(_ stream: [UInt8], limit: Int = 1 << 26) throws -> [UInt8] {
        var decoder = SnappyFrameDecoder()
        var result: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: maxChunkData)
        var offset = 0
        if stream.isEmpty { throw SnappyError.missingStreamIdentifier }
        while offset < stream.count {
            guard stream.count - offset >= chunkHeaderSize else {
                throw SnappyError.badChunkLength(type: stream[offset], length: stream.count - offset)
            }
            let type = stream[offset]
            let length = Int(stream[offset + 1]) | Int(stream[offset + 2]) << 8 | Int(stream[offset + 3]) << 16
            let bodyStart = offset + chunkHeaderSize
            guard length <= stream.count - bodyStart else { throw SnappyError.badChunkLength(type: type, length: length) }
            let produced = try stream.withUnsafeBytes { raw in
                try chunk.withUnsafeMutableBytes { out in
                    try decoder.decodeChunk(
                        type: type, body: UnsafeRawBufferPointer(rebasing: raw[bodyStart..<bodyStart + length]), into: out)
                }
            }
            guard produced <= limit - result.count else {
                throw SnappyError.declaredLengthTooLarge(declared: result.count + produced, limit: limit)
            }
            result += chunk[..<produced]
            offset = bodyStart + length
        }
        return result
    }
}
