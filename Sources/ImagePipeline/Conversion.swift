import Glibc
import ImageFormats
import MemorySources

/// `avml convert`: moves an image between raw, LiME and AVML's compressed format
/// with AVML's rules, so uncompressed output is byte-identical to AVML's.
///
/// - raw → image: 16 MiB blocks from offset 0, all-zero blocks left out.
/// - LiME → compressed: each record re-cut into 16 MiB blocks, zero blocks left out.
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
    /// - Throws: `ConvertError`, `ImageError`, `SourceError` or `OutputError`.
    public func run(progress: (@Sendable (UInt64, UInt64) -> Void)? = nil) throws -> PipelineStatistics {
        guard sourceFormat != format else { throw ConvertError.noConversionRequired(format) }
        try refuseToOverwriteSource()
        switch (sourceFormat, format) {
        case (.raw, _):
            let reader = try LinearMemoryReader(path: source)
            let size = reader.fileSize
            guard size > 0 else { throw ImageError(.empty, path: source) }
            var producer = MemoryBlockProducer(reader: reader, ranges: [0..<size], zeroFillUnreadable: false)
            let report = progress.map { report in { @Sendable (done: UInt64) in report(done, size) } }
            return try writeImage(to: destination) { output in
                try RecordPipeline(compressed: format == .limeCompressed, threads: threads).run(
                    &producer, to: output, progress: report)
            }
        case (_, .raw):
            let reader = try ImageReader(path: source)
            return try writeImage(to: destination) { try Self.writeRaw(from: reader, to: $0, progress: progress) }
        case (_, .limeCompressed):
            var producer = ImageBlockProducer(reader: try ImageReader(path: source), progress: progress)
            return try writeImage(to: destination) { output in
                try RecordPipeline(compressed: true, threads: threads).run(&producer, to: output)
            }
        case (_, .lime):
            let reader = try ImageReader(path: source)
            return try writeImage(to: destination) { try Self.writeLime(from: reader, to: $0, progress: progress) }
        }
    }

    private func refuseToOverwriteSource() throws {
        var sourceInfo = stat()
        var destinationInfo = stat()
        guard stat(source, &sourceInfo) == 0, lstat(destination, &destinationInfo) == 0 else { return }
        if sourceInfo.st_dev == destinationInfo.st_dev && sourceInfo.st_ino == destinationInfo.st_ino {
            throw ConvertError.destinationIsSource(destination)
        }
    }

    /// Every record at its own address; gaps, and memory before the first record, are zeros.
    static func writeRaw(
        from reader: ImageReader, to output: ImageFile, progress: (@Sendable (UInt64, UInt64) -> Void)?
    ) throws -> PipelineStatistics {
        var statistics = PipelineStatistics()
        try withBlockBuffer { buffer in
            while let record = try reader.nextRecord() {
                if record.header.start > output.offset {
                    try output.skipZeros(record.header.start - output.offset)
                }
                while case let count = try reader.readBody(into: buffer), count > 0 {
                    try Interruption.check()
                    try output.write(UnsafeRawBufferPointer(rebasing: buffer[..<count]))
                    statistics.memoryBytes += UInt64(count)
                    progress?(reader.position, reader.fileSize)
                }
                statistics.records += 1
            }
        }
        statistics.bytesWritten = output.offset
        return statistics
    }

    /// AVML's decompression: a compressed record becomes one LiME record over the
    /// same range, all-zero or not; a LiME record met on the way is re-cut and
    /// zero-skipped as AVML's block copy does.
    static func writeLime(
        from reader: ImageReader, to output: ImageFile, progress: (@Sendable (UInt64, UInt64) -> Void)?
    ) throws -> PipelineStatistics {
        var statistics = PipelineStatistics()
        try withBlockBuffer { buffer in
            while let record = try reader.nextRecord() {
                if record.header.compressed {
                    try output.write(RecordHeader(compressed: false, start: record.header.start, end: record.header.end).bytes)
                    while case let count = try reader.readBody(into: buffer), count > 0 {
                        try Interruption.check()
                        try output.write(UnsafeRawBufferPointer(rebasing: buffer[..<count]))
                        progress?(reader.position, reader.fileSize)
                    }
                    statistics.records += 1
                    statistics.memoryBytes += record.header.length
                    continue
                }
                var start = record.header.start
                while case let count = try reader.readBody(into: buffer), count > 0 {
                    try Interruption.check()
                    let block = UnsafeRawBufferPointer(rebasing: buffer[..<count])
                    if isAllZero(block) {
                        statistics.zeroBlocksSkipped += 1
                        statistics.zeroBytesSkipped += UInt64(count)
                    } else {
                        try output.write(RecordHeader(compressed: false, start: start, end: start + UInt64(count) - 1).bytes)
                        try output.write(block)
                        statistics.records += 1
                        statistics.memoryBytes += UInt64(count)
                    }
                    start &+= UInt64(count)
                    progress?(reader.position, reader.fileSize)
                }
            }
        }
        statistics.bytesWritten = output.offset
        return statistics
    }
}

extension ImageFile {
    func write(_ bytes: [UInt8]) throws {
        try bytes.withUnsafeBytes { try write($0) }
    }
}

/// Runs `body` with a 16 MiB buffer, the size of one record.
func withBlockBuffer<T>(_ body: (UnsafeMutableRawBufferPointer) throws -> T) throws -> T {
    let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: RecordPipeline.blockSize, alignment: 4096)
    defer { buffer.deallocate() }
    return try body(buffer)
}

/// Creates `path`, runs `body` on it, and flushes it; removes the file if anything fails,
/// so an incomplete image never looks like a complete one.
public func writeImage<T>(to path: String, _ body: (ImageFile) throws -> T) throws -> T {
    let output = try ImageFile(path: path)
    do {
        let result = try body(output)
        try output.finish()
        return result
    } catch {
        do {
            try output.discard()
        } catch let removal {
            throw IncompleteImageLeft(cause: error, removal: removal)
        }
        throw error
    }
}
