import Glibc
import RecordEngine
import SystemPackage

/// An image streamed over a plain TCP connection (`avml stream tcp HOST:PORT`), for a
/// collector such as `nc -l PORT > image.lime`.
///
/// The receiver gets exactly the bytes `avml acquire` would write to a file. Nothing
/// is encrypted: use it on a network you trust, or through an SSH tunnel. A write
/// that fails (the receiver closed or reset the connection) or that the receiver
/// does not take for `stallTimeout` seconds stops the capture with an error.
///
/// Plain sockets, no SwiftNIO: the acquire-only build streams with this and links no
/// network stack. Lifecycle: `write`*, then exactly one of `finish()` (orderly
/// shutdown) or `abort()` (reset).
public final class TCPSink: ImageSink {
    public let destination: HostPort
    private let descriptor: Int32
    private var closed = false
    /// Bytes the kernel accepted so far.
    public private(set) var bytesSent: UInt64 = 0
    private let stallTimeout: Int
    private let drainTimeout: Int

    /// Connects to `address`.
    ///
    /// - Parameters:
    ///   - address: `HOST:PORT`, `[IPv6]:PORT` or `IPv4:PORT`.
    ///   - connectTimeout: seconds to wait for each address to accept.
    ///   - stallTimeout: seconds a write may wait for the receiver to take data.
    ///   - drainTimeout: seconds `finish()` waits for the receiver to close its side.
    /// - Throws: `TCPSinkError` for a bad address, a name that does not resolve, or no address accepting.
    public init(address: String, connectTimeout: Int = 10, stallTimeout: Int = 120, drainTimeout: Int = 10)
        throws(TCPSinkError)
    {
        destination = try HostPort(address)
        self.stallTimeout = stallTimeout
        self.drainTimeout = drainTimeout
        descriptor = try Self.connect(to: destination, timeout: connectTimeout)
        var seconds = timeval(tv_sec: stallTimeout, tv_usec: 0)
        _ = setsockopt(descriptor, SOL_SOCKET, SO_SNDTIMEO, &seconds, socklen_t(MemoryLayout<timeval>.size))
        var on: Int32 = 1
        _ = setsockopt(descriptor, SOL_SOCKET, SO_KEEPALIVE, &on, socklen_t(MemoryLayout<Int32>.size))
    }

    deinit {
        if !closed { Glibc.close(descriptor) }
    }

    public func write(_ bytes: UnsafeRawBufferPointer) throws(TCPSinkError) {
        guard let base = bytes.baseAddress else { return }
        var offset = 0
        while offset < bytes.count {
            // MSG_NOSIGNAL: a closed receiver is an EPIPE error here, not a SIGPIPE that kills us.
            let sent = send(descriptor, base + offset, bytes.count - offset, Int32(MSG_NOSIGNAL))
            if sent < 0 {
                let failure = Errno(rawValue: errno)
                if failure == .interrupted { continue }
                if failure == .wouldBlock || failure == .resourceTemporarilyUnavailable {
                    throw .stalled(destination.description, sent: bytesSent, seconds: stallTimeout)
                }
                throw .send(destination.description, sent: bytesSent, errno: failure)
            }
            offset += sent
            bytesSent += UInt64(sent)
        }
    }

