import Capture
import NIOCore
import RecordEngine

/// An image streamed straight into an Azure Block Blob (`avml stream blob`): no local file.
///
/// Records are gathered into blocks of `plan.blockSize`. The sink starts one task that
/// runs `BlockUploader` for the whole stream; each full block is handed to it through
/// a `Handoff`, so the capture's writer thread waits while `plan.concurrency` blocks
/// are in flight and memory stays within `(concurrency + 1) × blockSize` (at most
/// 500 MiB plus the block being filled).
///
/// Lifecycle, called by one owner: `write`*, then exactly one of `finish()` (the last
/// block, then Put Block List and Get Block List; `receipt` holds the result) or
/// `abort()` (cancels the blocks in flight, commits nothing). A block that fails after
/// its retries stops the stream at the next `write`.
public final class AzureBlockBlobSink: ImageSink {
    public let plan: BlockPlan
    private let blob: AzureBlockBlob
    private let handoff: Handoff<Block>
    private let uploads: Pending<Int>
    private var current: ByteBuffer
    private var nextIndex = 0
    private var written: UInt64 = 0
    private var closed = false
    /// What was committed, once `finish()` returned.
    public private(set) var receipt: UploadReceipt?

    /// Prepares a stream to `sasURL` and starts its uploader; nothing is sent until the first block is full.
    ///
    /// - Parameters:
    ///   - sasURL: the blob's URL with a SAS token that may create and write it.
    ///   - estimatedSize: the image's expected size (`BlockPlan.streamEstimate`).
    ///   - blockSizeMiB: `--sas-block-size`.
    ///   - concurrency: `--sas-block-concurrency`.
    ///   - settings: retries, time-outs, proxy and CA bundle.
    /// - Throws: `UploadError` for a bad URL or an estimate beyond Azure's limits.
    public init(
        sasURL: String, estimatedSize: UInt64, blockSizeMiB: UInt64? = nil, concurrency: Int? = nil,
        settings: TransferSettings
    ) throws(UploadError) {
        let destination = try UploadURL(sasURL)
        let plan = try BlockPlan(size: estimatedSize, blockSizeMiB: blockSizeMiB, concurrency: concurrency)
        let blob = try AzureBlockBlob(url: destination, settings: settings)
        let handoff = Handoff<Block>()
        self.handoff = handoff
        self.plan = plan
        self.blob = blob
        current = ByteBufferAllocator().buffer(capacity: Int(plan.blockSize))
        // The total is not known while streaming: messages say "block N".
        uploads = Blocking.start {
            try await BlockUploader.upload(
                to: blob, concurrency: plan.concurrency, total: nil, counter: nil, failed: { handoff.fail($0) }
            ) { () throws(UploadError) in try await handoff.next() }
        }
    }

    deinit {
        if !closed { abort() }
    }

    /// The first block failure, if any: the error to report rather than the pipeline's.
    public var failure: UploadError? {
        guard let failure = handoff.failure, !failure.isCancellation else { return nil }
        return failure
    }

    /// Bytes accepted so far.
    public var bytesWritten: UInt64 { written }

    public func write(_ bytes: UnsafeRawBufferPointer) throws(UploadError) {
        if let failure = handoff.failure { throw failure }
        var remaining = bytes
        while !remaining.isEmpty {
            let room = Int(plan.blockSize) - current.readableBytes
            let step = min(room, remaining.count)
            current.writeBytes(UnsafeRawBufferPointer(rebasing: remaining[..<step]))
            remaining = UnsafeRawBufferPointer(rebasing: remaining[step...])
            written += UInt64(step)
            if current.readableBytes == Int(plan.blockSize) {
                try submitCurrentBlock()
            }
        }
    }

    /// Hands the filled block to the uploader, waiting until it has a free slot.
    private func submitCurrentBlock() throws(UploadError) {
        guard UInt64(nextIndex) < BlockPlan.maximumBlocks else {
            throw .streamLargerThanPlanned(blocks: nextIndex + 1, blockSize: plan.blockSize)
        }
        let range = written - UInt64(current.readableBytes)..<written
        let block = Block(index: nextIndex, range: range, body: .bytes(current))
        current = ByteBufferAllocator().buffer(capacity: Int(plan.blockSize))
        nextIndex += 1
        try handoff.send(block)
    }

    /// Sends the last, partial block, waits for every block, and commits the block list.
    ///
    /// - Throws: the first block's failure, or the commit's; then nothing is committed.
    public func finish() throws(UploadError) {
        guard !closed else { return }
        do {
            if current.readableBytes > 0 { try submitCurrentBlock() }
        } catch {
            abort()
            throw error
        }
        closed = true
        handoff.finish()
        let count: Int
        do {
            count = try uploads.wait()
        } catch {
            throw failure ?? error as? UploadError ?? .cancelled
        }
        let (blob, size, blockSize) = (self.blob, written, plan.blockSize)
        do {
            receipt = try Blocking.run { try await blob.commit(blockCount: count, size: size, blockSize: blockSize) }
        } catch {
            throw error as? UploadError ?? .cancelled
        }
    }

    /// Cancels the blocks in flight, waits for them to stop, and commits nothing.
    public func abort() {
        guard !closed else { return }
        closed = true
        handoff.fail(.cancelled)
        uploads.cancel()
        _ = try? uploads.wait()
    }
}
