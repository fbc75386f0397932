import Dispatch
import ImagePipeline
import NIOCore

/// An image streamed straight into an Azure Block Blob (`avml stream blob`): no local file.
///
/// Records are gathered into blocks of `plan.blockSize`; each full block is handed
/// to its own upload task, at most `plan.concurrency` at once. The pipeline's writer
/// waits while that many are in flight, so memory stays within
/// `(concurrency + 1) × blockSize` (at most 500 MiB plus one block). A block that
/// fails after its retries stops the stream at the next write; `finish()` commits
/// the block list only when every block is in, `abort()` cancels and commits nothing.
public final class AzureBlockBlobSink: ImageSink {
    public let plan: BlockPlan
    private let blob: AzureBlockBlob
    private let slots: DispatchSemaphore
    private let outstanding = DispatchGroup()
    private let state = Locked(SinkState())
    private var current: ByteBuffer
    private var nextIndex = 0
    private var written: UInt64 = 0
    private var closed = false

    struct SinkState: Sendable {
        var failure: UploadError?
        var tasks: [Int: Task<Void, Never>] = [:]
    }

    /// Prepares a stream to `sasURL`; nothing is sent until the first block is full.
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
        plan = try BlockPlan(size: estimatedSize, blockSizeMiB: blockSizeMiB, concurrency: concurrency)
        blob = try AzureBlockBlob(url: destination, settings: settings)
        slots = DispatchSemaphore(value: plan.concurrency)
        current = ByteBufferAllocator().buffer(capacity: Int(plan.blockSize))
    }

    deinit {
        if !closed { abort() }
    }

    /// The first block failure, if any: the error to report rather than the pipeline's.
    public var failure: UploadError? { state.get().failure }

    /// Bytes accepted so far.
    public var bytesWritten: UInt64 { written }

    public func write(_ bytes: UnsafeRawBufferPointer) throws {
        if let failure = state.get().failure { throw failure }
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

    /// Hands the filled block to an upload task, waiting for a free slot first.
    private func submitCurrentBlock() throws(UploadError) {
        guard UInt64(nextIndex) < BlockPlan.maximumBlocks else {
            throw .streamLargerThanPlanned(blocks: nextIndex + 1, blockSize: plan.blockSize)
        }
        slots.wait()
        if let failure = state.get().failure {
            slots.signal()
            throw failure
        }
        let block = current
        current = ByteBufferAllocator().buffer(capacity: Int(plan.blockSize))
        let index = nextIndex
        nextIndex += 1
        let start = written - UInt64(block.readableBytes)
        let range = start..<written
        outstanding.enter()
        // Started under the lock, so the task cannot finish and remove itself
        // before it is registered (which would leave a stale entry behind).
        state.update { sinkState in
            sinkState.tasks[index] = Self.startUpload(
                block, index: index, range: range, blob: blob, state: state, slots: slots, outstanding: outstanding)
        }
    }

    /// Starts the task that uploads one block and then frees its slot.
    private static func startUpload(
        _ block: ByteBuffer, index: Int, range: Range<UInt64>, blob: AzureBlockBlob, state: Locked<SinkState>,
        slots: DispatchSemaphore, outstanding: DispatchGroup
    ) -> Task<Void, Never> {
        Task {
            await send(block, index: index, range: range, blob: blob, state: state)
            state.update { $0.tasks[index] = nil }
            slots.signal()
            outstanding.leave()
        }
    }

    /// Uploads one block, recording the first real failure (a cancellation only if nothing else failed).
    private static func send(
        _ block: ByteBuffer, index: Int, range: Range<UInt64>, blob: AzureBlockBlob, state: Locked<SinkState>
    ) async {
        do {
            // The total is not known while streaming: messages say "block N".
            try await blob.putBlock(index: index, count: nil, range: range, counter: nil) { _ in .bytes(block) }
        } catch {
            state.update { state in
                if state.failure == nil || state.failure.map(isCancellation) == true { state.failure = error }
            }
        }
    }

    /// What was committed, once `finish` succeeded.
    public private(set) var receipt: UploadReceipt?

    /// Sends the last, partial block, waits for every block, and commits the block list.
    /// - Throws: the first block's failure, or the commit's; then nothing is committed.
    public func finish() throws {
        receipt = try commitBlocks()
    }

    private func commitBlocks() throws -> UploadReceipt {
        if current.readableBytes > 0 { try submitCurrentBlock() }
        outstanding.wait()
        closed = true
        let blob = self.blob
        if let failure = state.get().failure {
            try? Blocking.run { await blob.shutdown() }
            throw failure
        }
        let count = nextIndex
        let size = written
        let blockSize = plan.blockSize
        return try Blocking.run {
            do {
                try await blob.commit(blockCount: count)
                let verified = try await blob.verifyCommitted(blockCount: count, size: size)
                await blob.shutdown()
                return UploadReceipt(
                    url: blob.url.description, bytes: size, blocks: count, blockSize: blockSize, blockListVerified: verified)
            } catch {
                await blob.shutdown()
                throw error
            }
        }
    }

    /// Cancels the blocks in flight and commits nothing.
    public func abort() {
        guard !closed else { return }
        closed = true
        state.update { state in
            for task in state.tasks.values { task.cancel() }
        }
        outstanding.wait()
        let blob = self.blob
        try? Blocking.run { await blob.shutdown() }
    }

    private static func isCancellation(_ error: UploadError) -> Bool {
        if case .cancelled = error { return true }
        return false
    }
}
