/// When and how long to wait before sending a request again.
///
/// Pure: the caller supplies the attempt number, what went wrong and a random
/// number, so every decision can be checked in a unit test.
///
/// - Retried: connection errors and time-outs, HTTP 408, 429 and every 5xx.
/// - Not retried: any other status (4xx fails at once with the server's text),
///   TLS certificate failures, bad URLs, a local file that changed.
/// - Waits: exponential backoff from `baseDelay`, doubled each attempt up to
///   `maxDelay`, with "equal jitter" (half fixed, half random) so that many
///   blocks failing together do not retry together; a `Retry-After` header
///   from the server replaces the backoff (capped at `maxRetryAfter`).
public struct RetryPolicy: Sendable, Equatable {
    /// Attempts in all, the first included.
    public var maxAttempts: Int
    /// The backoff before the second attempt (before jitter).
    public var baseDelay: Duration
    /// The longest backoff.
    public var maxDelay: Duration
    /// The longest wait a server's `Retry-After` can ask for.
    public var maxRetryAfter: Duration

    public init(
        maxAttempts: Int = 8, baseDelay: Duration = .milliseconds(500), maxDelay: Duration = .seconds(30),
        maxRetryAfter: Duration = .seconds(300)
    ) {
        self.maxAttempts = max(1, maxAttempts)
        self.baseDelay = baseDelay
        self.maxDelay = maxDelay
        self.maxRetryAfter = maxRetryAfter
    }

    /// What came back from one attempt, as far as retrying is concerned.
    public enum Outcome: Sendable, Equatable {
        /// The server answered with this status; `retryAfter` is its `Retry-After` header.
        case status(Int, retryAfter: String?)
        /// The request failed below HTTP (refused, reset, timed out, DNS).
        case transportFailure
        /// A failure that sending again cannot fix (certificate, bad URL, local file).
        case permanentFailure
    }

    /// Whether an HTTP status is worth another attempt: 408, 429 and 5xx.
    public static func isRetryable(status: Int) -> Bool {
        status == 408 || status == 429 || (500...599).contains(status)
    }

    /// What to do after attempt number `attempt` (1 for the first) ended with `outcome`.
    ///
    /// - Parameters:
    ///   - outcome: how the attempt ended; a 2xx status is never passed here.
    ///   - attempt: the attempt that just ended, from 1.
    ///   - jitter: a random number in 0..<1.
    ///   - now: seconds since 1970, for a `Retry-After` given as an HTTP date.
    /// - Returns: the wait before the next attempt, or nil to give up.
    public func delay(after outcome: Outcome, attempt: Int, jitter: Double, now: Int64) -> Duration? {
        guard attempt < maxAttempts else { return nil }
        switch outcome {
        case .permanentFailure:
            return nil
        case .transportFailure:
            return backoff(attempt: attempt, jitter: jitter)
        case .status(let status, let retryAfter):
            guard Self.isRetryable(status: status) else { return nil }
            if let retryAfter, let wait = RetryAfter.parse(retryAfter, now: now) {
                return min(wait, maxRetryAfter)
            }
            return backoff(attempt: attempt, jitter: jitter)
        }
    }

    /// Exponential backoff with equal jitter: half of `base × 2^(attempt-1)` (capped) plus a random half.
    public func backoff(attempt: Int, jitter: Double) -> Duration {
        let exponent = min(max(attempt - 1, 0), 30)
        let ceiling = min(baseDelay * (1 << exponent), maxDelay)
        let clamped = min(max(jitter, 0), 1)
        return ceiling / 2 + ceiling / 2 * clamped
    }
}

