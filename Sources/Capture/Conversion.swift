import Glibc
import ImageFormats
import MemorySources
import RecordEngine

/// `avml convert`: moves an image between raw, LiME and AVML's compressed format
/// with AVML's rules, so uncompressed output is byte-identical to AVML's.
///
/// - raw → image: 16 MiB blocks from offset 0, all-zero blocks left out.
/// - LiME → compressed: each record re-cut into 16 MiB blocks, zero blocks left out.
/// - compressed → compressed: only for an image with records Volatility 3 cannot
///   open (AVML's own, for one); they are re-cut as a capture cuts them.
/// - compressed → LiME: one LiME record per compressed record, same range.
/// - image → raw: each record at its own address, gaps zero-filled.
///
/// As in AVML, each record's own header says how to decode it; the source
/// format only tells a raw file from an image.
public struct Conversion: Sendable {
    public var source: String
    public var sourceFormat: ImageFormat
    public var destination: String
    public var format: ImageFormat
    public var threads: Int
    public var memoryBudget = RecordPipeline.defaultMemoryBudget

    /// The most zeros written for one gap where the output cannot seek (a pipe):
    /// a hostile or mistaken image must not stream zeros without end.
    public static let maximumStreamedGap: UInt64 = 1 << 36

    public init(source: String, sourceFormat: ImageFormat, destination: String, format: ImageFormat, threads: Int) {
        self.source = source
        self.sourceFormat = sourceFormat
        self.destination = destination
        self.format = format
        self.threads = threads
    }

    /// Converts, leaving no destination file behind on failure.
    /// - Parameter progress: source bytes read so far, and the source's size.
    /// - Returns: what was written.
    /// - Throws: `CaptureError`: `.refused` (no conversion required, the
    ///   destination is the source), `.source` (a bad image), `.destination`.
    public func run(progress: (@Sendable (UInt64, UInt64) -> Void)? = nil) throws(CaptureError) -> PipelineResult {
        if namesSameFile(source, destination) { throw .refused(ConvertError.destinationIsSource(destination)) }
        if sourceFormat == format {
            guard format == .limeCompressed, try !volatilityUnreadableRecords().isEmpty else {
                throw .refused(ConvertError.noConversionRequired(format))
            }
        }
        let pipeline = RecordPipeline(compressed: format == .limeCompressed, threads: threads, memoryBudget: memoryBudget)
        switch (sourceFormat, format) {
        case (.raw, _):
            let reader = try asSource { try LinearMemoryReader(path: source) }
            let size = reader.fileSize
            guard size > 0 else { throw .source(ImageError(.empty, path: source)) }
            let producer = MemoryBlockProducer(reader: reader, ranges: [0..<size], zeroFillUnreadable: false)
            return try withOutput { sink throws(CaptureError) in
                do throws(PipelineFailure) {
                    return try pipeline.run(producer, to: sink) { progress?($0, size) }
                } catch {
                    throw CaptureError(error)
                }
            }
        case (_, .limeCompressed):
            let reader = try asSource { try ImageReader(path: source) }
            return try withOutput { sink throws(CaptureError) in
                do throws(PipelineFailure) {
                    return try pipeline.run(ImageBlockProducer(reader: reader, progress: progress), to: sink)
                } catch {
                    throw CaptureError(error)
                }
            }
        case (_, .raw):
            let reader = try asSource { try ImageReader(path: source) }
            return try withOutput { sink throws(CaptureError) in try Self.writeRaw(from: reader, to: sink, progress: progress) }
        case (_, .lime):
            let reader = try asSource { try ImageReader(path: source) }
            return try withOutput { sink throws(CaptureError) in try Self.writeLime(from: reader, to: sink, progress: progress) }
        }
    }

    /// Records of the source that Volatility 3 cannot open, found by walking (and checking) the whole image.
    private func volatilityUnreadableRecords() throws(CaptureError) -> [RecordSummary] {
        try asSource { try ImageSummary.read(path: source).volatilityUnreadable }
    }

    private func withOutput(_ body: (ImageFile) throws(CaptureError) -> PipelineResult) throws(CaptureError) -> PipelineResult {
        let output = try asDestination { try ImageFile(path: destination) }
        return try withSink(output) { _ throws(CaptureError) in try body(output) }
    }

