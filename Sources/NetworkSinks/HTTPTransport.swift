import AsyncHTTPClient
import Glibc
import ImageFormats
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL
import Synchronization

/// What a successful request returned.
public struct HTTPResult: Sendable {
    public var status: Int
    public var headers: HTTPHeaders
    /// The start of the body (at most 64 KiB).
    public var body: String
}

/// Bytes sent by one attempt, added to a transfer's total as they go and taken
/// back if the attempt fails, so progress never counts a retried block twice.
public final class AttemptProgress: Sendable {
    private let counter: TransferCounter?
    private let sent = Mutex<UInt64>(0)

    init(counter: TransferCounter?) {
        self.counter = counter
    }

    func add(_ bytes: Int) {
        sent.withLock { $0 += UInt64(bytes) }
        counter?.add(UInt64(bytes))
    }

    func rollBack() {
        let bytes = sent.withLock { value in
            defer { value = 0 }
            return value
        }
        counter?.subtract(bytes)
    }
}

/// Bytes of a transfer handed to the network so far, reported to a progress callback.
public final class TransferCounter: Sendable {
    public let total: UInt64
    private let done = Mutex<UInt64>(0)
    private let report: @Sendable (UInt64, UInt64) -> Void

    public init(total: UInt64, report: @escaping @Sendable (UInt64, UInt64) -> Void) {
        self.total = total
        self.report = report
    }

    public var value: UInt64 { done.withLock { $0 } }

    func add(_ bytes: UInt64) {
        let now = done.withLock { value in
            value += bytes
            return value
        }
        report(now, total)
    }

    func subtract(_ bytes: UInt64) {
        guard bytes > 0 else { return }
        let now = done.withLock { value in
            value -= min(bytes, value)
            return value
        }
        report(now, total)
    }
}

/// Sends requests to one destination with async-http-client, retrying as `RetryPolicy` says.
///
/// One client per destination: the proxy depends on the host (`NO_PROXY`). TLS trusts
/// the system's CA bundle, or `SSL_CERT_FILE`. Redirects are not followed (a presigned
/// URL that redirects is reported). Call `shutdown()` when done.
final class HTTPTransport: Sendable {
    let url: UploadURL
    let settings: TransferSettings
    private let client: HTTPClient
    private let secrets: [String]

