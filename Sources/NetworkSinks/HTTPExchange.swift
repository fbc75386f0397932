import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL
import NIOTLS
import Synchronization

/// What one attempt of a request sends.
struct HTTPRequest: Sendable {
    var method: HTTPMethod
    /// The request-target: path and query, e.g. `/c/b.lime?sv=…&comp=block`.
    var target: String
    var headers: HTTPHeaders = [:]
    var body: HTTPBody = .empty
    /// Bytes of a successful answer's body the caller needs (Get Block List); 0 for
    /// none: after a 2xx head nothing more is waited for.
    var successBodyLimit = 0
}

/// A request body that every attempt can send again from its start.
enum HTTPBody: Sendable {
    case empty
    /// Bytes in memory (a streamed block), sent in 1 MiB slices.
    case bytes(ByteBuffer)
    /// A range of a file, read in 1 MiB chunks as it is sent (never whole in memory).
    case file(UploadSource, Range<UInt64>)

    var count: UInt64 {
        switch self {
        case .empty: return 0
        case .bytes(let buffer): return UInt64(buffer.readableBytes)
        case .file(_, let range): return UInt64(range.count)
        }
    }
}

/// What the server answered.
struct HTTPResult: Sendable {
    var status: Int
    var reason: String
    var headers: HTTPHeaders
    /// The start of the body: up to the request's `successBodyLimit` after a 2xx, up
    /// to `HTTPExchange.errorBodyLimit` otherwise (whatever came within the grace time).
    var body: String

    var isSuccess: Bool { (200..<300).contains(status) }
}

/// Failures of one attempt that are not the server's answer: time limits, a
/// connection closed too early, a proxy that refused the tunnel.
enum HTTPExchangeError: Error, Sendable, CustomStringConvertible {
    case connectTimedOut(seconds: Int64)
    /// Nothing was accepted (sending) or received (waiting) for that long.
    case idle(sending: Bool, seconds: Int64)
    /// The attempt's overall deadline passed (a server that trickles keeps the idle timer happy).
    case deadlineExceeded(seconds: Int64)
    /// The connection closed before a complete answer.
    case closedEarly
    /// A successful answer's body was longer than the request allows.
    case bodyTooLarge(limit: Int)
    /// The proxy answered CONNECT with a status other than 2xx.
    case proxyRefused(status: Int, reason: String)

    var description: String {
        switch self {
        case .connectTimedOut(let seconds): return "connecting (TCP, proxy and TLS) took more than \(seconds) s"
        case .idle(true, let seconds): return "the server took nothing for \(seconds) s"
        case .idle(false, let seconds): return "the server sent nothing for \(seconds) s"
        case .deadlineExceeded(let seconds): return "the request took more than its \(seconds) s deadline"
        case .closedEarly: return "the server closed the connection before a complete answer"
        case .bodyTooLarge(let limit): return "the server's answer is longer than the \(limit) bytes expected"
        case .proxyRefused(407, _):
            return "the proxy refused the credentials (HTTP 407): check user:password@ in HTTPS_PROXY/HTTP_PROXY"
        case .proxyRefused(let status, let reason): return "the proxy refused the tunnel: HTTP \(status) \(reason)"
        }
    }

    /// Whether another attempt may succeed: not for a refused proxy (unless it is
    /// overloaded) or an answer longer than the request allows.
    var isRetryable: Bool {
        switch self {
        case .proxyRefused(let status, _): return RetryPolicy.isRetryable(status: status)
        case .bodyTooLarge: return false
        default: return true
        }
    }
}

/// Where one attempt connects: the destination itself, or an HTTP proxy that opens a
/// tunnel to it with `CONNECT` (for http and https destinations alike).
struct Route: Sendable {
    var host: String
    var port: Int
    /// Set when `host` is a proxy.
    var tunnel: Tunnel?

    struct Tunnel: Sendable {
        /// The `Proxy-Authorization` header, if the proxy variable had credentials.
        var authorization: String?
    }
}