    /// Ends the stream: shuts down the sending side so the receiver sees end-of-file,
    /// waits up to `drainTimeout` seconds for it to close its side, and closes.
    ///
    /// - Throws: `TCPSinkError.send` if the receiver reset the connection instead of
    ///   closing it (it did not take everything).
    public func finish() throws(TCPSinkError) {
        guard !closed else { return }
        closed = true
        defer { Glibc.close(descriptor) }
        if shutdown(descriptor, Int32(SHUT_WR)) != 0 {
            throw .send(destination.description, sent: bytesSent, errno: Errno(rawValue: errno))
        }
        var discard = [UInt8](repeating: 0, count: 4096)
        // A deadline, not a count of idle polls: a receiver that keeps sending must not hold us forever.
        var now = timespec()
        clock_gettime(CLOCK_MONOTONIC, &now)
        let deadline = now.tv_sec + drainTimeout
        while true {
            clock_gettime(CLOCK_MONOTONIC, &now)
            guard now.tv_sec < deadline else { break }
            var poller = pollfd(fd: descriptor, events: Int16(POLLIN), revents: 0)
            let ready = poll(&poller, 1, 200)
            if ready <= 0 { continue }
            let count = discard.withUnsafeMutableBytes { recv(descriptor, $0.baseAddress, $0.count, 0) }
            if count > 0 { continue }
            if count == 0 { return }  // the receiver closed: everything arrived
            let failure = Errno(rawValue: errno)
            if failure == .interrupted { continue }
            throw .send(destination.description, sent: bytesSent, errno: failure)
        }
        // The receiver keeps its side open; all bytes were handed over, so that is not an error.
    }

    /// Closes without the orderly shutdown (after a failed capture).
    public func abort() {
        guard !closed else { return }
        closed = true
        // Reset instead of an orderly close, so the receiver sees an error, not a
        // truncated image that ends cleanly between two records.
        var linger = Glibc.linger(l_onoff: 1, l_linger: 0)
        _ = setsockopt(descriptor, SOL_SOCKET, SO_LINGER, &linger, socklen_t(MemoryLayout<Glibc.linger>.size))
        Glibc.close(descriptor)
    }

    /// Resolves `destination` and connects to the first address that accepts, each within `timeout` seconds.
    static func connect(to destination: HostPort, timeout: Int) throws(TCPSinkError) -> Int32 {
        var hints = addrinfo()
        hints.ai_family = AF_UNSPEC
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        hints.ai_flags = AI_ADDRCONFIG | AI_NUMERICSERV
        var list: UnsafeMutablePointer<addrinfo>?
        let status = getaddrinfo(destination.host, String(destination.port), &hints, &list)
        guard status == 0, let first = list else {
            let message =
                status == EAI_SYSTEM ? String(describing: Errno(rawValue: errno)) : String(cString: gai_strerror(status))
            throw .resolve(destination.description, message: message)
        }
        defer { freeaddrinfo(first) }
        var lastError = Errno.connectionRefused
        var entry: UnsafeMutablePointer<addrinfo>? = first
        while let address = entry {
            entry = address.pointee.ai_next
            let fd = socket(
                address.pointee.ai_family, address.pointee.ai_socktype | Int32(SOCK_CLOEXEC.rawValue), address.pointee.ai_protocol
            )
            guard fd >= 0 else {
                lastError = Errno(rawValue: errno)
                continue
            }
            if let failure = connect(fd, address.pointee.ai_addr, address.pointee.ai_addrlen, timeout: timeout) {
                lastError = failure
                Glibc.close(fd)
                continue
            }
            return fd
        }
        throw .connect(destination.description, errno: lastError)
    }

    /// `connect(2)` with a time limit: non-blocking connect, `poll(2)`, then `SO_ERROR`.
    private static func connect(_ fd: Int32, _ address: UnsafePointer<sockaddr>, _ length: socklen_t, timeout: Int) -> Errno? {
        let flags = fcntl(fd, F_GETFL)
        _ = fcntl(fd, F_SETFL, flags | O_NONBLOCK)
        defer { _ = fcntl(fd, F_SETFL, flags) }
        if Glibc.connect(fd, address, length) == 0 { return nil }
        guard errno == EINPROGRESS else { return Errno(rawValue: errno) }
        var poller = pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)
        var ready: Int32
        repeat {
            ready = poll(&poller, 1, Int32(timeout * 1000))
        } while ready < 0 && errno == EINTR
        if ready == 0 { return .timedOut }
        if ready < 0 { return Errno(rawValue: errno) }
        var socketError: Int32 = 0
        var size = socklen_t(MemoryLayout<Int32>.size)
        guard getsockopt(fd, SOL_SOCKET, SO_ERROR, &socketError, &size) == 0 else { return Errno(rawValue: errno) }
        return socketError == 0 ? nil : Errno(rawValue: socketError)
    }
}
