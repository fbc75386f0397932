import CZlib
import Foundation
import Testing

@testable import KernelSymbols

/// Writes BTF blobs by hand, in either byte order, for the reader's tests.
struct BTFBuilder {
    var order: BTF.ByteOrder = .little
    private(set) var strings: [UInt8] = [0]
    private(set) var typeBytes: [UInt8] = []
    private(set) var count: UInt32 = 0

    init(order: BTF.ByteOrder = .little) {
        self.order = order
    }

    mutating func name(_ text: String) -> UInt32 {
        guard !text.isEmpty else { return 0 }
        let offset = UInt32(strings.count)
        strings += Array(text.utf8) + [0]
        return offset
    }

    /// Appends one record; returns its type id.
    @discardableResult
    mutating func record(
        _ kind: BTFKind, _ name: String = "", vlen: Int = 0, kindFlag: Bool = false, sizeOrType: UInt32 = 0, extra: [UInt32] = []
    ) -> UInt32 {
        let info = UInt32(kind.rawValue) << 24 | UInt32(vlen & 0xffff) | (kindFlag ? 1 << 31 : 0)
        for word in [self.name(name), info, sizeOrType] + extra { append(word, to: &typeBytes) }
        count += 1
        return count
    }

    @discardableResult
    mutating func int(_ name: String, size: UInt32, encoding: UInt8 = 0, bits: UInt8? = nil, bitOffset: UInt8 = 0) -> UInt32 {
        record(
            .int, name, sizeOrType: size,
            extra: [UInt32(encoding) << 24 | UInt32(bitOffset) << 16 | UInt32(bits ?? UInt8(size * 8))])
    }

    @discardableResult
    mutating func structure(
        _ name: String, size: UInt32, union: Bool = false, kindFlag: Bool = false,
        members: [(name: String, type: UInt32, bits: UInt32, width: UInt32)]
    ) -> UInt32 {
        var extra: [UInt32] = []
        for member in members {
            extra += [self.name(member.name), member.type, kindFlag ? member.width << 24 | member.bits : member.bits]
        }
        return record(union ? .union : .structure, name, vlen: members.count, kindFlag: kindFlag, sizeOrType: size, extra: extra)
    }

    func append(_ word: UInt32, to bytes: inout [UInt8]) {
        let value = order == .little ? word.littleEndian : word.bigEndian
        withUnsafeBytes(of: value) { bytes += $0 }
    }

    /// The blob: a 24-byte header, the types, the strings.
    func bytes() -> [UInt8] {
        var out: [UInt8] = order == .little ? [0x9f, 0xeb, 1, 0] : [0xeb, 0x9f, 1, 0]
        for word in [24, 0, UInt32(typeBytes.count), UInt32(typeBytes.count), UInt32(strings.count)] {
            append(word, to: &out)
        }
        return out + typeBytes + strings
    }
}

/// Overwrites a 32-bit header or record field in `order`.
func patch(_ bytes: inout [UInt8], at offset: Int, _ value: UInt32, order: BTF.ByteOrder = .little) {
    let value = order == .little ? value.littleEndian : value.bigEndian
    withUnsafeBytes(of: value) { raw in
        for index in 0..<4 { bytes[offset + index] = raw[index] }
    }
}

/// Expects `body` to throw a BTFError, and returns it.
func btfError(_ bytes: [UInt8], sourceLocation: SourceLocation = #_sourceLocation) -> BTFError? {
    do {
        _ = try BTF(bytes: bytes)
        Issue.record("the BTF was accepted", sourceLocation: sourceLocation)
        return nil
    } catch {
        return error
    }
}

/// A file of the test bundle's Fixtures directory.
func fixture(_ name: String) throws -> String {
    try #require(Bundle.module.path(forResource: name, ofType: nil, inDirectory: "Fixtures"))
}

func fixtureBytes(_ name: String) throws -> [UInt8] {
    Array(try Data(contentsOf: URL(fileURLWithPath: fixture(name))))
}

/// gunzip through zlib, for reading the tables back.
func gunzip(_ bytes: [UInt8]) throws -> [UInt8] {
    var stream = z_stream()
    try #require(avml_inflate_init_auto(&stream) == Z_OK)
    defer { inflateEnd(&stream) }
    var output: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 1 << 16)
    var input = bytes
    var status: Int32 = Z_OK
    input.withUnsafeMutableBufferPointer { source in
        stream.next_in = source.baseAddress
        stream.avail_in = UInt32(source.count)
        while status == Z_OK {
            chunk.withUnsafeMutableBufferPointer { target in
                stream.next_out = target.baseAddress
                stream.avail_out = UInt32(target.count)
                status = inflate(&stream, Z_NO_FLUSH)
                output += target[0..<(target.count - Int(stream.avail_out))]
            }
        }
    }
    try #require(status == Z_STREAM_END)
    return output
}

/// A table made in memory for the tests: what `make` reports of it, and the gzip file's bytes.
@dynamicMemberLookup
struct MadeTable {
    let table: SymbolTable
    let compressed: [UInt8]

    subscript<Value>(dynamicMember path: KeyPath<SymbolTable, Value>) -> Value { table[keyPath: path] }
}

/// Bytes gathered from a writer closure.
final class Collected {
    var bytes: [UInt8] = []
}

extension KernelSymbols {
    /// The table, its bytes gathered in memory.
    static func make(from sources: SymbolSources, producerVersion: String) throws(SymbolTableError) -> MadeTable {
        let collected = Collected()
        let table = try make(from: sources, producerVersion: producerVersion) { collected.bytes += $0 }
        return MadeTable(table: table, compressed: collected.bytes)
    }
}

/// The table's JSON as Foundation objects.
func document(_ table: MadeTable) throws -> [String: Any] {
    let json = try JSONSerialization.jsonObject(with: Data(gunzip(table.compressed)))
    return try #require(json as? [String: Any])
}

extension [String: Any] {
    func object(_ path: String...) -> [String: Any]? {
        var current: Any? = self
        for key in path { current = (current as? [String: Any])?[key] }
        return current as? [String: Any]
    }
}
