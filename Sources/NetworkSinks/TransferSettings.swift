import FoundationEssentials
import Glibc

/// What every upload shares: the retry policy, time-outs, and the environment that
/// chooses a proxy (`HTTPS_PROXY`, `HTTP_PROXY`, `NO_PROXY`) and the CA bundle
/// (`SSL_CERT_FILE`, else the system's).
public struct TransferSettings: Sendable {
    public var retry: RetryPolicy
    /// Time allowed to open a connection (TCP and TLS).
    public var connectTimeout: Duration
    /// Time allowed with no byte sent or received before an attempt is abandoned.
    public var idleTimeout: Duration
    /// The slowest average rate, in bytes a second, at which an attempt may send its
    /// body: with the time-outs it sets the attempt's overall deadline, so a server
    /// that takes or sends a byte now and then cannot hold an upload forever.
    public var minimumRate: UInt64 = 64 << 10
    /// How long the body of an error answer (its `<Code>` and `<Message>`) may take
    /// after its head; the rest is not waited for. Servers send both together.
    public var errorBodyGrace: Duration = .milliseconds(500)
    /// Environment variables consulted for the proxy and the CA bundle.
    public var environment: [String: String]
    /// Told about every attempt that failed and will be retried (already redacted).
    public var onRetry: (@Sendable (String) -> Void)?

    public init(
        retry: RetryPolicy = RetryPolicy(), connectTimeout: Duration = .seconds(10), idleTimeout: Duration = .seconds(120),
        environment: [String: String] = [:], onRetry: (@Sendable (String) -> Void)? = nil
    ) {
        self.retry = retry
        self.connectTimeout = connectTimeout
        self.idleTimeout = idleTimeout
        self.environment = environment
        self.onRetry = onRetry
    }

    /// The overall deadline of one attempt with `bytes` of body: the connect and idle
    /// time-outs plus the body at `minimumRate` (a 5 MiB block: 210 s; 5 GiB: about 23 h).
    public func deadline(forBodyBytes bytes: UInt64) -> Duration {
        connectTimeout + idleTimeout + .seconds(Int64(bytes / max(minimumRate, 1)))
    }

    /// Settings from this process's environment. `AVML_RETRY_BASE_MS` shortens the
    /// backoff's first step (default 500 ms): the network tests use it so that a dead
    /// destination fails in seconds rather than a minute.
    public static func fromProcessEnvironment(onRetry: (@Sendable (String) -> Void)? = nil) -> TransferSettings {
        let environment = processEnvironment()
        var retry = RetryPolicy()
        if let text = environment["AVML_RETRY_BASE_MS"], let milliseconds = Int64(text), milliseconds >= 0 {
            retry.baseDelay = .milliseconds(milliseconds)
        }
        return TransferSettings(retry: retry, environment: environment, onRetry: onRetry)
    }

    /// Every variable of this process's environment.
    public static func processEnvironment() -> [String: String] {
        var result: [String: String] = [:]
        var entry = environ
        while let pointer = entry.pointee {
            let text = String(cString: pointer)
            if let equals = text.firstIndex(of: "=") {
                result[String(text[..<equals])] = String(text[text.index(after: equals)...])
            }
            entry += 1
        }
        return result
    }
}

/// An HTTP proxy chosen from the environment for one destination.
public struct ProxySetting: Sendable, Equatable {
    public var host: String
    public var port: Int
    public var username: String?
    public var password: String?

    /// The `Proxy-Authorization` value for the credentials, if any: HTTP Basic (RFC 7617).
    var authorization: String? {
        guard let username else { return nil }
        return "Basic " + Data("\(username):\(password ?? "")".utf8).base64EncodedString()
    }