    /// Every record at its own address; gaps, and memory before the first record, are zeros.
    static func writeRaw(
        from reader: ImageReader, to output: ImageFile, progress: (@Sendable (UInt64, UInt64) -> Void)?
    ) throws(CaptureError) -> PipelineResult {
        var result = PipelineResult()
        try withBlockBuffer { buffer throws(CaptureError) in
            while let record = try asSource({ try reader.nextRecord() }) {
                if record.header.start > output.offset {
                    let gap = record.header.start - output.offset
                    if !output.canRestart && gap > maximumStreamedGap {
                        throw .destination(ConvertError.gapTooLargeForStream(gap: gap, record: record))
                    }
                    try asDestination { try output.skipZeros(gap) }
                }
                while case let count = try asSource({ try reader.readBody(into: buffer) }), count > 0 {
                    try checkInterruption()
                    try asDestination { try output.write(UnsafeRawBufferPointer(rebasing: buffer[..<count])) }
                    result.statistics.memoryBytes += UInt64(count)
                    progress?(reader.position, reader.fileSize)
                }
                result.statistics.records += 1
            }
        }
        result.statistics.bytesWritten = output.offset
        return result
    }

    /// AVML's decompression: a compressed record becomes one LiME record over the
    /// same range, all-zero or not; a LiME record met on the way is re-cut and
    /// zero-skipped as AVML's block copy does.
    static func writeLime(
        from reader: ImageReader, to output: ImageFile, progress: (@Sendable (UInt64, UInt64) -> Void)?
    ) throws(CaptureError) -> PipelineResult {
        var result = PipelineResult()
        try withBlockBuffer { buffer throws(CaptureError) in
            while let record = try asSource({ try reader.nextRecord() }) {
                if record.header.compressed {
                    try asDestination {
                        try output.write(
                            RecordHeader(compressed: false, start: record.header.start, end: record.header.end).bytes)
                    }
                    while case let count = try asSource({ try reader.readBody(into: buffer) }), count > 0 {
                        try checkInterruption()
                        try asDestination { try output.write(UnsafeRawBufferPointer(rebasing: buffer[..<count])) }
                        progress?(reader.position, reader.fileSize)
                    }
                    result.statistics.records += 1
                    result.statistics.memoryBytes += record.header.length
                    continue
                }
                var start = record.header.start
                while case let count = try asSource({ try reader.readBody(into: buffer) }), count > 0 {
                    try checkInterruption()
                    let block = UnsafeRawBufferPointer(rebasing: buffer[..<count])
                    if isAllZero(block) {
                        result.statistics.zeroBlocksSkipped += 1
                        result.statistics.zeroBytesSkipped += UInt64(count)
                    } else {
                        try asDestination {
                            try output.write(RecordHeader(compressed: false, start: start, end: start + UInt64(count) - 1).bytes)
                            try output.write(block)
                        }
                        result.statistics.records += 1
                        result.statistics.memoryBytes += UInt64(count)
                    }
                    start &+= UInt64(count)
                    progress?(reader.position, reader.fileSize)
                }
            }
        }
        result.statistics.bytesWritten = output.offset
        return result
    }
}

/// Conversions `avml convert` refuses, or cannot write.
public enum ConvertError: Error, Sendable, Equatable, CustomStringConvertible {
    case noConversionRequired(ImageFormat)
    case destinationIsSource(String)
    case gapTooLargeForStream(gap: UInt64, record: ImageRecord)

    public var description: String {
        switch self {
        case .noConversionRequired(let format):
            return "no conversion required: source and destination are both \(format)"
        case .destinationIsSource(let path):
            return "\(escapedForLog(path)) is both source and destination; writing it would destroy the source"
        case .gapTooLargeForStream(let gap, let record):
            return
                "the record \(hex(record.header.start))-\(hex(record.header.end)) at byte offset \(hex(record.offset)) "
                + "follows a gap of \(gap) bytes, which a pipe would receive as zeros (more than "
                + "\(Conversion.maximumStreamedGap >> 30) GiB); convert to a file, where gaps are sparse holes"
        }
    }
}

extension ImageFile {
    func write(_ bytes: [UInt8]) throws {
        try bytes.withUnsafeBytes { try write($0) }
    }
}

/// Runs `body`, calling what it throws the source's failure.
func asSource<T>(_ body: () throws -> T) throws(CaptureError) -> T {
    do {
        return try body()
    } catch {
        throw .source(error)
    }
}

/// Runs `body`, calling what it throws a refusal: nothing was read or written yet.
func asRefusal<T>(_ body: () throws -> T) throws(CaptureError) -> T {
    do {
        return try body()
    } catch {
        throw .refused(error)
    }
}

/// Runs `body`, calling what it throws the destination's failure.
func asDestination<T>(_ body: () throws -> T) throws(CaptureError) -> T {
    do {
        return try body()
    } catch {
        throw .destination(error)
    }
}

func checkInterruption() throws(CaptureError) {
    do {
        try Interruption.check()
    } catch {
        throw .interrupted(error)
    }
}

/// Runs `body` with a 16 MiB buffer, the size of one record.
func withBlockBuffer<T>(_ body: (UnsafeMutableRawBufferPointer) throws(CaptureError) -> T) throws(CaptureError) -> T {
    let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: RecordPipeline.blockSize, alignment: 4096)
    defer { buffer.deallocate() }
    return try body(buffer)
}
