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
