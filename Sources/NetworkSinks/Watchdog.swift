import NIOCore
import Synchronization

/// The time limits of one attempt, enforced by closing its connection.
///
/// Progress (a chunk handed to the connection, a part of the answer received) moves
/// the idle limit; the deadline is fixed when the attempt starts:
/// `connectTimeout + idleTimeout + body ÷ minimumRate`.
final class Watchdog: Sendable {
    /// Phases only move forward: the writer finishing after an early error answer
    /// must not take the reader's grace time away.
    enum Phase: Int, Sendable, Comparable {
        case connecting
        case sending
        case waiting
        case readingErrorBody

        static func < (left: Phase, right: Phase) -> Bool { left.rawValue < right.rawValue }
    }

    private struct State {
        var phase = Phase.connecting
        var lastProgress: ContinuousClock.Instant
        var errorBodyEnd: ContinuousClock.Instant?
        var expired: HTTPExchangeError?
    }

    /// How often the limits are checked: the error body's grace time is kept to within this.
    static let pollInterval = Duration.milliseconds(100)

    private let started: ContinuousClock.Instant
    private let connectLimit: Duration
    private let idleLimit: Duration
    private let deadline: Duration
    private let errorBodyGrace: Duration
    private let state: Mutex<State>

    init(settings: TransferSettings, bodyBytes: UInt64, started: ContinuousClock.Instant = .now) {
        self.started = started
        connectLimit = settings.connectTimeout
        idleLimit = settings.idleTimeout
        deadline = settings.deadline(forBodyBytes: bodyBytes)
        errorBodyGrace = settings.errorBodyGrace
        state = Mutex(State(lastProgress: started))
    }

    func enter(_ phase: Phase, at now: ContinuousClock.Instant = .now) {
        state.withLock { state in
            guard phase > state.phase else { return }
            state.phase = phase
            state.lastProgress = now
            if phase == .readingErrorBody { state.errorBodyEnd = now + errorBodyGrace }
        }
    }

    func progress(at now: ContinuousClock.Instant = .now) {
        state.withLock { $0.lastProgress = now }
    }

    /// What has expired at `now` (nil: nothing), and when to look again (nil: close now).
    func decision(at now: ContinuousClock.Instant) -> (expired: HTTPExchangeError?, next: ContinuousClock.Instant?) {
        state.withLock { check($0, now: now) }
    }

    /// The limit that ended the attempt, if one did (not the grace of an error body,
    /// whose end is expected).
    var expiryError: HTTPExchangeError? {
        state.withLock { $0.expired }
    }

    /// Closes `channel` when a limit passes; returns then, or when cancelled.
    func run(closing channel: Channel) async {
        while !Task.isCancelled {
            let now = ContinuousClock.now
            let next = state.withLock { state -> ContinuousClock.Instant? in
                let (expired, next) = check(state, now: now)
                state.expired = expired
                return next
            }
            guard let next else {
                channel.close(promise: nil)
                return
            }
            // Limits change as the attempt goes on (an error answer's grace time): look again soon.
            try? await Task.sleep(until: min(next, now + Self.pollInterval), clock: .continuous)
        }
    }

    /// What has expired at `now`, or when to look again.
    private func check(_ state: State, now: ContinuousClock.Instant) -> (HTTPExchangeError?, ContinuousClock.Instant?) {
        let end = started + deadline
        if now >= end { return (.deadlineExceeded(seconds: deadline.components.seconds), nil) }
        var next = end
        switch state.phase {
        case .connecting:
            if now >= started + connectLimit { return (.connectTimedOut(seconds: connectLimit.components.seconds), nil) }
            next = min(next, started + connectLimit)
        case .sending, .waiting:
            let idleEnd = state.lastProgress + idleLimit
            if now >= idleEnd {
                return (.idle(sending: state.phase == .sending, seconds: idleLimit.components.seconds), nil)
            }
            next = min(next, idleEnd)
        case .readingErrorBody:
            if let errorBodyEnd = state.errorBodyEnd {
                if now >= errorBodyEnd { return (nil, nil) }
                next = min(next, errorBodyEnd)
            }
        }
        return (nil, next)
    }
}
