import FoundationEssentials

/// How a blob is cut into Azure blocks, and how many go up at once.
///
/// Azure's limits (Put Block, Put Block List, REST version 2019-12-12 and later):
/// a block holds at most 4000 MiB, a committed blob at most 50,000 blocks, and
/// every block ID of a blob has the same length. As AVML does:
///
///     block size  = max(5 MiB, --sas-block-size, ⌈size / 50,000⌉), rounded up to a MiB,
///                   at most 4000 MiB
///     concurrency = min(--sas-block-concurrency (default 10), ⌊500 MiB / block size⌋), at least 1
///
/// so no more than 500 MiB of blocks is ever in flight (one block more while streaming,
/// the one being filled). For a stream, whose size is not known, `size` is the
/// memory to be captured plus 100 MiB (`streamEstimate(memoryBytes:)`).
public struct BlockPlan: Sendable, Equatable {
    public static let mebibyte: UInt64 = 1 << 20
    public static let minimumBlockSize: UInt64 = 5 << 20
    public static let maximumBlockSize: UInt64 = 4000 << 20
    public static let maximumBlocks: UInt64 = 50_000
    public static let maximumInFlight: UInt64 = 500 << 20
    public static let defaultConcurrency = 10
    /// Added to the memory size to estimate a streamed image (headers, incompressible data).
    public static let streamSlack: UInt64 = 100 << 20
    /// The largest blob that fits: 50,000 blocks of 4000 MiB.
    public static let maximumBlobSize: UInt64 = maximumBlocks * maximumBlockSize

    /// Bytes in every block but the last.
    public let blockSize: UInt64
    /// Blocks uploaded at the same time.
    public let concurrency: Int
    /// The size the plan was made for (the file's, or a stream's estimate).
    public let plannedSize: UInt64

    /// Plans blocks for `size` bytes.
    ///
    /// - Parameters:
    ///   - size: the file's size, or a stream's estimate.
    ///   - blockSizeMiB: `--sas-block-size`, a floor on the block size in MiB.
    ///   - concurrency: `--sas-block-concurrency`; nil for the default, 10.
    /// - Throws: `UploadError.blobTooLarge` beyond 50,000 blocks of 4000 MiB.
    public init(size: UInt64, blockSizeMiB: UInt64? = nil, concurrency: Int? = nil) throws(UploadError) {
        guard size <= Self.maximumBlobSize else { throw .blobTooLarge(size: size) }
        let needed = (size + Self.maximumBlocks - 1) / Self.maximumBlocks
        let floor = min(blockSizeMiB ?? 0, Self.maximumBlockSize / Self.mebibyte) * Self.mebibyte
        var blockSize = max(Self.minimumBlockSize, floor, needed)
        blockSize = (blockSize + Self.mebibyte - 1) / Self.mebibyte * Self.mebibyte
        self.blockSize = min(blockSize, Self.maximumBlockSize)
        let requested = max(1, concurrency ?? Self.defaultConcurrency)
        self.concurrency = max(1, min(requested, Int(Self.maximumInFlight / self.blockSize)))
        self.plannedSize = size
    }

    /// A stream's size estimate: the memory to capture plus 100 MiB.
    public static func streamEstimate(memoryBytes: UInt64) -> UInt64 {
        memoryBytes &+ streamSlack < memoryBytes ? UInt64.max : memoryBytes + streamSlack
    }

    /// Blocks needed for `size` bytes (0 for an empty blob).
    public func blockCount(for size: UInt64) -> Int {
        Int((size + blockSize - 1) / blockSize)
    }

    /// The byte range of block `index` in a blob of `size` bytes.
    public func range(ofBlock index: Int, size: UInt64) -> Range<UInt64> {
        let start = UInt64(index) * blockSize
        return start..<min(start + blockSize, size)
    }

    /// Block `index`'s ID: base64 of `avml` and the index as 8 decimal digits.
    ///
    /// Every ID has the same length (16 characters, Azure's rule for one blob), names
    /// its position in the blob (the list commits them in index order), and is made of
    /// letters and digits only (12 bytes need no `=` padding, and these bytes never
    /// produce `+` or `/`), so it goes into a URL's query unencoded.
    public static func blockID(_ index: Int) -> String {
        var digits = String(index)
        digits = String(repeating: "0", count: max(0, 8 - digits.count)) + digits
        return Data(("avml" + digits).utf8).base64EncodedString()
    }

    /// The XML body of Put Block List: every block, in order, as `<Latest>`.
    public static func blockListXML(blockCount: Int) -> String {
        var xml = "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<BlockList>\n"
        for index in 0..<blockCount {
            xml += "  <Latest>\(blockID(index))</Latest>\n"
        }
        xml += "</BlockList>\n"
        return xml
    }
}