/// The HTTP `Retry-After` header (RFC 9110 §10.2.3): delay-seconds or an HTTP-date.
public enum RetryAfter {
    /// The wait a `Retry-After` value asks for.
    ///
    /// - Parameters:
    ///   - value: the header's value, e.g. `"120"` or `"Wed, 21 Oct 2015 07:28:00 GMT"`.
    ///   - now: the current time in seconds since 1970, for dates.
    /// - Returns: the wait (zero for a date in the past), or nil if the value is not valid.
    public static func parse(_ value: String, now: Int64) -> Duration? {
        let trimmed = value.trimmingSpaces()
        guard !trimmed.isEmpty else { return nil }
        if trimmed.utf8.allSatisfy({ $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") }) {
            // Huge values are clamped by the policy; keep them from overflowing here.
            guard trimmed.utf8.count <= 9, let seconds = Int64(trimmed) else { return .seconds(Int64(999_999_999)) }
            return .seconds(seconds)
        }
        guard let date = parseHTTPDate(trimmed) else { return nil }
        return .seconds(max(0, date - now))
    }

    /// Seconds since 1970 for an HTTP-date in any of its three forms:
    /// IMF-fixdate `Sun, 06 Nov 1994 08:49:37 GMT`, RFC 850 `Sunday, 06-Nov-94 08:49:37 GMT`,
    /// and asctime `Sun Nov  6 08:49:37 1994`.
    public static func parseHTTPDate(_ text: String) -> Int64? {
        let fields = text.split(whereSeparator: { $0 == " " || $0 == "," }).map(String.init)
        var day: Int64
        var month: Int64
        var year: Int64
        var time: String
        switch fields.count {
        case 6 where fields[5] == "GMT":  // IMF-fixdate
            guard let d = Int64(fields[1]), let m = monthNumber(fields[2]), let y = Int64(fields[3]) else { return nil }
            (day, month, year, time) = (d, m, y, fields[4])
        case 4 where fields[3] == "GMT":  // RFC 850
            let parts = fields[1].split(separator: "-").map(String.init)
            guard parts.count == 3, let d = Int64(parts[0]), let m = monthNumber(parts[1]), let yy = Int64(parts[2]) else {
                return nil
            }
            // Two-digit years: RFC 9110 says to read one more than 50 years ahead as the past.
            (day, month, year, time) = (d, m, yy < 100 ? (yy < 70 ? 2000 + yy : 1900 + yy) : yy, fields[2])
        case 5:  // asctime
            guard let m = monthNumber(fields[1]), let d = Int64(fields[2]), let y = Int64(fields[4]) else { return nil }
            (day, month, year, time) = (d, m, y, fields[3])
        default:
            return nil
        }
        let clock = time.split(separator: ":").compactMap { Int64($0) }
        guard clock.count == 3, (1...31).contains(day), (0...23).contains(clock[0]), (0...59).contains(clock[1]),
            (0...60).contains(clock[2]), (1...9999).contains(year)
        else { return nil }
        return daysFromCivil(year: year, month: month, day: day) * 86_400 + clock[0] * 3600 + clock[1] * 60 + clock[2]
    }

    private static func monthNumber(_ name: String) -> Int64? {
        let months = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]
        guard let index = months.firstIndex(of: name.lowercased()) else { return nil }
        return Int64(index + 1)
    }

    /// Days from 1970-01-01 to a date of the proleptic Gregorian calendar (Howard Hinnant's algorithm).
    static func daysFromCivil(year: Int64, month: Int64, day: Int64) -> Int64 {
        let y = month <= 2 ? year - 1 : year
        let era = (y >= 0 ? y : y - 399) / 400
        let yearOfEra = y - era * 400
        let dayOfYear = (153 * (month > 2 ? month - 3 : month + 9) + 2) / 5 + day - 1
        let dayOfEra = yearOfEra * 365 + yearOfEra / 4 - yearOfEra / 100 + dayOfYear
        return era * 146_097 + dayOfEra - 719_468
    }
}

extension StringProtocol {
    func trimmingSpaces() -> String {
        let scalars = unicodeScalars
        guard let first = scalars.firstIndex(where: { !$0.properties.isWhitespace }),
            let last = scalars.lastIndex(where: { !$0.properties.isWhitespace })
        else { return "" }
        return String(String.UnicodeScalarView(scalars[first...last]))
    }
}
