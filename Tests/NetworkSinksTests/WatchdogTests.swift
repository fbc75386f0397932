import Testing

@testable import NetworkSinks

/// The watchdog's decisions, at chosen instants: which limit ends an attempt, and when
/// it looks again. Settings: connect 10 s, idle 120 s, a 1 MiB body at 64 KiB/s (16 s),
/// so the deadline is 146 s after the start; an error body's grace is 0.5 s.
struct WatchdogTests {
    let start = ContinuousClock.now
    let watchdog: Watchdog

    init() {
        watchdog = Watchdog(settings: TransferSettings(), bodyBytes: 1 << 20, started: start)
    }

    func at(_ seconds: Double) -> ContinuousClock.Instant { start + .milliseconds(Int64(seconds * 1000)) }

    func expired(at seconds: Double) -> String? {
        watchdog.decision(at: at(seconds)).expired.map { "\($0)" }
    }

    @Test func connectingLongerThanTheConnectLimitEndsTheAttempt() {
        #expect(watchdog.decision(at: at(9.9)).expired == nil && watchdog.decision(at: at(9.9)).next == at(10))
        let decision = watchdog.decision(at: at(10))
        #expect(decision.next == nil && expired(at: 10) == "\(HTTPExchangeError.connectTimedOut(seconds: 10))")
    }

    @Test func progressMovesTheIdleLimitButNotTheDeadline() {
        watchdog.enter(.sending, at: at(1))
        #expect(watchdog.decision(at: at(120)).next == at(121))
        #expect(expired(at: 121) == "\(HTTPExchangeError.idle(sending: true, seconds: 120))")
        watchdog.progress(at: at(100))
        #expect(expired(at: 121) == nil && watchdog.decision(at: at(121)).next == at(146))
        // Progress all along: the deadline still ends a body that trickles in.
        watchdog.progress(at: at(145))
        #expect(expired(at: 146) == "\(HTTPExchangeError.deadlineExceeded(seconds: 146))")
    }

    @Test func waitingForTheAnswerIsAnIdleLimitOfTheReader() {
        watchdog.enter(.waiting, at: at(2))
        #expect(expired(at: 122) == "\(HTTPExchangeError.idle(sending: false, seconds: 120))")
    }

    @Test func anErrorBodyGetsItsGraceAndThenTheConnectionClosesWithoutAnError() {
        watchdog.enter(.readingErrorBody, at: at(3))
        #expect(watchdog.decision(at: at(3.4)).expired == nil && watchdog.decision(at: at(3.4)).next == at(3.5))
        let end = watchdog.decision(at: at(3.5))
        #expect(end.expired == nil && end.next == nil)
        // The writer finishing later does not move the phase back nor take the grace away.
        watchdog.enter(.sending, at: at(3.2))
        #expect(watchdog.decision(at: at(3.5)).next == nil)
    }
}
