import Dispatch
import Synchronization
import Testing

@testable import NetworkSinks

/// The rendezvous between the capture's writer thread and the async block uploader.
struct HandoffTests {
    /// Runs `body` on a thread of its own (like the pipeline's writer), not on Swift's pool.
    private func onThread(_ body: @escaping @Sendable () -> Void) -> DispatchSemaphore {
        let done = DispatchSemaphore(value: 0)
        Thread.detach {
            body()
            done.signal()
        }
        return done
    }

    /// Waits for a semaphore without blocking a thread of Swift's pool.
    private func wait(for done: DispatchSemaphore) async {
        await withCheckedContinuation { continuation in
            DispatchQueue.global().async {
                done.wait()
                continuation.resume()
            }
        }
    }

    @Test func elementsArriveInOrderThenTheEnd() async throws {
        let handoff = Handoff<Int>()
        let producer = onThread {
            for value in 0..<20 { try? handoff.send(value) }
            handoff.finish()
        }
        var received: [Int] = []
        while let value = try await handoff.next() { received.append(value) }
        await wait(for: producer)
        #expect(received == Array(0..<20))
        #expect(try await handoff.next() == nil)
    }

    @Test func sendWaitsUntilTheConsumerTakesTheElement() async throws {
        let handoff = Handoff<Int>()
        let blocked = Mutex(Duration.zero)
        let producer = onThread {
            let started = ContinuousClock.now
            try? handoff.send(7)
            blocked.withLock { $0 = .now - started }
        }
        try await Task.sleep(for: .milliseconds(200))
        #expect(try await handoff.next() == 7)
        await wait(for: producer)
        #expect(blocked.withLock { $0 } >= .milliseconds(150))
    }

    @Test func failWakesAWaitingProducerAndEndsTheConsumer() async throws {
        let handoff = Handoff<Int>()
        let producerError = Mutex<UploadError?>(nil)
        let producer = onThread {
            do throws(UploadError) {
                try handoff.send(1)  // nobody takes it
            } catch {
                producerError.withLock { $0 = error }
            }
        }
        try await Task.sleep(for: .milliseconds(50))
        handoff.fail(.streamLargerThanPlanned(blocks: 1, blockSize: 1))
        producer.wait()
        guard case .streamLargerThanPlanned = producerError.withLock({ $0 }) else {
            Issue.record("the producer was not woken with the failure")
            return
        }
        await #expect(throws: UploadError.self) { _ = try await handoff.next() }
        #expect(throws: UploadError.self) { try handoff.send(2) }
    }

    @Test func aCancelledConsumerFailsTheHandoff() async throws {
        let handoff = Handoff<Int>()
        let consumer = Task { try await handoff.next() }
        try await Task.sleep(for: .milliseconds(20))
        consumer.cancel()
        await #expect(throws: UploadError.self) { _ = try await consumer.value }
        #expect(handoff.failure?.isCancellation == true)
        #expect(throws: UploadError.self) { try handoff.send(1) }
    }
}

/// A detached OS thread, as the image pipeline's writer is.
private enum Thread {
    static func detach(_ body: @escaping @Sendable () -> Void) {
        DispatchQueue(label: "avml.test.producer").async(execute: body)
    }
}
