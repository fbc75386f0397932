import Dispatch
import Synchronization

/// Runs async work from synchronous code (the command line, the image pipeline's
/// writer thread) and waits for it.
///
/// Only for threads outside Swift's concurrency pool: the waiting thread blocks while
/// the work runs on the pool and on SwiftNIO's event loops.
public enum Blocking {
    /// Runs `body` to completion and returns its result or throws its error.
    public static func run<T: Sendable>(_ body: @escaping @Sendable () async throws -> T) throws -> T {
        try start(body).wait()
    }

    /// Starts `body` and returns at once; `wait()` on the result blocks until it is done.
    static func start<T: Sendable>(_ body: @escaping @Sendable () async throws -> T) -> Pending<T> {
        let pending = Pending<T>()
        pending.task = Task {
            let result: Result<T, any Error>
            do {
                result = .success(try await body())
            } catch {
                result = .failure(error)
            }
            pending.complete(result)
        }
        return pending
    }
}

/// Async work started by `Blocking.start`: waited for from synchronous code, cancellable.
final class Pending<T: Sendable>: Sendable {
    private let outcome = Mutex<Result<T, any Error>?>(nil)
    private let handle = Mutex<Task<Void, Never>?>(nil)
    private let done = DispatchSemaphore(value: 0)

    fileprivate var task: Task<Void, Never>? {
        get { handle.withLock { $0 } }
        set { handle.withLock { $0 = newValue } }
    }

    fileprivate func complete(_ result: Result<T, any Error>) {
        outcome.withLock { $0 = result }
        done.signal()
    }

    /// Blocks until the work is done; returns its result or throws its error. May be called again.
    func wait() throws -> T {
        done.wait()
        done.signal()  // for the next waiter
        guard let result = outcome.withLock({ $0 }) else { throw UploadError.cancelled }
        return try result.get()
    }

    /// Cancels the work (it still has to end; `wait()` for that).
    func cancel() {
        task?.cancel()
    }
}