/// One attempt of one HTTP/1.1 request, on a connection of its own that is always
/// closed at the end (`Connection: close`), on every path.
///
///     connect (TCP; CONNECT through a proxy; TLS)    within connectTimeout
///     send the head and the body                     idle limit: nothing accepted for idleTimeout
///     read the answer's head                         idle limit: nothing received for idleTimeout
///     2xx: stop, or read up to successBodyLimit bytes of the body
///     else: read up to 64 KiB of the body for errorBodyGrace, then stop
///     all of it within the attempt's deadline        (connect + idle + body at the minimum rate)
///
/// The request and the answer are handled by two child tasks, so an answer that comes
/// before the body is sent (S3's 403 for a bad signature) is read and reported instead
/// of the broken pipe that follows; a third child task enforces the time limits by
/// closing the connection.
struct HTTPExchange: Sendable {
    /// The most of an error body kept: enough for S3's and Azure's error XML.
    static let errorBodyLimit = 64 << 10
    /// Body bytes handed to the connection at once.
    static let chunkSize = 1 << 20

    let url: UploadURL
    let route: Route
    let tls: NIOSSLContext?
    let settings: TransferSettings

    /// Runs the attempt.
    ///
    /// - Returns: the server's answer, whatever its status.
    /// - Throws: `HTTPExchangeError`, NIO's and NIOSSL's errors (refused, reset, TLS), or
    ///   the `UploadError` of a file body that could not be read.
    func run(_ request: HTTPRequest, progress: AttemptProgress) async throws -> HTTPResult {
        let watchdog = Watchdog(settings: settings, bodyBytes: request.body.count)
        let (channel, ready) = try await connect()
        return try await withTaskCancellationHandler {
            try await channel.executeThenClose { inbound, outbound in
                try await exchange(
                    request, inbound: inbound, outbound: outbound, ready: ready, channel: channel.channel,
                    watchdog: watchdog, progress: progress)
            }
        } onCancel: {
            channel.channel.close(promise: nil)
        }
    }

    private typealias Connection = NIOAsyncChannel<HTTPClientResponsePart, HTTPClientRequestPart>

    /// Opens the TCP connection and sets up its pipeline; `ready` completes once the
    /// tunnel (if any) is open and the TLS handshake (if any) is done.
    private func connect() async throws -> (Connection, EventLoopFuture<Void>) {
        try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .connectTimeout(settings.connectTimeout.timeAmount)
            .channelOption(.socketOption(.so_keepalive), value: 1)
            .connect(host: route.host, port: route.port) { channel in
                channel.eventLoop.makeCompletedFuture {
                    let pipeline = channel.pipeline.syncOperations
                    let readiness = ReadinessHandler(
                        promise: channel.eventLoop.makePromise(), waitsForTunnel: route.tunnel != nil, waitsForTLS: tls != nil)
                    try pipeline.addHandler(readiness)
                    if let tunnel = route.tunnel {
                        let encoder = HTTPRequestEncoder()
                        let decoder = ByteToMessageHandler(HTTPResponseDecoder(leftOverBytesStrategy: .fireError))
                        let connect = ProxyTunnelHandler(
                            target: url.authority, authorization: tunnel.authorization, proxyCodec: [encoder, decoder]
                        ) { pipeline in
                            try addHTTPHandlers(to: pipeline, at: .before(readiness))
                        }
                        try pipeline.addHandlers([encoder, decoder, connect], position: .before(readiness))
                    } else {
                        try addHTTPHandlers(to: pipeline, at: .before(readiness))
                    }
                    return (try Connection(wrappingChannelSynchronously: channel), readiness.ready)
                }
            }
    }

