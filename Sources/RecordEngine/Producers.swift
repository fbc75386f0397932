import ImageFormats
import MemorySources

/// Blocks of memory ranges read from a `MemoryReader`: each range cut into
/// blocks from its start, 16 MiB as AVML cuts them unless told smaller. Blocks
/// are read by address, so the pipeline's workers read them in parallel.
public struct MemoryBlockProducer: BlockProducer {
    public let ranges: [Range<UInt64>]
    private let blockSize: UInt64
    private let reader: MemoryBlockReader
    private var rangeIndex = 0
    private var next: UInt64
    private var current = ProducedBlock(start: 0, count: 0)

    /// - Parameters:
    ///   - reader: the memory.
    ///   - ranges: what to read, sorted.
    ///   - zeroFillUnreadable: false when a read error must fail the run
    ///     (converting a raw file: a bad disk is not bad RAM).
    ///   - blockSize: where records are cut; the pipeline's `blockSize`.
    public init(
        reader: MemoryReader, ranges: [Range<UInt64>], zeroFillUnreadable: Bool = true,
        blockSize: Int = RecordPipeline.blockSize
    ) {
        self.blockSize = UInt64(max(1, blockSize))
        self.reader = MemoryBlockReader(reader: reader, zeroFillUnreadable: zeroFillUnreadable)
        self.ranges = ranges.filter { !$0.isEmpty }
        next = self.ranges.first?.lowerBound ?? 0
    }

    public var reading: BlockReading { .concurrent(reader) }

    public mutating func nextBlock() throws -> ProducedBlock? {
        while rangeIndex < ranges.count && next >= ranges[rangeIndex].upperBound {
            rangeIndex += 1
            if rangeIndex < ranges.count { next = ranges[rangeIndex].lowerBound }
        }
        guard rangeIndex < ranges.count else { return nil }
        let count = Int(min(blockSize, ranges[rangeIndex].upperBound - next))
        current = ProducedBlock(start: next, count: count)
        next += UInt64(count)
        return current
    }

    public mutating func read(into buffer: UnsafeMutableRawBufferPointer, at offset: Int) throws {
        _ = try reader.read(current, at: offset, into: buffer)
    }
}

/// Reads memory by address. Pages that fail with EIO, EFAULT or ENXIO are
/// retried one by one; those that still fail are zero-filled and reported, so
/// one bad page costs 4 KiB of the image rather than the whole capture.
struct MemoryBlockReader: ConcurrentBlockReader {
    let reader: MemoryReader
    let zeroFillUnreadable: Bool

    func read(_ block: ProducedBlock, at offset: Int, into buffer: UnsafeMutableRawBufferPointer) throws
        -> [Range<UInt64>]
    {
        let address = block.start + UInt64(offset)
        do {
            try reader.read(into: buffer, at: address)
            return []
        } catch {
            guard error.isUnreadablePage && zeroFillUnreadable else { throw error }
            return try readPageByPage(into: buffer, at: address)
        }
    }

    private func readPageByPage(into block: UnsafeMutableRawBufferPointer, at address: UInt64) throws(SourceError)
        -> [Range<UInt64>]
    {
        var unreadable: [Range<UInt64>] = []
        for span in PageSpans(address: address, count: block.count) {
            let pageAddress = address + UInt64(span.lowerBound)
            let page = UnsafeMutableRawBufferPointer(rebasing: block[span])
            do {
                try reader.read(into: page, at: pageAddress)
            } catch {
                guard error.isUnreadablePage else { throw error }
                page.initializeMemory(as: UInt8.self, repeating: 0)
                let range = pageAddress..<pageAddress + UInt64(span.count)
                if let last = unreadable.last, last.upperBound == range.lowerBound {
                    unreadable[unreadable.count - 1] = last.lowerBound..<range.upperBound
                } else {
                    unreadable.append(range)
                }
            }
        }
        return unreadable
    }
}

/// The records of an image re-cut into 16 MiB blocks from each record's start,
/// as AVML does when compressing an image.
public struct ImageBlockProducer: BlockProducer {
    private let reader: ImageReader
    private let progress: (@Sendable (UInt64, UInt64) -> Void)?
    private var next: UInt64 = 0
    private var remaining: UInt64 = 0

    /// - Parameters:
    ///   - reader: the image, positioned at its start.
    ///   - progress: file bytes read so far, and the file's size.
    public init(reader: ImageReader, progress: (@Sendable (UInt64, UInt64) -> Void)? = nil) {
        self.reader = reader
        self.progress = progress
    }

    /// Compressed records decode in order.
    public var reading: BlockReading { .inOrder }

    public mutating func nextBlock() throws -> ProducedBlock? {
        if remaining == 0 {
            guard let record = try reader.nextRecord() else { return nil }
            next = record.header.start
            remaining = record.header.length
        }
        let count = Int(min(UInt64(RecordPipeline.blockSize), remaining))
        let produced = ProducedBlock(start: next, count: count)
        next &+= UInt64(count)
        remaining -= UInt64(count)
        return produced
    }

    /// Record bodies are read in order, so `offset` is where the last read ended.
    public mutating func read(into buffer: UnsafeMutableRawBufferPointer, at offset: Int) throws {
        let read = try reader.readBody(into: buffer)
        precondition(read == buffer.count, "record bodies fill the buffer until the record ends")
        progress?(reader.position, reader.fileSize)
    }
}
