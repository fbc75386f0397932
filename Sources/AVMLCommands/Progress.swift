import Capture
import Glibc
import ImageFormats
import RecordEngine
import Synchronization

/// Percent, bytes, rate and ETA on one self-overwriting stderr line, only when
/// stderr is a terminal (logs and pipes stay clean) and `--quiet` is not given.
public final class ProgressLine: Sendable {
    private struct State {
        var lastDrawn = 0.0
        var drawn = false
    }

    private let label: String
    private let enabled: Bool
    private let started = monotonicSeconds()
    private let state = Mutex(State())

    public init(_ label: String, quiet: Bool) {
        self.label = label
        enabled = !quiet && isatty(2) == 1
    }

    /// Redraws at most five times a second.
    public func update(_ done: UInt64, _ total: UInt64) {
        guard enabled else { return }
        let now = monotonicSeconds()
        let draw = state.withLock { state in
            guard now - state.lastDrawn >= 0.2 else { return false }
            state.lastDrawn = now
            state.drawn = true
            return true
        }
        guard draw else { return }
        let elapsed = max(now - started, 0.001)
        let rate = Double(done) / elapsed
        var text = "\r\(label) "
        if total > 0 {
            let fraction = min(1, Double(done) / Double(total))
            text += "\(formatDecimal(fraction * 100, places: 1))%  \(formatBytes(done)) / \(formatBytes(total))"
            if rate > 0 {
                text += "  \(formatBytes(UInt64(rate)))/s  ETA \(formatDuration((Double(total) - Double(done)) / rate))"
            }
        } else {
            text += "\(formatBytes(done))  \(formatBytes(UInt64(rate)))/s"
        }
        FileHandleStandardError.write(text + "\u{1b}[K")
    }

    /// The callback form the library takes.
    public var callback: (@Sendable (UInt64, UInt64) -> Void)? {
        guard enabled else { return nil }
        return { @Sendable [self] done, total in update(done, total) }
    }

    /// Clears the line so the next message starts clean.
    public func finish() {
        guard enabled, state.withLock({ $0.drawn }) else { return }
        FileHandleStandardError.write("\r\u{1b}[K")
    }
}

/// 75 → "1:15", 3700 → "1:01:40".
func formatDuration(_ seconds: Double) -> String {
    guard seconds.isFinite, seconds >= 0 else { return "?" }
    let total = Int(seconds.rounded())
    let (hours, minutes, secs) = (total / 3600, total / 60 % 60, total % 60)
    let twoDigits = { (value: Int) in value < 10 ? "0\(value)" : "\(value)" }
    return hours > 0 ? "\(hours):\(twoDigits(minutes)):\(twoDigits(secs))" : "\(minutes):\(twoDigits(secs))"
}
