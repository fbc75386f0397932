import Hashing
import Testing

struct SHA256Tests {
    /// FIPS 180-4 / NIST CAVP examples.
    @Test(arguments: [
        // the empty message
        ("", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"),
        // one block
        ("abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"),
        // 448 bits: the padding needs a second block
        (
            "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"
        ),
    ])
    func knownDigests(message: String, expected: String) {
        #expect(SHA256.hash(data: Array(message.utf8)).description == expected)
    }

    @Test func aMillionTimesTheLetterA() {
        let message = [UInt8](repeating: UInt8(ascii: "a"), count: 1_000_000)
        #expect(
            SHA256.hash(data: message).description == "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0")
    }

    @Test func piecesOfAnyLengthGiveTheDigestOfTheWhole() {
        var message: [UInt8] = []
        var state: UInt32 = 12345
        for _ in 0..<10_000 {
            state = state &* 1_103_515_245 &+ 12345
            message.append(UInt8(truncatingIfNeeded: state >> 16))
        }
        let whole = SHA256.hash(data: message)
        var hasher = SHA256()
        var offset = 0
        for step in [0, 1, 63, 64, 65, 127, 1000, 3] + Array(repeating: 500, count: 20) where offset < message.count {
            let end = min(offset + step, message.count)
            message[offset..<end].withUnsafeBytes { hasher.update(bufferPointer: $0) }
            offset = end
        }
        message[offset...].withUnsafeBytes { hasher.update(bufferPointer: $0) }
        #expect(hasher.finalize() == whole)
        #expect(Array(whole).count == SHA256.Digest.byteCount)
    }

    @Test func finalizeLeavesTheHasherAsItWas() {
        var hasher = SHA256()
        Array("ab".utf8).withUnsafeBytes { hasher.update(bufferPointer: $0) }
        _ = hasher.finalize()
        Array("c".utf8).withUnsafeBytes { hasher.update(bufferPointer: $0) }
        #expect(hasher.finalize() == SHA256.hash(data: Array("abc".utf8)))
    }

    @Test func aSequenceWithoutContiguousStorageIsHashedToo() {
        #expect(SHA256.hash(data: "abc".utf8.lazy.map { $0 }) == SHA256.hash(data: Array("abc".utf8)))
    }
}
