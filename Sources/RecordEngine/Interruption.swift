import Synchronization

/// Set when the responder asks a capture to stop (SIGINT, SIGTERM). Pipelines
/// look at it between blocks and fail with `Interrupted`, so the usual failure
/// path runs: the incomplete image is removed and the manifest says why.
public enum Interruption {
    private static let flag = Atomic<Bool>(false)

    public static func request() {
        flag.store(true, ordering: .relaxed)
    }

    public static var requested: Bool {
        flag.load(ordering: .relaxed)
    }

    /// Throws once a stop has been requested.
    public static func check() throws(Interrupted) {
        if requested { throw Interrupted() }
    }
}

/// The capture or conversion was stopped by a signal.
public struct Interrupted: Error, CustomStringConvertible {
    public var description: String { "interrupted by a signal before the image was complete" }
}
