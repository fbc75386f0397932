import ImageFormats
import MemorySources

/// Blocks of memory ranges read from a `MemoryReader`: each range cut into
/// 16 MiB blocks from its start, as AVML cuts them.
///
/// Pages that fail with EIO, EFAULT or ENXIO are retried one by one; those
/// that still fail are zero-filled and listed in `unreadable`, so one bad page
/// costs 4 KiB of the image rather than the whole capture.
public struct MemoryBlockProducer: BlockProducer {
    public let reader: MemoryReader
    public let ranges: [Range<UInt64>]
    /// False when a read error must fail the run (converting a raw file: a bad disk is not bad RAM).
    public let zeroFillUnreadable: Bool
    /// Zero-filled address ranges, merged, in address order.
    public private(set) var unreadable: [Range<UInt64>] = []
    private var rangeIndex = 0
    private var next: UInt64

    public init(reader: MemoryReader, ranges: [Range<UInt64>], zeroFillUnreadable: Bool = true) {
        self.reader = reader
        self.zeroFillUnreadable = zeroFillUnreadable
        self.ranges = ranges.filter { !$0.isEmpty }
        next = self.ranges.first?.lowerBound ?? 0
    }

    public mutating func nextBlock(into buffer: UnsafeMutableRawBufferPointer) throws -> ProducedBlock? {
        while rangeIndex < ranges.count && next >= ranges[rangeIndex].upperBound {
            rangeIndex += 1
            if rangeIndex < ranges.count { next = ranges[rangeIndex].lowerBound }
        }
        guard rangeIndex < ranges.count else { return nil }
        let count = Int(min(UInt64(RecordPipeline.blockSize), ranges[rangeIndex].upperBound - next, UInt64(buffer.count)))
        let block = UnsafeMutableRawBufferPointer(rebasing: buffer[..<count])
        do {
            try reader.read(into: block, at: next)
        } catch {
            guard error.isUnreadablePage && zeroFillUnreadable else { throw error }
            try readPageByPage(into: block, at: next)
        }
        let produced = ProducedBlock(start: next, count: count)
        next += UInt64(count)
        return produced
    }

    private mutating func readPageByPage(into block: UnsafeMutableRawBufferPointer, at address: UInt64) throws(SourceError) {
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

    public mutating func nextBlock(into buffer: UnsafeMutableRawBufferPointer) throws -> ProducedBlock? {
        if remaining == 0 {
            guard let record = try reader.nextRecord() else { return nil }
            next = record.header.start
            remaining = record.header.length
        }
        let count = Int(min(UInt64(RecordPipeline.blockSize), remaining, UInt64(buffer.count)))
        let read = try reader.readBody(into: UnsafeMutableRawBufferPointer(rebasing: buffer[..<count]))
        precondition(read == count, "record bodies fill the buffer until the record ends")
        progress?(reader.position, reader.fileSize)
        let produced = ProducedBlock(start: next, count: count)
        next &+= UInt64(count)
        remaining -= UInt64(count)
        return produced
    }
}
