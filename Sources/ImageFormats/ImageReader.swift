import SystemPackage

/// A record found in an image file.
public struct ImageRecord: Sendable, Equatable {
    public var header: RecordHeader
    /// Byte offset of the record's header in the file.
    public var offset: UInt64

    public init(header: RecordHeader, offset: UInt64) {
        self.header = header
        self.offset = offset
    }
}

/// Reads the records of a LiME or AVML image in file order, checking all that
/// the format lets a reader check: headers, ascending non-overlapping ranges,
/// chunk types, CRCs, decoded lengths and the compressed-size trailers.
///
/// Reads are positional and bounded: a 1 MiB buffer for headers and chunks,
/// and record bodies go straight into the caller's buffer.
public final class ImageReader {
    public let path: String
    /// Size of the file when it was opened.
    public let fileSize: UInt64

    private static let bufferCapacity = 1 << 20
    /// No encoder emits a data chunk over 4 + 5 × 65,536 bytes (every element
    /// yields a byte for at most five); anything longer is corrupt, not large.
    private static let maxDataChunk = 4 + 5 * SnappyFraming.maxChunkData + 5

    private let descriptor: FileDescriptor
    private let buffer: UnsafeMutableRawBufferPointer
    private var bufferOffset: UInt64 = 0
    private var bufferCount = 0
    /// The next file offset to consume.
    public private(set) var position: UInt64 = 0
    private var previousEnd: UInt64?
    private var body = Body.none

    private enum Body {
        case none
        case lime(record: ImageRecord, remaining: UInt64)
        /// `undecoded`: bytes the framed stream must still produce; decoded bytes
        /// not yet handed out wait in `chunk[pending]`.
        case avml(record: ImageRecord, undecoded: UInt64, streamStart: UInt64, decoder: SnappyFrameDecoder)
    }

    /// One decoded chunk, for callers that ask for less than a chunk at a time.
    private let chunk: UnsafeMutableRawBufferPointer
    private var pending = 0..<0

    /// Opens an image for reading.
    ///
    /// - Throws: `ImageError` when the file cannot be opened or is empty.
    public init(path: String) throws(ImageError) {
        self.path = path
        do {
            descriptor = try FileDescriptor.open(FilePath(path), .readOnly, options: [.closeOnExec])
        } catch {
            throw ImageError(.open(error as? Errno ?? .ioError), path: path)
        }
        do {
            fileSize = UInt64(try descriptor.seek(offset: 0, from: .end))
        } catch {
            try? descriptor.close()
            throw ImageError(.read(error as? Errno ?? .ioError), path: path)
        }
        if fileSize == 0 {
            try? descriptor.close()
            throw ImageError(.empty, path: path)
        }
        buffer = .allocate(byteCount: Self.bufferCapacity, alignment: 16)
        chunk = .allocate(byteCount: SnappyFraming.maxChunkData, alignment: 16)
    }

    deinit {
        buffer.deallocate()
        chunk.deallocate()
        try? descriptor.close()
    }

    /// Moves to the next record's header, skipping what is left of the current body.
    ///
    /// - Returns: the record, or nil at the end of the file.
    /// - Throws: `ImageError` for a truncated or invalid header, or a record that
    ///   overlaps or precedes the one before it.
    public func nextRecord() throws(ImageError) -> ImageRecord? {
        try skipBody()
        if position == fileSize { return nil }
        let headerOffset = position
        let bytes = try take(RecordHeader.size, what: "a record header")
        let header: RecordHeader
        do {
            header = try RecordHeader.decode(bytes)
        } catch {
            throw ImageError(.header(error), path: path, offset: headerOffset)
        }
        let record = ImageRecord(header: header, offset: headerOffset)
        if let previousEnd, header.start <= previousEnd {
            throw ImageError(.outOfOrder(previousEnd: previousEnd), path: path, offset: headerOffset, record: header)
        }
        previousEnd = header.end
        if header.compressed {
            body = .avml(record: record, undecoded: header.length, streamStart: position, decoder: SnappyFrameDecoder())
        } else {
            body = .lime(record: record, remaining: header.length)
        }
        return record
    }

