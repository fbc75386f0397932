import ImageFormats
import SystemPackage

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

/// A failed TCP stream, naming the destination and how many bytes it had accepted.
public enum TCPSinkError: Error, Sendable, CustomStringConvertible {
    case invalidAddress(String, reason: String)
    /// The host name did not resolve.
    case resolve(String, message: String)
    /// No address of the destination accepted the connection.
    case connect(String, errno: Errno)
    /// Sending failed: the receiver closed or reset the connection, or the network failed.
    case send(String, sent: UInt64, errno: Errno)
    /// The receiver stopped reading for too long.
    case stalled(String, sent: UInt64, seconds: Int)

    public var description: String {
        switch self {
        case .invalidAddress(let text, let reason):
            return "invalid destination \(text): \(reason)"
        case .resolve(let destination, let message):
            return "cannot resolve \(destination): \(message)"
        case .connect(let destination, let errno):
            return "cannot connect to \(destination): \(errno)"
        case .send(let destination, let sent, let errno):
            var text = "the connection to \(destination) failed after \(sent) bytes: \(errno)"
            if errno == .brokenPipe || errno == .connectionReset {
                text += " (the receiver closed the connection; the image there is incomplete)"
            }
            return text
        case .stalled(let destination, let sent, let seconds):
            return
                "\(destination) accepted no data for \(seconds) s after \(sent) bytes; giving up (the image there is incomplete)"
        }
    }
}