    /// The proxy for `url`, as curl chooses it: `HTTPS_PROXY`/`https_proxy` for https,
    /// `HTTP_PROXY`/`http_proxy` for http, none when `NO_PROXY`/`no_proxy` lists the host
    /// (`*`, a name, `.suffix` or `suffix` matching the host and its subdomains, an IP
    /// address; an entry may carry `:port`). The proxy is reached with HTTP `CONNECT`.
    ///
    /// - Throws: `UploadError.invalidURL` for a proxy variable that is not `[http://][user:password@]host[:port]`.
    public static func forDestination(_ url: UploadURL, environment: [String: String]) throws(UploadError) -> ProxySetting? {
        let names = url.scheme == "https" ? ["https_proxy", "HTTPS_PROXY"] : ["http_proxy", "HTTP_PROXY"]
        guard let value = names.lazy.compactMap({ environment[$0] }).first(where: { !$0.isEmpty }) else { return nil }
        let noProxy = environment["no_proxy"] ?? environment["NO_PROXY"] ?? ""
        if bypasses(host: url.host, port: url.port, noProxy: noProxy) { return nil }
        return try parse(value)
    }

    /// Parses a proxy variable's value, `[http://][user:password@]host[:port]`, with
    /// `URLComponents` (which also decodes percent-escapes in the credentials).
    public static func parse(_ value: String) throws(UploadError) -> ProxySetting {
        var text = value.trimmingSpaces()
        if !text.contains("://") { text = "http://" + text }
        let redacted = Redaction.redactedURL(value)
        guard text.lowercased().hasPrefix("http://") else {
            throw .invalidURL(redacted, reason: "only http:// proxies are supported (CONNECT)")
        }
        guard let components = URLComponents(string: text), var host = components.host, !host.isEmpty else {
            throw .invalidURL(redacted, reason: "a proxy is [http://][user:password@]host[:port]")
        }
        if host.hasPrefix("[") && host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        // curl's default proxy port is 1080.
        let port = components.port ?? 1080
        guard (1...65535).contains(port) else {
            throw .invalidURL(redacted, reason: "the port must be a number from 1 to 65535")
        }
        return ProxySetting(host: host.lowercased(), port: port, username: components.user, password: components.password)
    }

    /// Whether `NO_PROXY` exempts `host`.
    public static func bypasses(host: String, port: Int, noProxy: String) -> Bool {
        let host = host.lowercased()
        for rawEntry in noProxy.split(separator: ",") {
            var entry = rawEntry.trimmingSpaces().lowercased()
            if entry == "*" { return true }
            if entry.isEmpty { continue }
            if entry.hasPrefix("[") {
                if let close = entry.firstIndex(of: "]") {
                    let after = entry[entry.index(after: close)...]
                    if after.hasPrefix(":"), let entryPort = Int(after.dropFirst()), entryPort != port { continue }
                    entry = String(entry[entry.index(after: entry.startIndex)..<close])
                }
            } else if entry.filter({ $0 == ":" }).count == 1, let colon = entry.firstIndex(of: ":") {
                if let entryPort = Int(entry[entry.index(after: colon)...]), entryPort != port { continue }
                entry = String(entry[..<colon])
            }
            if entry.hasPrefix("*.") { entry.removeFirst() }
            if entry.hasPrefix(".") { entry.removeFirst() }
            if host == entry || host.hasSuffix("." + entry) { return true }
        }
        return false
    }
}

/// The CA bundle to trust: `SSL_CERT_FILE` if set, else the first system bundle that exists.
public enum CABundle {
    /// Where Linux distributions keep their bundle: Debian and Ubuntu, Fedora and RHEL,
    /// openSUSE, Alpine, and older RHEL.
    public static let systemPaths = [
        "/etc/ssl/certs/ca-certificates.crt",
        "/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem",
        "/etc/pki/tls/certs/ca-bundle.crt",
        "/etc/ssl/ca-bundle.pem",
        "/etc/ssl/cert.pem",
        "/etc/pki/tls/cacert.pem",
    ]

    /// The bundle's path, or nil to leave the choice to BoringSSL's defaults.
    public static func path(environment: [String: String], exists: (String) -> Bool = fileExists) -> String? {
        if let explicit = environment["SSL_CERT_FILE"], !explicit.isEmpty { return explicit }
        return systemPaths.first(where: exists)
    }

    public static func fileExists(_ path: String) -> Bool {
        access(path, R_OK) == 0
    }
}
