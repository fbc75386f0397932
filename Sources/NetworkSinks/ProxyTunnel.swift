import NIOCore
import NIOHTTP1
import NIOTLS

/// Completes `ready` when the connection can carry the request: at once for plain
/// HTTP, after the proxy's tunnel and after the TLS handshake where those apply. Its
/// promise is always completed, on every path (NIO reports a promise left pending).
final class ReadinessHandler: ChannelInboundHandler, RemovableChannelHandler {
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
final class ProxyTunnelHandler: ChannelInboundHandler, RemovableChannelHandler {
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
