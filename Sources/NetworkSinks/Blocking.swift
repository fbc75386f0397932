import Dispatch
import Synchronization

/// Runs async work from synchronous code (the command line, the image pipeline's
/// writer thread) and waits for it.
///
/// Only for threads outside Swift's concurrency pool: the calling thread blocks
/// until the task is done, while the work runs on the pool and on async-http-client's
/// event loops.
public enum Blocking {
    /// Runs `body` to completion and returns its result or throws its error.
    public static func run<T: Sendable>(_ body: @escaping @Sendable () async throws -> T) throws -> T {
        let outcome = Locked<Result<T, Error>?>(nil)
        let done = DispatchSemaphore(value: 0)
        Task {
            let result: Result<T, Error>
            do {
                result = .success(try await body())
            } catch {
                result = .failure(error)
            }
            outcome.set(result)
            done.signal()
        }
        done.wait()
        guard let result = outcome.get() else { throw UploadError.cancelled }
        return try result.get()
    }
}

/// A value shared between threads behind a lock.
final class Locked<Value: Sendable>: Sendable {
    private let storage: Mutex<Value>

    init(_ value: Value) {
        storage = Mutex(value)
    }

    func get() -> Value {
        storage.withLock { $0 }
    }

    func set(_ value: Value) {
        storage.withLock { $0 = value }
    }

    /// Runs `body` on the value under the lock.
    func update<R: Sendable>(_ body: (inout Value) -> R) -> R {
        storage.withLock { body(&$0) }
    }
}