    /// TLS (for https) and the HTTP/1.1 codec, at `position`.
    private func addHTTPHandlers(
        to pipeline: ChannelPipeline.SynchronousOperations, at position: ChannelPipeline.SynchronousOperations.Position
    ) throws {
        var position = position
        if let tls {
            // An IP address is not a valid SNI name; NIOSSL then checks the certificate against the peer's address.
            let isAddress = (try? SocketAddress(ipAddress: url.host, port: 0)) != nil
            let handler = try NIOSSLClientHandler(context: tls, serverHostname: isAddress ? nil : url.host)
            try pipeline.addHandler(handler, position: position)
            position = .after(handler)
        }
        let encoder = HTTPRequestEncoder()
        try pipeline.addHandler(encoder, position: position)
        try pipeline.addHandler(ByteToMessageHandler(HTTPResponseDecoder()), position: .after(encoder))
    }

    private enum Event: Sendable {
        case sent
        case sendFailed(any Error)
        case answered(HTTPResult)
        case watchdogStopped
    }

    private func exchange(
        _ request: HTTPRequest, inbound: NIOAsyncChannelInboundStream<HTTPClientResponsePart>,
        outbound: NIOAsyncChannelOutboundWriter<HTTPClientRequestPart>, ready: EventLoopFuture<Void>, channel: Channel,
        watchdog: Watchdog, progress: AttemptProgress
    ) async throws -> HTTPResult {
        var sendFailure: (any Error)?
        do {
            return try await withThrowingTaskGroup(of: Event.self) { group in
                group.addTask {
                    await watchdog.run(closing: channel)
                    return .watchdogStopped
                }
                group.addTask {
                    do {
                        try await ready.get()
                        try await send(request, to: outbound, watchdog: watchdog, progress: progress)
                        return .sent
                    } catch {
                        return .sendFailed(error)
                    }
                }
                group.addTask {
                    .answered(try await receive(from: inbound, successBodyLimit: request.successBodyLimit, watchdog: watchdog))
                }
                var sent = false
                var answer: HTTPResult?
                while let event = try await group.next() {
                    switch event {
                    case .sent:
                        sent = true
                    case .sendFailed(let error as UploadError):
                        throw error  // the local file, not the network: nothing to wait for
                    case .sendFailed(let error):
                        // Whatever the server answered before the failure is on its way in.
                        sendFailure = error
                        channel.close(promise: nil)
                    case .answered(let result):
                        answer = result
                    case .watchdogStopped:
                        break
                    }
                    if let answer {
                        if !answer.isSuccess || sent {
                            // Refused early, or confirmed: the rest of the body is not waited for.
                            group.cancelAll()
                            channel.close(promise: nil)
                            return answer
                        }
                        // A 2xx to a body that did not go out whole is no confirmation.
                        if let sendFailure { throw sendFailure }
                    }
                }
                throw HTTPExchangeError.closedEarly
            }
        } catch {
            throw watchdog.expiryError ?? sendFailure ?? error
        }
    }

    /// Writes the request head, the body in chunks, and the end.
    private func send(
        _ request: HTTPRequest, to outbound: NIOAsyncChannelOutboundWriter<HTTPClientRequestPart>, watchdog: Watchdog,
        progress: AttemptProgress
    ) async throws {
        watchdog.enter(.sending)
        var headers = request.headers
        headers.replaceOrAdd(name: "Host", value: url.hostHeader)
        headers.replaceOrAdd(name: "Connection", value: "close")
        if request.method != .GET { headers.replaceOrAdd(name: "Content-Length", value: String(request.body.count)) }
        try await outbound.write(
            .head(HTTPRequestHead(version: .http1_1, method: request.method, uri: request.target, headers: headers)))
        switch request.body {
        case .empty:
            break
        case .bytes(let buffer):
            var offset = buffer.readerIndex
            while offset < buffer.writerIndex {
                let count = min(Self.chunkSize, buffer.writerIndex - offset)
                guard let slice = buffer.getSlice(at: offset, length: count) else { break }
                try await outbound.write(.body(.byteBuffer(slice)))
                offset += count
                progress.add(count)
                watchdog.progress()
            }
        case .file(let source, let range):
            var position = range.lowerBound
            while position < range.upperBound {
                let count = Int(min(UInt64(Self.chunkSize), range.upperBound - position))
                let chunk = try source.read(offset: position, count: count)
                try await outbound.write(.body(.byteBuffer(chunk)))
                position += UInt64(count)
                progress.add(count)
                watchdog.progress()
            }
        }
        try await outbound.write(.end(nil))
        watchdog.enter(.waiting)
    }

