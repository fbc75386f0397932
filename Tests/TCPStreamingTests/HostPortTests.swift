import Testing

@testable import TCPStreaming

struct HostPortTests {
    @Test(arguments: [
        ("127.0.0.1:4444", "127.0.0.1", UInt16(4444)),
        ("[::1]:9", "::1", 9),
        ("collector.example:65535", "collector.example", 65535),
    ])
    func parses(text: String, host: String, port: UInt16) throws {
        let parsed = try HostPort(text)
        #expect(parsed.host == host && parsed.port == port)
    }

    @Test(arguments: ["127.0.0.1", ":80", "host:0", "host:65536", "host:port", "::1:80", "[::1]80"])
    func rejects(text: String) {
        #expect(throws: TCPSinkError.self) { try HostPort(text) }
    }
}
