import COpenSSLSHA256

/// SHA-256 (FIPS 180-4), computed by OpenSSL's libcrypto.
///
/// Why not swift-crypto: its `Crypto` module pulls FoundationEssentials and a second
/// BoringSSL into the static binary (about 1.3 MB), and the acquire-only build has no
/// TLS stack whose BoringSSL could lend its SHA-256. libcrypto's SHA-256 costs about
/// 16 KB and uses the CPU's SHA extensions where they exist (1.6 GB/s on this
/// project's test machine, as fast as swift-crypto was).
///
/// The same shape as swift-crypto's `SHA256`: a value type (a copy hashes on
/// independently), `update(bufferPointer:)`, and `finalize()` that leaves the hasher
/// as it was.
public struct SHA256: Sendable {
    private var context = SHA256_CTX()

    public init() {
        avml_sha256_init(&context)
    }

    /// Adds `bytes` to the message.
    public mutating func update(bufferPointer bytes: UnsafeRawBufferPointer) {
        guard let base = bytes.baseAddress, !bytes.isEmpty else { return }
        avml_sha256_update(&context, base, bytes.count)
    }

    /// The digest of everything added so far; the hasher can go on.
    public func finalize() -> Digest {
        var finishing = context
        var bytes = [UInt8](repeating: 0, count: Digest.byteCount)
        bytes.withUnsafeMutableBufferPointer { avml_sha256_final(&finishing, $0.baseAddress) }
        return Digest(bytes: bytes)
    }

    /// The digest of `data`, in one call.
    public static func hash<Bytes: Sequence<UInt8>>(data: Bytes) -> Digest {
        var hasher = SHA256()
        let done: Void? = data.withContiguousStorageIfAvailable { hasher.update(bufferPointer: UnsafeRawBufferPointer($0)) }
        if done == nil {
            Array(data).withUnsafeBytes { hasher.update(bufferPointer: $0) }
        }
        return hasher.finalize()
    }

    /// A 32-byte SHA-256 digest: iterates over its bytes, prints as lowercase hex.
    public struct Digest: Sequence, Sendable, Hashable, CustomStringConvertible {
        public static let byteCount = 32
        private let bytes: [UInt8]

        fileprivate init(bytes: [UInt8]) {
            self.bytes = bytes
        }

        public func makeIterator() -> Array<UInt8>.Iterator {
            bytes.makeIterator()
        }

        /// Lowercase hex, 64 characters: how manifests and `sha256sum` write a digest.
        public var description: String {
            let digits = Array("0123456789abcdef".utf8)
            var text: [UInt8] = []
            text.reserveCapacity(2 * Self.byteCount)
            for byte in bytes {
                text.append(digits[Int(byte >> 4)])
                text.append(digits[Int(byte & 0xf)])
            }
            return String(decoding: text, as: UTF8.self)
        }
    }
}