    /// Reads the answer: its head, then as much of its body as the status calls for.
    private func receive(
        from inbound: NIOAsyncChannelInboundStream<HTTPClientResponsePart>, successBodyLimit: Int, watchdog: Watchdog
    ) async throws -> HTTPResult {
        var head: HTTPResponseHead?
        var body = ByteBuffer()
        var limit = successBodyLimit
        do {
            for try await part in inbound {
                watchdog.progress()
                switch part {
                case .head(let received):
                    // Informational answers (100 Continue) precede the real one.
                    if received.status.code < 200 { continue }
                    head = received
                    if (200..<300).contains(received.status.code) {
                        if successBodyLimit == 0 { return Self.result(received, body) }
                    } else {
                        limit = Self.errorBodyLimit
                        watchdog.enter(.readingErrorBody)
                    }
                case .body(var chunk):
                    guard let current = head else { continue }
                    let room = limit - body.readableBytes
                    if chunk.readableBytes > room {
                        guard current.status.code >= 300 else { throw HTTPExchangeError.bodyTooLarge(limit: limit) }
                        if let kept = chunk.readSlice(length: room) { body.writeImmutableBuffer(kept) }
                        return Self.result(current, body)
                    }
                    body.writeBuffer(&chunk)
                case .end:
                    if let current = head { return Self.result(current, body) }
                }
            }
        } catch let error as HTTPExchangeError {
            throw error
        } catch {
            // An error body cut short (by the grace time or the server) still tells what the server said.
            if let head, head.status.code >= 300 { return Self.result(head, body) }
            throw error
        }
        if let head, head.status.code >= 300 { return Self.result(head, body) }
        throw HTTPExchangeError.closedEarly
    }

    private static func result(_ head: HTTPResponseHead, _ body: ByteBuffer) -> HTTPResult {
        HTTPResult(
            status: Int(head.status.code), reason: head.status.reasonPhrase, headers: head.headers,
            body: String(buffer: body))
    }
}

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

    init(settings: TransferSettings, bodyBytes: UInt64) {
        started = .now
        connectLimit = settings.connectTimeout
        idleLimit = settings.idleTimeout
        deadline = settings.deadline(forBodyBytes: bodyBytes)
        errorBodyGrace = settings.errorBodyGrace
        state = Mutex(State(lastProgress: started))
    }

    func enter(_ phase: Phase) {
        state.withLock { state in
            guard phase > state.phase else { return }
            state.phase = phase
            state.lastProgress = .now
            if phase == .readingErrorBody { state.errorBodyEnd = .now + errorBodyGrace }
        }
    }

    func progress() {
        state.withLock { $0.lastProgress = .now }
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

/// Completes `ready` when the connection can carry the request: at once for plain
/// HTTP, after the proxy's tunnel and after the TLS handshake where those apply. Its
/// promise is always completed, on every path (NIO reports a promise left pending).
private final class ReadinessHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPClientResponsePart
    typealias InboundOut = HTTPClientResponsePart

    private var promise: EventLoopPromise<Void>?
    private var waitsForTunnel: Bool
    private var waitsForTLS: Bool
    let ready: EventLoopFuture<Void>

    init(promise: EventLoopPromise<Void>, waitsForTunnel: Bool, waitsForTLS: Bool) {
        self.promise = promise
        self.waitsForTunnel = waitsForTunnel
        self.waitsForTLS = waitsForTLS
        ready = promise.futureResult
    }

    func channelActive(context: ChannelHandlerContext) {
        completeIfReady()
        context.fireChannelActive()
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is ProxyTunnelHandler.Established {
            waitsForTunnel = false
            completeIfReady()
            return
        }
        if let event = event as? TLSUserEvent, case .handshakeCompleted = event {
            waitsForTLS = false
            completeIfReady()
        }
        context.fireUserInboundEventTriggered(event)
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        fail(error)
        context.fireErrorCaught(error)
    }

    func channelInactive(context: ChannelHandlerContext) {
        fail(HTTPExchangeError.closedEarly)
        context.fireChannelInactive()
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        fail(HTTPExchangeError.closedEarly)
    }

    private func completeIfReady() {
        guard !waitsForTunnel, !waitsForTLS, let promise else { return }
        self.promise = nil
        promise.succeed()
    }

    private func fail(_ error: Error) {
        guard let promise else { return }
        self.promise = nil
        promise.fail(error)
    }
}

