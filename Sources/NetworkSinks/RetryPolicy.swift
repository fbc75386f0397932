import CSystemShims

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

    /// Seconds since 1970 for an HTTP-date in any of its three forms (RFC 9110 §5.6.7):
    /// IMF-fixdate `Sun, 06 Nov 1994 08:49:37 GMT`, RFC 850 `Sunday, 06-Nov-94 08:49:37 GMT`,
    /// and asctime `Sun Nov  6 08:49:37 1994`.
    ///
    /// Read by the C library's `strptime` and `timegm` (FoundationEssentials has no
    /// HTTP-date format style in Swift 6.3). Names of days and months are the C
    /// locale's; a two-digit year is 1969–2068, as `strptime` reads `%y`.
    public static func parseHTTPDate(_ text: String) -> Int64? {
        for format in ["%a, %d %b %Y %H:%M:%S GMT", "%A, %d-%b-%y %H:%M:%S GMT", "%a %b %e %H:%M:%S %Y"] {
            let seconds = avml_parse_utc_time(text, format)
            if seconds >= 0 { return Int64(seconds) }
        }
        return nil
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
