import FoundationEssentials
import ImageFormats

/// A destination URL, checked before anything is sent: http or https, a host, and
/// for messages always its redacted form (no query string, no user information).
///
/// Parsed by FoundationEssentials' `URLComponents` (RFC 3986); the query is kept
/// exactly as given, percent-encoding and all, because a presigned URL's signature
/// covers those very bytes.
public struct UploadURL: Sendable, Equatable, CustomStringConvertible {
    /// The URL as given, credentials included: sent, never printed.
    public let absolute: String
    public let scheme: String
    /// The host, lowercased, without the brackets of an IPv6 address.
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
        // URLComponents would quietly encode these; in a runbook they mean a quoting mistake.
        guard !text.unicodeScalars.contains(where: { $0.value <= 0x20 || $0.value == 0x7f }) else {
            throw .invalidURL(redacted, reason: "it contains spaces or control characters")
        }
        guard text.contains("://") else {
            throw .invalidURL(redacted, reason: "it has no scheme (expected http:// or https://)")
        }
        guard let components = URLComponents(string: text), let scheme = components.scheme?.lowercased() else {
            throw .invalidURL(redacted, reason: "it is not a valid URL (RFC 3986)")
        }
        guard scheme == "http" || scheme == "https" else {
            throw .invalidURL(redacted, reason: "the scheme must be http or https")
        }
        var host = components.host ?? ""
        if host.hasPrefix("[") && host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        guard !host.isEmpty else { throw .invalidURL(redacted, reason: "it has no host") }
        let port = components.port ?? (scheme == "https" ? 443 : 80)
        guard (1...65535).contains(port) else {
            throw .invalidURL(redacted, reason: "the port must be a number from 1 to 65535")
        }
        self.absolute = text
        self.scheme = scheme
        self.host = host.lowercased()
        self.port = port
        self.path = components.percentEncodedPath.isEmpty ? "/" : components.percentEncodedPath
        self.query = components.percentEncodedQuery ?? ""
    }

    /// Scheme, host, port and path, without query or credentials, escaped for a log.
    public var description: String { Redaction.redactedURL(absolute) }

    /// Secrets of this URL to scrub from server text (`Redaction.secrets(of:)`).
    public var secrets: [String] { Redaction.secrets(of: absolute) }

    /// What goes on the request line: the path and the query with `parameters`
    /// (already encoded) added, e.g. `/c/b.lime?sv=…&sig=…&comp=block`.
    public func requestTarget(addingQuery parameters: String = "") -> String {
        let joined = [query, parameters].filter { !$0.isEmpty }.joined(separator: "&")
        return joined.isEmpty ? path : path + "?" + joined
    }

    /// The host as a URL writes it: bracketed if it is an IPv6 address.
    private var bracketedHost: String { host.contains(":") ? "[\(host)]" : host }

    /// `host:port`, as a proxy's `CONNECT` names the destination.
    var authority: String { "\(bracketedHost):\(port)" }

    /// The `Host` header: the host, with the port unless it is the scheme's default.
    var hostHeader: String {
        port == (scheme == "https" ? 443 : 80) ? bracketedHost : authority
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

    /// The limit one PUT of `size` bytes would exceed, if any.
    func exceededSinglePutLimit(_ size: UInt64) -> UInt64? {
        guard let limit = singlePutLimit, size > limit else { return nil }
        return limit
    }

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
