import Testing

@testable import NetworkSinks

struct RetryPolicyTests {
    let policy = RetryPolicy()
    let now: Int64 = 1_445_412_480  // Wed, 21 Oct 2015 07:28:00 GMT

    @Test(arguments: [
        (408, true),  // request timeout
        (429, true),  // too many requests
        (500, true),
        (503, true),  // server busy
        (599, true),
        (400, false),
        (401, false),
        (403, false),  // bad or expired signature: sending again cannot help
        (404, false),
        (409, false),
        (413, false),
        (301, false),
    ])
    func retryableStatuses(status: Int, retryable: Bool) {
        #expect(RetryPolicy.isRetryable(status: status) == retryable)
        let delay = policy.delay(after: .status(status, retryAfter: nil), attempt: 1, jitter: 0, now: now)
        #expect((delay != nil) == retryable)
    }

    @Test func backoffDoublesWithEqualJitterUpToTheCap() {
        // attempt n waits between half and all of 0.5 s × 2^(n-1), at most 30 s
        #expect(policy.backoff(attempt: 1, jitter: 0) == .milliseconds(250))
        #expect(policy.backoff(attempt: 1, jitter: 1) == .milliseconds(500))
        #expect(policy.backoff(attempt: 2, jitter: 0.5) == .milliseconds(750))
        #expect(policy.backoff(attempt: 4, jitter: 1) == .seconds(4))
        #expect(policy.backoff(attempt: 7, jitter: 1) == .seconds(30))
        #expect(policy.backoff(attempt: 7, jitter: 0) == .seconds(15))
        #expect(policy.backoff(attempt: 200, jitter: 1) == .seconds(30))
    }

    @Test func givesUpAfterEightAttempts() {
        for attempt in 1...7 {
            #expect(policy.delay(after: .transportFailure, attempt: attempt, jitter: 0.3, now: now) != nil)
        }
        #expect(policy.delay(after: .transportFailure, attempt: 8, jitter: 0.3, now: now) == nil)
        #expect(policy.delay(after: .status(503, retryAfter: "1"), attempt: 8, jitter: 0, now: now) == nil)
    }

    @Test func permanentFailuresAreNotRetried() {
        #expect(policy.delay(after: .permanentFailure, attempt: 1, jitter: 0, now: now) == nil)
    }

    @Test func retryAfterReplacesTheBackoffAndIsCapped() {
        #expect(policy.delay(after: .status(503, retryAfter: "7"), attempt: 1, jitter: 1, now: now) == .seconds(7))
        #expect(policy.delay(after: .status(429, retryAfter: "0"), attempt: 3, jitter: 1, now: now) == .zero)
        #expect(policy.delay(after: .status(503, retryAfter: "86400"), attempt: 1, jitter: 0, now: now) == .seconds(300))
        // an unreadable Retry-After falls back to the backoff
        #expect(policy.delay(after: .status(503, retryAfter: "soon"), attempt: 1, jitter: 1, now: now) == .milliseconds(500))
        // Retry-After on a status that is not retried changes nothing
        #expect(policy.delay(after: .status(403, retryAfter: "1"), attempt: 1, jitter: 0, now: now) == nil)
    }

    @Test(arguments: [
        ("120", Duration.seconds(120)),
        (" 3 ", .seconds(3)),
        ("0", .zero),
        ("Wed, 21 Oct 2015 07:28:10 GMT", .seconds(10)),  // IMF-fixdate
        ("Wednesday, 21-Oct-15 07:29:00 GMT", .seconds(60)),  // RFC 850
        ("Wed Oct 21 07:28:30 2015", .seconds(30)),  // asctime
        ("Wed Oct  1 07:28:30 2015", .zero),  // asctime, one-digit day, in the past
        ("Tue, 20 Oct 2015 07:28:00 GMT", .zero),  // a date in the past: no wait
        ("99999999999999999999", .seconds(999_999_999)),  // absurd, clamped later by the policy
    ])
    func parsesRetryAfter(value: String, expected: Duration) {
        #expect(RetryAfter.parse(value, now: now) == expected)
    }

    @Test(arguments: [
        "", "-5", "1.5", "soon", "Wed, 32 Oct 2015 07:28:00 GMT", "Wed, 21 Foo 2015 07:28:00 GMT",
        "Wed, 21 Oct 2015 25:00:00 GMT",
    ])
    func rejectsInvalidRetryAfter(value: String) {
        #expect(RetryAfter.parse(value, now: now) == nil)
    }

    @Test func httpDatesMatchKnownEpochSeconds() {
        #expect(RetryAfter.parseHTTPDate("Thu, 01 Jan 1970 00:00:00 GMT") == 0)
        #expect(RetryAfter.parseHTTPDate("Sun, 06 Nov 1994 08:49:37 GMT") == 784_111_777)
        #expect(RetryAfter.parseHTTPDate("Tue, 29 Feb 2000 12:00:00 GMT") == 951_825_600)
    }
}
