import Glibc
import Synchronization

/// One line of progress on standard error — bytes, rate, ETA — redrawn at most four
/// times a second, and only when standard error is a terminal (never in a log file).
final class TransferProgressLine: Sendable {
    private struct State {
        var started: UInt64 = 0
        var lastDrawn: UInt64 = 0
        var drawn = false
    }

    private let label: String
    private let state = Mutex(State())

    /// A progress line for `label`, or nil when standard error is not a terminal.
    static func make(_ label: String) -> TransferProgressLine? {
        isatty(2) == 1 ? TransferProgressLine(label: label) : nil
    }

    private init(label: String) {
        self.label = label
        state.withLock { $0.started = Self.nowNanoseconds() }
    }

    /// The callback the library calls with bytes done and the total.
    var callback: @Sendable (UInt64, UInt64) -> Void {
        { [self] done, total in update(done: done, total: total) }
    }

    func update(done: UInt64, total: UInt64) {
        let now = Self.nowNanoseconds()
        let text: String? = state.withLock { state in
            guard done >= total || now - state.lastDrawn >= 250_000_000 else { return nil }
            state.lastDrawn = now
            state.drawn = true
            return Self.render(label: label, done: done, total: total, elapsed: now - state.started)
        }
        if let text { FileHandleStandardError.write("\r" + text + "\u{1b}[K") }
    }

    /// Clears the line so a message can be printed in its place.
    func clear() {
        if state.withLock({ $0.drawn }) { FileHandleStandardError.write("\r\u{1b}[K") }
    }

    /// Ends the line, leaving the last figures on screen.
    func finish() {
        if state.withLock({ $0.drawn }) { FileHandleStandardError.write("\n") }
    }

    /// `label: 1.2 GiB of 4.0 GiB (30%), 85.3 MiB/s, ETA 0:32`
    static func render(label: String, done: UInt64, total: UInt64, elapsed: UInt64) -> String {
        let seconds = Double(elapsed) / 1e9
        let rate = seconds > 0 ? Double(done) / seconds : 0
        var text = "\(label): \(size(Double(done))) of \(size(Double(total)))"
        if total > 0 { text += " (\(min(100, done * 100 / total))%)" }
        text += ", \(size(rate))/s"
        if rate > 0 && total > done {
            text += ", ETA \(clock(Double(total - done) / rate))"
        }
        return text
    }

    static func size(_ bytes: Double) -> String {
        let units = ["B", "KiB", "MiB", "GiB", "TiB"]
        var value = bytes
        var unit = 0
        while value >= 1024 && unit < units.count - 1 {
            value /= 1024
            unit += 1
        }
        if unit == 0 { return "\(Int(value)) B" }
        let tenths = Int((value * 10).rounded())
        return "\(tenths / 10).\(tenths % 10) \(units[unit])"
    }

    static func clock(_ seconds: Double) -> String {
        let total = Int(seconds.rounded(.up))
        let (hours, minutes, rest) = (total / 3600, total / 60 % 60, total % 60)
        let two = { (value: Int) in value < 10 ? "0\(value)" : "\(value)" }
        return hours > 0 ? "\(hours):\(two(minutes)):\(two(rest))" : "\(minutes):\(two(rest))"
    }

    private static func nowNanoseconds() -> UInt64 {
        var time = timespec()
        clock_gettime(CLOCK_MONOTONIC, &time)
        return UInt64(time.tv_sec) * 1_000_000_000 + UInt64(time.tv_nsec)
    }
}