    init(url: UploadURL, settings: TransferSettings) throws(UploadError) {
        self.url = url
        self.settings = settings
        self.secrets = url.secrets
        var configuration = HTTPClient.Configuration()
        configuration.redirectConfiguration = .disallow
        configuration.decompression = .disabled
        configuration.httpVersion = .http1Only
        // Each failed connection is one attempt of our policy, not ten seconds of the pool's own retries.
        configuration.connectionPool.retryConnectionEstablishment = false
        configuration.timeout = HTTPClient.Configuration.Timeout(
            connect: Self.timeAmount(settings.connectTimeout), read: Self.timeAmount(settings.idleTimeout),
            write: Self.timeAmount(settings.idleTimeout))
        var tls = TLSConfiguration.makeClientConfiguration()
        if let bundle = CABundle.path(environment: settings.environment) {
            tls.trustRoots = .file(bundle)
        }
        configuration.tlsConfiguration = tls
        if let proxy = try ProxySetting.forDestination(url, environment: settings.environment) {
            var authorization: HTTPClient.Authorization?
            if let username = proxy.username {
                authorization = .basic(username: username, password: proxy.password ?? "")
            }
            configuration.proxy = .server(host: proxy.host, port: proxy.port, authorization: authorization)
        }
        client = HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)
    }

    func shutdown() async {
        try? await client.shutdown()
    }

    /// Sends a request until it succeeds (2xx), fails for good, or runs out of attempts.
    ///
    /// - Parameters:
    ///   - label: the request as messages name it.
    ///   - counter: where the body's bytes are counted, if progress is shown.
    ///   - makeRequest: builds the request for one attempt (a streamed body can be read only once).
    /// - Returns: the status, headers and the start of the body.
    /// - Throws: `UploadError` naming the request, the status and the server's text.
    func send(
        _ label: RequestLabel, counter: TransferCounter? = nil,
        makeRequest: @Sendable (AttemptProgress) throws(UploadError) -> HTTPClientRequest
    ) async throws(UploadError) -> HTTPResult {
        var attempt = 0
        while true {
            attempt += 1
            if Task.isCancelled { throw .cancelled }
            let progress = AttemptProgress(counter: counter)
            let outcome: RetryPolicy.Outcome
            let failure: String
            var rejection: UploadError?
            do {
                let request = try makeRequest(progress)
                let response = try await client.execute(request, deadline: .distantFuture)
                let body = await Self.collectPrefix(of: response.body)
                let status = Int(response.status.code)
                if (200..<300).contains(status) {
                    return HTTPResult(status: status, headers: response.headers, body: body)
                }
                let message = Self.serverMessage(body: body, headers: response.headers, secrets: secrets)
                outcome = .status(status, retryAfter: response.headers.first(name: "Retry-After"))
                // An unknown status keeps the server's own phrase: text from outside.
                let reason = escapedForLog(response.status.reasonPhrase)
                failure = "HTTP \(status) \(reason)" + (message.isEmpty ? "" : ": \(message)")
                rejection = .rejected(label, status: status, reason: reason, serverMessage: message)
            } catch let error as UploadError {
                progress.rollBack()
                throw error
            } catch {
                progress.rollBack()
                if Task.isCancelled { throw .cancelled }
                outcome = Self.isRetryable(error) ? .transportFailure : .permanentFailure
                failure = Redaction.redactedText(Self.describe(error), secrets: secrets)
            }
            progress.rollBack()
            let now = Int64(time(nil))
            guard let delay = settings.retry.delay(after: outcome, attempt: attempt, jitter: Double.random(in: 0..<1), now: now)
            else {
                switch outcome {
                case .status(let status, _) where !RetryPolicy.isRetryable(status: status):
                    throw rejection ?? .transport(label, detail: failure)
                case .permanentFailure:
                    throw .transport(label, detail: failure)
                default:
                    throw .retriesExhausted(label, attempts: attempt, lastFailure: failure)
                }
            }
            settings.onRetry?(
                "\(label): \(failure); retrying in \(Self.secondsText(delay)) "
                    + "(attempt \(attempt + 1) of \(settings.retry.maxAttempts))")
            do {
                try await Task.sleep(for: delay)
            } catch {
                throw .cancelled
            }
        }
    }

    /// Reads the whole response body, keeping its first 64 KiB as text.
    static func collectPrefix(of body: HTTPClientResponse.Body) async -> String {
        var kept = ByteBuffer()
        do {
            for try await var part in body {
                let room = 65536 - kept.readableBytes
                if room > 0, let slice = part.readSlice(length: min(room, part.readableBytes)) {
                    var slice = slice
                    kept.writeBuffer(&slice)
                }
            }
        } catch {
            // A body cut short still tells what the server said so far.
        }
        return String(buffer: kept)
    }

    /// The server's own error, short: S3's and Azure's `<Code>` and `<Message>`, else the
    /// start of the body, else Azure's `x-ms-error-code` header; secrets scrubbed.
    static func serverMessage(body: String, headers: HTTPHeaders, secrets: [String]) -> String {
        var parts: [String] = []
        if let code = xmlElement("Code", in: body) { parts.append(code) }
        if let message = xmlElement("Message", in: body) {
            parts.append(message.split(whereSeparator: { $0 == "\n" || $0 == "\r" }).first.map(String.init) ?? message)
        }
        if parts.isEmpty {
            let trimmed = body.trimmingSpaces()
            if !trimmed.isEmpty {
                parts.append(trimmed.split(whereSeparator: { $0 == "\n" }).prefix(3).joined(separator: " "))
            } else if let code = headers.first(name: "x-ms-error-code") {
                parts.append(code)
            }
        }
        return Redaction.redactedText(parts.joined(separator: ": "), secrets: secrets, limit: 500)
    }

    /// The text of the first `<name>…</name>` in `xml`, entities decoded.
    static func xmlElement(_ name: String, in xml: String) -> String? {
        guard let open = xml.firstRange(of: "<\(name)>"), let close = xml[open.upperBound...].firstRange(of: "</\(name)>")
        else { return nil }
        return decodeEntities(String(xml[open.upperBound..<close.lowerBound]))
    }

    static func decodeEntities(_ text: String) -> String {
        var result = text
        for (entity, character) in [("&lt;", "<"), ("&gt;", ">"), ("&quot;", "\""), ("&apos;", "'"), ("&amp;", "&")] {
            var output = ""
            var rest = Substring(result)
            while let range = rest.firstRange(of: entity) {
                output += rest[..<range.lowerBound]
                output += character
                rest = rest[range.upperBound...]
            }
            result = output + rest
        }
        return result
    }

    /// Whether a failure below HTTP is worth another attempt: connection refused or
    /// reset, time-outs, DNS, a dropped connection; not a TLS certificate failure, a
    /// refused proxy authentication or a malformed request.
    static func isRetryable(_ error: Error) -> Bool {
        if let error = error as? HTTPClientError {
            let retryable: [HTTPClientError] = [
                .connectTimeout, .readTimeout, .writeTimeout, .remoteConnectionClosed, .tlsHandshakeTimeout,
                .httpProxyHandshakeTimeout, .socksHandshakeTimeout, .getConnectionFromPoolTimeout, .deadlineExceeded,
                .uncleanShutdown, .invalidProxyResponse,
            ]
            return retryable.contains(error)
        }
        if let error = error as? NIOSSLError {
            switch error {
            case .uncleanShutdown: return true
            default: return false
            }
        }
        if error is BoringSSLError || error is NIOSSLExtraError { return false }
        return true
    }

    static func describe(_ error: Error) -> String {
        if let error = error as? NIOSSLError, case .handshakeFailed(let inner) = error {
            return "TLS handshake failed: \(inner) (is the server's certificate signed by a CA in the system's bundle, "
                + "or in SSL_CERT_FILE?)"
        }
        if let error = error as? IOError {
            return "connection failed: \(String(cString: strerror(error.errnoCode)))"
        }
        if let error = error as? HTTPClientError {
            switch error {
            case .remoteConnectionClosed: return "the server closed the connection"
            case .connectTimeout: return "connecting timed out"
            case .readTimeout: return "the server sent nothing for too long"
            case .writeTimeout: return "the server took nothing for too long"
            default: return "\(error)"
            }
        }
        if let error = error as? NIOConnectionError {
            let causes = error.connectionErrors.map { "\($0.target): \(describe($0.error))" }
            if let dns = error.dnsAAAAError ?? error.dnsAError, causes.isEmpty {
                return "cannot resolve \(escapedForLog(error.host)): \(dns)"
            }
            return causes.isEmpty ? "\(error)" : causes.joined(separator: "; ")
        }
        if let error = error as? ChannelError, error == .eof {
            return "the server closed the connection"
        }
        return "\(error)"
    }

    static func secondsText(_ duration: Duration) -> String {
        let milliseconds = duration.components.seconds * 1000 + duration.components.attoseconds / 1_000_000_000_000_000
        if milliseconds < 1000 { return "\(milliseconds) ms" }
        return "\(milliseconds / 1000).\(String(milliseconds % 1000 / 100)) s"
    }

    static func timeAmount(_ duration: Duration) -> TimeAmount {
        .nanoseconds(duration.components.seconds * 1_000_000_000 + duration.components.attoseconds / 1_000_000_000)
    }
}