    /// Reads the next bytes of the current record's memory into `destination`.
    ///
    /// - Returns: `min(destination.count, bytes left in the record)`; 0 once the
    ///   record is complete (for compressed records, its trailer checked).
    /// - Throws: `ImageError` for truncation, corrupt chunks, a stream that decodes
    ///   to more or less than the record holds, or a wrong trailer.
    public func readBody(into destination: UnsafeMutableRawBufferPointer) throws(ImageError) -> Int {
        switch body {
        case .none:
            return 0
        case .lime(let record, let remaining):
            let count = Int(min(remaining, UInt64(destination.count)))
            try readExactly(into: UnsafeMutableRawBufferPointer(rebasing: destination[..<count]), record: record)
            body = remaining == UInt64(count) ? .none : .lime(record: record, remaining: remaining - UInt64(count))
            return count
        case .avml(let record, var undecoded, let streamStart, var decoder):
            var filled = 0
            while filled < destination.count {
                if !pending.isEmpty {
                    let count = min(pending.count, destination.count - filled)
                    destination.baseAddress.unsafelyUnwrapped.advanced(by: filled)
                        .copyMemory(from: chunk.baseAddress.unsafelyUnwrapped + pending.lowerBound, byteCount: count)
                    pending = pending.lowerBound + count..<pending.upperBound
                    filled += count
                    continue
                }
                guard undecoded > 0 else { break }
                // Decode straight into the caller's buffer when a whole chunk fits.
                let direct = destination.count - filled >= SnappyFraming.maxChunkData
                let target = direct ? UnsafeMutableRawBufferPointer(rebasing: destination[filled...]) : chunk
                let produced = try decodeChunk(record: record, decoder: &decoder, into: target)
                guard UInt64(produced) <= undecoded else {
                    throw ImageError(
                        .decodedTooMuch(declared: record.header.length), path: path, offset: position, record: record.header)
                }
                undecoded -= UInt64(produced)
                if direct { filled += produced } else { pending = 0..<produced }
                if undecoded == 0 { try checkTrailer(record: record, streamStart: streamStart) }
            }
            if undecoded == 0 && pending.isEmpty {
                body = .none
            } else {
                body = .avml(record: record, undecoded: undecoded, streamStart: streamStart, decoder: decoder)
            }
            return filled
        }
    }

    /// Finishes the current record: LiME bodies are skipped, compressed ones decoded and checked.
    public func skipBody() throws(ImageError) {
        switch body {
        case .none:
            return
        case .lime(let record, let remaining):
            try skip(remaining, what: "record data", record: record.header)
            body = .none
        case .avml:
            // Decoding into `chunk` itself is safe here: the bytes are discarded.
            while try readBody(into: chunk) > 0 {}
        }
    }

    /// Reads chunks until one yields data (or the record is shown corrupt).
    private func decodeChunk(
        record: ImageRecord, decoder: inout SnappyFrameDecoder, into target: UnsafeMutableRawBufferPointer
    ) throws(ImageError) -> Int {
        while true {
            let chunkOffset = position
            let header = try take(SnappyFraming.chunkHeaderSize, what: "a compressed chunk header", record: record.header)
            let type = header[0]
            let length = Int(header[1]) | Int(header[2]) << 8 | Int(header[3]) << 16
            if type >= 0x80 && type != 0xff {
                try skip(UInt64(length), what: "a skippable chunk", record: record.header)
                continue
            }
            guard length <= Self.maxDataChunk else {
                throw ImageError(.chunkTooLarge(length), path: path, offset: chunkOffset, record: record.header)
            }
            let chunkBody = try take(length, what: "a compressed chunk", record: record.header)
            do {
                let produced = try decoder.decodeChunk(type: type, body: chunkBody, into: target)
                if produced > 0 { return produced }
            } catch {
                throw ImageError(.snappy(error), path: path, offset: chunkOffset, record: record.header)
            }
        }
    }

