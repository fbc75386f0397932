import Dispatch
import Synchronization

/// One Azure block to upload: its index in the blob, its bytes' place in the image,
/// and a body every attempt can send again.
struct Block: Sendable {
    let index: Int
    let range: Range<UInt64>
    let body: HTTPBody
}

/// The one block uploader, for files and for streams: a task group that keeps at most
/// `concurrency` Put Block requests in flight.
///
/// Blocks are pulled from `next` only when a slot is free, so a stream's producer
/// (the capture's writer thread, waiting in `Handoff.send`) is held back while the
/// uploads are busy, and memory stays within the plan's bound. The first block that
/// fails after its retries ends the upload: the group cancels the blocks in flight,
/// and `failed` hears of it at once (a stream stops its capture at the next write).
enum BlockUploader {
    /// Uploads the blocks `next` hands out, until it returns nil.
    ///
    /// - Parameters:
    ///   - blob: where the blocks go.
    ///   - concurrency: the most requests in flight.
    ///   - total: the number of blocks, when known, for messages ("block 3 of 12").
    ///   - counter: progress, if shown.
    ///   - failed: told of the first failed block, before the upload ends.
    ///   - next: the next block, or nil when there are no more.
    /// - Returns: how many blocks were uploaded.
    /// - Throws: the first block's `UploadError`, or the one `next` threw.
    static func upload(
        to blob: AzureBlockBlob, concurrency: Int, total: Int?, counter: TransferCounter?,
        failed: @escaping @Sendable (UploadError) -> Void = { _ in },
        next: () async throws(UploadError) -> Block?
    ) async throws(UploadError) -> Int {
        do {
            return try await withThrowingTaskGroup(of: Void.self) { group in
                var started = 0
                var inFlight = 0
                while true {
                    if inFlight == concurrency {
                        try await group.next()
                        inFlight -= 1
                    }
                    guard let block = try await next() else { break }
                    group.addTask {
                        do throws(UploadError) {
                            try await blob.putBlock(block, count: total, counter: counter)
                        } catch {
                            if !error.isCancellation { failed(error) }
                            throw error
                        }
                    }
                    started += 1
                    inFlight += 1
                }
                try await group.waitForAll()
                return started
            }
        } catch let error as UploadError {
            throw error
        } catch {
            throw .cancelled
        }
    }
}

/// A rendezvous between one synchronous producer thread and one async consumer: `send`
/// returns once the consumer has taken the element, so nothing waits in between and
/// the producer is held back exactly while the consumer is busy.
///
/// `finish()` ends the sequence normally; `fail(_:)`, from either side, ends it with
/// an error: a waiting producer wakes and throws it, the consumer's `next()` throws it.
final class Handoff<Element: Sendable>: Sendable {
    private struct State {
        var offered: Element?
        var consumer: CheckedContinuation<Element?, any Error>?
        var finished = false
        var failure: UploadError?
    }

    private let state = Mutex(State())
    /// Signalled once for every offered element the consumer took, and once by `fail` for one it did not.
    private let taken = DispatchSemaphore(value: 0)

    /// Hands `element` to the consumer, blocking the calling thread until it is taken.
    ///
    /// Only for a thread outside Swift's concurrency pool (the capture's writer).
    /// - Throws: the failure given to `fail(_:)`.
    func send(_ element: Element) throws(UploadError) {
        let step = state.withLock { state -> HandoffSendStep<Element> in
            if let failure = state.failure { return .failed(failure) }
            if let consumer = state.consumer {
                state.consumer = nil
                return .delivered(consumer)
            }
            state.offered = element
            return .wait
        }
        switch step {
        case .failed(let failure):
            throw failure
        case .delivered(let consumer):
            consumer.resume(returning: element)
        case .wait:
            taken.wait()
            // Still offered: `fail` woke us instead of the consumer.
            let failure = state.withLock { state -> UploadError? in
                guard state.offered != nil else { return nil }
                state.offered = nil
                return state.failure ?? .cancelled
            }
            if let failure { throw failure }
        }
    }

    /// No more elements: the consumer's `next()` returns nil once it has taken the last.
    func finish() {
        let consumer = state.withLock { state -> CheckedContinuation<Element?, any Error>? in
            state.finished = true
            defer { state.consumer = nil }
            return state.consumer
        }
        consumer?.resume(returning: nil)
    }

    /// Ends the hand-off with `failure` (the first one given is kept).
    func fail(_ failure: UploadError) {
        let (consumer, wakeProducer) = state.withLock { state -> (CheckedContinuation<Element?, any Error>?, Bool) in
            guard state.failure == nil else { return (nil, false) }
            state.failure = failure
            defer { state.consumer = nil }
            return (state.consumer, state.offered != nil)
        }
        if wakeProducer { taken.signal() }
        consumer?.resume(throwing: failure)
    }

    /// The first failure given to `fail(_:)`, if any.
    var failure: UploadError? { state.withLock { $0.failure } }

    /// The next element; nil after `finish()`.
    /// - Throws: the failure given to `fail(_:)`; `.cancelled` if the calling task is cancelled.
    func next() async throws(UploadError) -> Element? {
        do {
            return try await withTaskCancellationHandler {
                try await withCheckedThrowingContinuation { (consumer: CheckedContinuation<Element?, any Error>) in
                    let step = state.withLock { state -> HandoffNextStep<Element> in
                        if let failure = state.failure { return .failed(failure) }
                        if let element = state.offered {
                            state.offered = nil
                            return .element(element)
                        }
                        if state.finished { return .end }
                        state.consumer = consumer
                        return .wait
                    }
                    switch step {
                    case .element(let element):
                        taken.signal()
                        consumer.resume(returning: element)
                    case .end:
                        consumer.resume(returning: nil)
                    case .failed(let failure):
                        consumer.resume(throwing: failure)
                    case .wait:
                        break
                    }
                }
            } onCancel: {
                fail(.cancelled)
            }
        } catch let error as UploadError {
            throw error
        } catch {
            throw .cancelled
        }
    }
}

/// What `Handoff.send` does once it has looked at the state.
private enum HandoffSendStep<Element: Sendable> {
    case delivered(CheckedContinuation<Element?, any Error>)
    case wait
    case failed(UploadError)
}

/// What `Handoff.next` does once it has looked at the state.
private enum HandoffNextStep<Element: Sendable> {
    case element(Element)
    case end
    case failed(UploadError)
    case wait
}

extension UploadError {
    /// True for `.cancelled`: a block stopped because another failed, not a failure of its own.
    var isCancellation: Bool {
        if case .cancelled = self { return true }
        return false
    }
}