/// Opens a tunnel through an HTTP proxy: sends `CONNECT host:port`; on a 2xx removes
/// the proxy's HTTP codec and itself, lets `then` add TLS and the destination's codec,
/// and tells `ReadinessHandler` with `Established`.
///
/// The codec goes before anything else is added: TLS's first bytes must not pass
/// through the proxy's HTTP encoder.
private final class ProxyTunnelHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPClientResponsePart
    typealias OutboundOut = HTTPClientRequestPart

    /// The user event that says the tunnel is open.
    struct Established: Sendable {}

    private let target: String
    private let authorization: String?
    private let proxyCodec: [RemovableChannelHandler]
    private let then: (ChannelPipeline.SynchronousOperations) throws -> Void
    private var sent = false
    private var accepted = false

    init(
        target: String, authorization: String?, proxyCodec: [RemovableChannelHandler],
        then: @escaping (ChannelPipeline.SynchronousOperations) throws -> Void
    ) {
        self.target = target
        self.authorization = authorization
        self.proxyCodec = proxyCodec
        self.then = then
    }

    func handlerAdded(context: ChannelHandlerContext) {
        if context.channel.isActive { sendConnect(context: context) }
    }

    func channelActive(context: ChannelHandlerContext) {
        sendConnect(context: context)
        context.fireChannelActive()
    }

    private func sendConnect(context: ChannelHandlerContext) {
        guard !sent else { return }
        sent = true
        var head = HTTPRequestHead(version: .http1_1, method: .CONNECT, uri: target)
        head.headers.add(name: "Host", value: target)
        if let authorization { head.headers.add(name: "Proxy-Authorization", value: authorization) }
        context.write(wrapOutboundOut(.head(head)), promise: nil)
        context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            guard (200..<300).contains(head.status.code) else {
                context.fireErrorCaught(
                    HTTPExchangeError.proxyRefused(status: Int(head.status.code), reason: head.status.reasonPhrase))
                context.close(promise: nil)
                return
            }
            accepted = true
        case .body:
            break  // a 2xx to CONNECT has no body (RFC 9110 §9.3.6)
        case .end:
            guard accepted else { return }
            let channel = context.channel
            let pipeline = context.pipeline.syncOperations
            let removals = proxyCodec.map { pipeline.removeHandler($0) } + [pipeline.removeHandler(context: context)]
            let then = self.then
            EventLoopFuture.andAllSucceed(removals, on: context.eventLoop).assumeIsolated().whenComplete { result in
                do {
                    try result.get()
                    try then(channel.pipeline.syncOperations)
                    channel.pipeline.fireUserInboundEventTriggered(Established())
                } catch {
                    channel.pipeline.fireErrorCaught(error)
                    channel.close(promise: nil)
                }
            }
        }
    }
}

extension Duration {
    /// The same length as NIO's `TimeAmount`.
    var timeAmount: TimeAmount {
        .nanoseconds(components.seconds * 1_000_000_000 + components.attoseconds / 1_000_000_000)
    }
}