    /// Checks the u64 after the stream against the stream's length. Padding or
    /// skippable chunks may still follow the last data chunk; they belong to the stream.
    private func checkTrailer(record: ImageRecord, streamStart: UInt64) throws(ImageError) {
        while true {
            let streamLength = position - streamStart
            let trailerOffset = position
            let trailer = try take(8, what: "the compressed-size trailer", record: record.header)
            let stored = UInt64(littleEndian: trailer.loadUnaligned(as: UInt64.self))
            if stored == streamLength { return }
            let type = trailer[0]
            let chunkLength = UInt64(trailer[1]) | UInt64(trailer[2]) << 8 | UInt64(trailer[3]) << 16
            position = trailerOffset
            guard (0x80...0xfe).contains(type), chunkLength + 4 + 8 <= fileSize - position else {
                throw ImageError(
                    .trailerMismatch(stored: stored, actual: streamLength), path: path, offset: trailerOffset,
                    record: record.header)
            }
            position += 4 + chunkLength
        }
    }

    // MARK: - Buffered positional reads

    /// Returns the next `count` (≤ 1 MiB) bytes, valid until the next read.
    private func take(_ count: Int, what: String, record: RecordHeader? = nil) throws(ImageError) -> UnsafeRawBufferPointer {
        precondition(count <= Self.bufferCapacity)
        guard UInt64(count) <= fileSize - position else {
            throw ImageError(.truncated(what), path: path, offset: position, record: record)
        }
        let bufferEnd = bufferOffset + UInt64(bufferCount)
        if position < bufferOffset || position + UInt64(count) > bufferEnd {
            bufferOffset = position
            bufferCount = 0
            let wanted = Int(min(UInt64(Self.bufferCapacity), fileSize - position))
            bufferCount = try preadFully(
                into: UnsafeMutableRawBufferPointer(rebasing: buffer[..<wanted]), at: position, record: record)
            guard bufferCount >= count else {
                throw ImageError(.truncated(what), path: path, offset: position, record: record)
            }
        }
        let start = Int(position - bufferOffset)
        position += UInt64(count)
        return UnsafeRawBufferPointer(rebasing: buffer[start..<start + count])
    }

    private func skip(_ count: UInt64, what: String, record: RecordHeader?) throws(ImageError) {
        guard count <= fileSize - position else {
            throw ImageError(.truncated(what), path: path, offset: position, record: record)
        }
        position += count
    }

    private func readExactly(into destination: UnsafeMutableRawBufferPointer, record: ImageRecord) throws(ImageError) {
        guard UInt64(destination.count) <= fileSize - position else {
            throw ImageError(.truncated("record data"), path: path, offset: position, record: record.header)
        }
        var filled = 0
        // Use what the buffer already holds, then read the rest directly.
        let bufferEnd = bufferOffset + UInt64(bufferCount)
        if position >= bufferOffset && position < bufferEnd {
            let start = Int(position - bufferOffset)
            filled = min(destination.count, bufferCount - start)
            destination.baseAddress?.copyMemory(from: buffer.baseAddress.unsafelyUnwrapped + start, byteCount: filled)
        }
        if filled < destination.count {
            let rest = UnsafeMutableRawBufferPointer(rebasing: destination[filled...])
            let got = try preadFully(into: rest, at: position + UInt64(filled), record: record.header)
            guard got == rest.count else {
                throw ImageError(
                    .truncated("record data"), path: path, offset: position + UInt64(filled + got), record: record.header)
            }
        }
        position += UInt64(destination.count)
    }

    private func preadFully(into destination: UnsafeMutableRawBufferPointer, at offset: UInt64, record: RecordHeader?)
        throws(ImageError) -> Int
    {
        do {
            return try descriptor.readFully(into: destination, atOffset: offset)
        } catch {
            throw ImageError(.read(error.errno), path: path, offset: offset + UInt64(error.done), record: record)
        }
    }
}
