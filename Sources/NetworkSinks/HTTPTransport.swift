import Glibc
import ImageFormats
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL
import Synchronization

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

/// Sends requests to one destination, retrying as `RetryPolicy` says: the one place
/// that sets up HTTP for an upload.
///
/// Set-up happens once, here: the proxy (which depends on the host: `NO_PROXY`) and,
/// for https, the TLS context that trusts the system's CA bundle or `SSL_CERT_FILE`.
/// Nothing needs shutting down: every attempt runs on a connection of its own that
/// `HTTPExchange` closes on every path, and the event loops are SwiftNIO's shared
/// ones. Redirects are not followed (a presigned URL that redirects is reported).
final class HTTPTransport: Sendable {
    let url: UploadURL
    let settings: TransferSettings
    private let exchange: HTTPExchange
    private let secrets: [String]

    /// - Throws: `UploadError.invalidURL` for a bad proxy variable, `.tlsSetup` for a
    ///   CA bundle that cannot be read.
    init(url: UploadURL, settings: TransferSettings) throws(UploadError) {
        self.url = url
        self.settings = settings
        self.secrets = url.secrets
        var route = Route(host: url.host, port: url.port)
        if let proxy = try ProxySetting.forDestination(url, environment: settings.environment) {
            route = Route(host: proxy.host, port: proxy.port, tunnel: Route.Tunnel(authorization: proxy.authorization))
        }
        var tls: NIOSSLContext?
        if url.scheme == "https" {
            var configuration = TLSConfiguration.makeClientConfiguration()
            if let bundle = CABundle.path(environment: settings.environment) {
                configuration.trustRoots = .file(bundle)
            }
            do {
                tls = try NIOSSLContext(configuration: configuration)
            } catch {
                throw .tlsSetup(url.description, detail: Self.describe(error))
            }
        }
        exchange = HTTPExchange(url: url, route: route, tls: tls, settings: settings)
    }

    /// Sends a request until it succeeds (2xx), fails for good, or runs out of attempts.
    ///
    /// - Parameters:
    ///   - label: the request as messages name it.
    ///   - request: what every attempt sends (a file body is read again for each).
    ///   - counter: where the body's bytes are counted, if progress is shown.
    /// - Returns: the status, headers and the start of the body.
    /// - Throws: `UploadError` naming the request, the status and the server's text.
    func send(_ label: RequestLabel, _ request: HTTPRequest, counter: TransferCounter? = nil) async throws(UploadError)
        -> HTTPResult
    {
        var attempt = 0
        while true {
            attempt += 1
            if Task.isCancelled { throw .cancelled }
            let progress = AttemptProgress(counter: counter)
            let outcome: RetryPolicy.Outcome
            let failure: String
            var rejection: UploadError?
            do {
                let result = try await exchange.run(request, progress: progress)
                if result.isSuccess { return result }
                let message = Self.serverMessage(body: result.body, headers: result.headers, secrets: secrets)
                outcome = .status(result.status, retryAfter: result.headers.first(name: "Retry-After"))
                // An unknown status keeps the server's own phrase: text from outside.
                let reason = escapedForLog(result.reason)
                failure = "HTTP \(result.status) \(reason)" + (message.isEmpty ? "" : ": \(message)")
                rejection = .rejected(label, status: result.status, reason: reason, serverMessage: message)
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
    ///
    /// Not an XML parser, on purpose: the only XML read is Azure's and S3's error
    /// bodies and Azure's block list, small documents of a fixed shape whose elements
    /// carry no attributes, read from at most `HTTPExchange.errorBodyLimit` bytes (or
    /// the block list's bound). FoundationXML's `XMLParser` would bring libxml2 and
    /// full Foundation with its ICU data (the 34 MB the static binary shed); a missed
    /// element only makes a message shorter, or a block list fail to verify.
    static func xmlElement(_ name: String, in xml: String) -> String? {
        guard let open = xml.firstRange(of: "<\(name)>"), let close = xml[open.upperBound...].firstRange(of: "</\(name)>")
        else { return nil }
        return decodeEntities(String(xml[open.upperBound..<close.lowerBound]))
    }

    /// XML's five predefined entities decoded (`&amp;` last, so `&amp;lt;` stays `&lt;`).
    static func decodeEntities(_ text: String) -> String {
        var result = text
        for (entity, character) in [("&lt;", "<"), ("&gt;", ">"), ("&quot;", "\""), ("&apos;", "'"), ("&amp;", "&")] {
            result = result.replacing(entity, with: character)
        }
        return result
    }

    /// Whether a failure below HTTP is worth another attempt: connection refused or
    /// reset, time-outs, DNS, a dropped connection; not a TLS certificate failure, a
    /// proxy that refused the tunnel, or an answer that is not HTTP.
    static func isRetryable(_ error: Error) -> Bool {
        if let error = error as? HTTPExchangeError { return error.isRetryable }
        if let error = error as? NIOSSLError {
            switch error {
            case .uncleanShutdown: return true
            default: return false
            }
        }
        if error is BoringSSLError || error is NIOSSLExtraError || error is HTTPParserError { return false }
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
        if let error = error as? NIOConnectionError {
            let causes = error.connectionErrors.map { "\($0.target): \(describe($0.error))" }
            if let dns = error.dnsAAAAError ?? error.dnsAError, causes.isEmpty {
                return "cannot resolve \(escapedForLog(error.host)): \(dns)"
            }
            return causes.isEmpty ? "\(error)" : causes.joined(separator: "; ")
        }
        if let error = error as? ChannelError {
            switch error {
            case .connectTimeout: return "connecting timed out"
            case .eof, .ioOnClosedChannel, .alreadyClosed: return "the server closed the connection"
            default: break
            }
        }
        if let error = error as? HTTPParserError {
            return "the answer is not valid HTTP/1.1 (\(error))"
        }
        return "\(error)"
    }

    static func secondsText(_ duration: Duration) -> String {
        let milliseconds = duration.components.seconds * 1000 + duration.components.attoseconds / 1_000_000_000_000_000
        if milliseconds < 1000 { return "\(milliseconds) ms" }
        return "\(milliseconds / 1000).\(String(milliseconds % 1000 / 100)) s"
    }
}
