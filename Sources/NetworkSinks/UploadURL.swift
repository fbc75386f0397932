import ImageFormats

/// A destination URL, checked before anything is sent: http or https, a host, and
/// for messages always its redacted form (no query string, no user information).
public struct UploadURL: Sendable, Equatable, CustomStringConvertible {
    /// The URL as given, credentials included: sent, never printed.
    public let absolute: String
    public let scheme: String
    public let host: String
    public let port: Int
    /// The path, percent-encoded as given, at least "/".
    public let path: String
    /// The query string without "?", empty if none.
    public let query: String

    /// Parses and checks `text`.
    /// - Throws: `UploadError.invalidURL` naming the redacted URL and what is wrong.
    public init(_ text: String) throws(UploadError) {
        let redacted = Redaction.redactedURL(text)
        guard let schemeEnd = text.firstRange(of: "://") else {
            throw .invalidURL(redacted, reason: "it has no scheme (expected http:// or https://)")
        }
        let scheme = text[..<schemeEnd.lowerBound].lowercased()
        guard scheme == "http" || scheme == "https" else {
            throw .invalidURL(redacted, reason: "the scheme must be http or https")
        }
        guard !text.unicodeScalars.contains(where: { $0.value <= 0x20 || $0.value == 0x7f }) else {
            throw .invalidURL(redacted, reason: "it contains spaces or control characters")
        }
        var rest = text[schemeEnd.upperBound...]
        if let hash = rest.firstIndex(of: "#") { rest = rest[..<hash] }
        let authorityEnd = rest.firstIndex(where: { $0 == "/" || $0 == "?" }) ?? rest.endIndex
        var authority = rest[..<authorityEnd]
        if let at = authority.lastIndex(of: "@") { authority = authority[authority.index(after: at)...] }
        let afterAuthority = rest[authorityEnd...]
        let pathEnd = afterAuthority.firstIndex(of: "?") ?? afterAuthority.endIndex
        let path = afterAuthority[..<pathEnd]
        let query = pathEnd < afterAuthority.endIndex ? afterAuthority[afterAuthority.index(after: pathEnd)...] : ""

        var host: Substring
        var portText: Substring?
        if authority.hasPrefix("[") {
            guard let close = authority.firstIndex(of: "]") else {
                throw .invalidURL(redacted, reason: "an IPv6 address lacks its closing \"]\"")
            }
            host = authority[authority.index(after: authority.startIndex)..<close]
            let after = authority[authority.index(after: close)...]
            if after.hasPrefix(":") {
                portText = after.dropFirst()
            } else if !after.isEmpty {
                throw .invalidURL(redacted, reason: "unexpected text after the IPv6 address")
            }
        } else if let colon = authority.lastIndex(of: ":") {
            host = authority[..<colon]
            portText = authority[authority.index(after: colon)...]
        } else {
            host = authority
        }
        guard !host.isEmpty else { throw .invalidURL(redacted, reason: "it has no host") }
        var port = scheme == "https" ? 443 : 80
        if let portText {
            guard let value = Int(portText), (1...65535).contains(value) else {
                throw .invalidURL(redacted, reason: "the port must be a number from 1 to 65535")
            }
            port = value
        }
        self.absolute = text
        self.scheme = scheme
        self.host = host.lowercased()
        self.port = port
        self.path = path.isEmpty ? "/" : String(path)
        self.query = String(query)
    }

    /// Scheme, host, port and path, without query or credentials, escaped for a log.
    public var description: String { Redaction.redactedURL(absolute) }

    /// Secrets of this URL to scrub from server text (`Redaction.secrets(of:)`).
    public var secrets: [String] { Redaction.secrets(of: absolute) }

    /// This URL with `parameters` (already encoded) added to its query string.
    public func addingQuery(_ parameters: String) -> String {
        var base = absolute
        if let hash = base.firstIndex(of: "#") { base = String(base[..<hash]) }
        if query.isEmpty {
            return base.hasSuffix("?") ? base + parameters : base + "?" + parameters
        }
        return base + "&" + parameters
    }

    /// The object store this URL most likely points at, from its host and query.
    public var store: ObjectStore {
        let names = Set(
            query.split(separator: "&").map { pair in
                String(pair.split(separator: "=", maxSplits: 1).first ?? "").lowercased()
            })
        if names.contains("x-amz-algorithm") || names.contains("x-amz-signature")
            || (names.contains("awsaccesskeyid") && names.contains("signature"))
            || host.hasSuffix(".amazonaws.com") || host == "amazonaws.com"
        {
            return .s3
        }
        if names.contains("x-goog-algorithm") || names.contains("x-goog-signature") || names.contains("googleaccessid")
            || host == "storage.googleapis.com" || host.hasSuffix(".storage.googleapis.com")
        {
            return .gcs
        }
        if (names.contains("sig") && names.contains("sv")) || host.hasSuffix(".blob.core.windows.net") {
            return .azure
        }
        return .other
    }

    /// True when the path names a blob inside a container (`/container/blob`).
    public var namesBlob: Bool {
        path.split(separator: "/").count >= 2
    }
}

/// Object stores whose single-request limits we know.
public enum ObjectStore: String, Sendable, Equatable {
    case s3 = "Amazon S3"
    case gcs = "Google Cloud Storage"
    case azure = "Azure Blob Storage"
    case other = "the server"

    /// The largest object one PUT may carry, if the store has a limit we check.
    public var singlePutLimit: UInt64? {
        switch self {
        case .s3: return 5 << 30  // 5 GiB
        case .azure: return 5000 << 20  // Put Blob, REST version 2019-12-12 and later
        case .gcs: return 5 << 40  // 5 TiB
        case .other: return nil
        }
    }
}

/// A `HOST:PORT` destination for `stream tcp`: `127.0.0.1:4444`, `[::1]:4444`, `collector:4444`.
public struct HostPort: Sendable, Equatable, CustomStringConvertible {
    public let host: String
    public let port: UInt16

    /// Parses `text`.
    /// - Throws: `TCPSinkError.invalidAddress` when the host or port is missing or wrong.
    public init(_ text: String) throws(TCPSinkError) {
        var host: Substring
        let portText: Substring
        if text.hasPrefix("[") {
            guard let close = text.firstIndex(of: "]"), text[text.index(after: close)...].hasPrefix(":") else {
                throw .invalidAddress(escapedForLog(text), reason: "expected [IPv6]:PORT")
            }
            host = text[text.index(after: text.startIndex)..<close]
            portText = text[text.index(close, offsetBy: 2)...]
        } else {
            guard let colon = text.lastIndex(of: ":") else {
                throw .invalidAddress(escapedForLog(text), reason: "expected HOST:PORT")
            }
            host = text[..<colon]
            portText = text[text.index(after: colon)...]
            if host.contains(":") {
                throw .invalidAddress(escapedForLog(text), reason: "write an IPv6 address in brackets: [ADDRESS]:PORT")
            }
        }
        guard !host.isEmpty else { throw .invalidAddress(escapedForLog(text), reason: "the host is empty") }
        guard let port = UInt16(portText), port > 0 else {
            throw .invalidAddress(escapedForLog(text), reason: "the port must be a number from 1 to 65535")
        }
        self.host = String(host)
        self.port = port
    }

    public var description: String {
        host.contains(":") ? "[\(escapedForLog(host))]:\(port)" : "\(escapedForLog(host)):\(port)"
    }
}
