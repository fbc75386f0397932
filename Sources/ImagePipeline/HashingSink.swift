import Hashing

/// Passes bytes on to another sink and hashes exactly what was accepted, so the
/// manifest's SHA-256 describes the image as written without a second read.
public final class HashingSink: ImageSink {
    private let sink: ImageSink
    private var hasher = SHA256()
    /// Bytes passed on so far.
    public private(set) var count: UInt64 = 0

    public init(_ sink: ImageSink) {
        self.sink = sink
    }

    public func write(_ bytes: UnsafeRawBufferPointer) throws {
        try sink.write(bytes)
        hasher.update(bufferPointer: bytes)
        count += UInt64(bytes.count)
    }

    /// Starts over, for a destination emptied to retry with another source.
    public func reset() {
        hasher = SHA256()
        count = 0
    }

    /// The hex SHA-256 of everything written since the start or the last reset.
    public func digest() -> String {
        hexDigest(hasher.finalize())
    }
}

func hexDigest(_ digest: SHA256.Digest) -> String {
    let digits = Array("0123456789abcdef".utf8)
    var text: [UInt8] = []
    text.reserveCapacity(64)
    for byte in digest {
        text.append(digits[Int(byte >> 4)])
        text.append(digits[Int(byte & 0xf)])
    }
    return String(decoding: text, as: UTF8.self)
}
