// BTF (BPF Type Format), as the kernel publishes it at /sys/kernel/btf/vmlinux.
//
//   header (hdr_len bytes, at least 24), in the byte order its magic shows:
//     u16 magic 0xEB9F   u8 version (1)   u8 flags
//     u32 hdr_len   u32 type_off   u32 type_len   u32 str_off   u32 str_len
//     (the offsets count from the end of the header)
//   type section: one record per type; the first is type id 1 (id 0 is void)
//     u32 name_off   u32 info   u32 size_or_type
//         info: vlen bits 0-15, kind bits 24-28, kind_flag bit 31
//         size for INT, ENUM, ENUM64, STRUCT, UNION, DATASEC, FLOAT; a type id for the others
//     then, by kind:
//       INT         u32  encoding bits 24-27 (1 signed, 2 char, 4 bool), bit offset 16-23, bits 0-7
//       ARRAY       u32 element type, u32 index type, u32 element count
//       STRUCT/UNION vlen x { u32 name_off, u32 type, u32 offset }
//                   offset: bit offset; with kind_flag, bitfield size << 24 | bit offset
//       ENUM        vlen x { u32 name_off, s32 value }        kind_flag: signed
//       ENUM64      vlen x { u32 name_off, u32 low, u32 high } kind_flag: signed
//       FUNC_PROTO  vlen x { u32 name_off, u32 type }          (the return type is size_or_type)
//                   (the parameters are checked, never decoded: a symbol table does not describe them)
//       VAR         u32 linkage
//       DATASEC     vlen x { u32 type, u32 offset, u32 size }
//       DECL_TAG    s32 component index (-1: the declaration itself)
//       FWD (kind_flag: union), FUNC (vlen: linkage), PTR, TYPEDEF, VOLATILE, CONST,
//       RESTRICT, TYPE_TAG, FLOAT: nothing more
//   string section: NUL-terminated names; offset 0 is the empty name.
//
// The BTF comes from a host that may be compromised: every offset, length and
// type id is checked before use, and reference chains are bounded as the
// kernel's own verifier bounds them (32 steps), so a cycle is an error, never a hang.

import Glibc
import ImageFormats

/// The kinds of BTF type records, numbered as in the kernel's uapi/linux/btf.h.
public enum BTFKind: UInt8, Sendable, CustomStringConvertible {
    case int = 1
    case pointer = 2
    case array = 3
    case structure = 4
    case union = 5
    case enumeration = 6
    case forward = 7
    case typedef = 8
    case volatile = 9
    case const = 10
    case restrict = 11
    case function = 12
    case functionPrototype = 13
    case variable = 14
    case dataSection = 15
    case float = 16
    case declTag = 17
    case typeTag = 18
    case enum64 = 19

    /// The kernel's name for the kind, as bpftool prints it.
    public var description: String {
        switch self {
        case .int: "INT"
        case .pointer: "PTR"
        case .array: "ARRAY"
        case .structure: "STRUCT"
        case .union: "UNION"
        case .enumeration: "ENUM"
        case .forward: "FWD"
        case .typedef: "TYPEDEF"
        case .volatile: "VOLATILE"
        case .const: "CONST"
        case .restrict: "RESTRICT"
        case .function: "FUNC"
        case .functionPrototype: "FUNC_PROTO"
        case .variable: "VAR"
        case .dataSection: "DATASEC"
        case .float: "FLOAT"
        case .declTag: "DECL_TAG"
        case .typeTag: "TYPE_TAG"
        case .enum64: "ENUM64"
        }
    }

    /// Kinds whose `size_or_type` names another type that a reference chain follows.
    var followsReference: Bool {
        switch self {
        case .pointer, .typedef, .volatile, .const, .restrict, .typeTag: true
        default: false
        }
    }
}

/// A member of a struct or union.
public struct BTFMember: Sendable, Equatable {
    public var name: String
    public var type: UInt32
    /// Bits from the start of the enclosing struct or union.
    public var bitOffset: UInt32
    /// The declared width of a bitfield; 0 when the member is not one (or, in BTF
    /// without kind_flag, when the width is carried by the member's INT type instead).
    public var bitfieldSize: UInt8
}

/// A constant of an ENUM or ENUM64; `value` is the raw bit pattern, read by the enum's signedness.
public struct BTFEnumerator: Sendable, Equatable {
    public var name: String
    public var value: UInt64
}

/// A variable placed in a DATASEC.
public struct BTFSectionVariable: Sendable, Equatable {
    public var type: UInt32
    public var offset: UInt32
    public var size: UInt32
}

/// One type record, read from the BTF's bytes when looked at: the parsed types of a kernel
/// (names as strings, members as arrays) took 10.8 MiB on 6.1 against the file's 4.4 MiB,
/// and on the examined host every page filled overwrites evidence.
public struct BTFType: Sendable {
    public enum Detail: Sendable {
        case none
        case integer(encoding: UInt8, bitOffset: UInt8, bits: UInt8)
        case array(element: UInt32, index: UInt32, count: UInt32)
        case members([BTFMember])
        case enumerators([BTFEnumerator])
        case variable(linkage: UInt32)
        case sectionVariables([BTFSectionVariable])
        case declTag(componentIndex: Int32)
    }

    public let kind: BTFKind
    public let kindFlag: Bool
    public let vlen: UInt16
    /// The byte size (INT, ENUM, ENUM64, STRUCT, UNION, DATASEC, FLOAT) or the referenced type id (the rest).
    public let sizeOrType: UInt32
    private let file: BTFFile
    /// Where the record starts in the file; nil for void.
    private let record: Int?

    /// INT encoding bits.
    public static let signedEncoding: UInt8 = 1
    public static let charEncoding: UInt8 = 2
    public static let boolEncoding: UInt8 = 4

    init(_ file: BTFFile, record: Int?) {
        self.file = file
        self.record = record
        guard let record else {
            (kind, kindFlag, vlen, sizeOrType) = (.int, false, 0, 0)
            return
        }
        let info = file.u32(record + 4)
        // Every record's kind was checked when the file was read.
        kind = BTFKind(rawValue: UInt8((info >> 24) & 0x1f)) ?? .int
        kindFlag = info >> 31 == 1
        vlen = UInt16(info & 0xffff)
        sizeOrType = file.u32(record + 8)
    }

    /// The type's name ("void" for type 0, "" for a type without one).
    public var name: String {
        guard let record else { return "void" }
        return file.string(at: file.u32(record))
    }

    /// Whether the type has a name, without making it.
    public var hasName: Bool {
        guard let record else { return true }
        return file.bytes[file.stringStart + Int(file.u32(record))] != 0
    }

    /// Where the name's bytes are in the file (for comparing names without making them).
    var nameRange: Range<Int> {
        guard let record else { return 0..<0 }
        return file.stringRange(at: file.u32(record))
    }

    /// What follows the record's 12 bytes, decoded.
    public var detail: Detail {
        guard let record else { return .none }
        let body = record + BTF.recordSize
        let count = Int(vlen)
        switch kind {
        case .int:
            let word = file.u32(body)
            return .integer(encoding: UInt8((word >> 24) & 0x0f), bitOffset: UInt8((word >> 16) & 0xff), bits: UInt8(word & 0xff))
        case .array:
            return .array(element: file.u32(body), index: file.u32(body + 4), count: file.u32(body + 8))
        case .structure, .union:
            return .members(
                (0..<count).map { index in
                    let at = body + 12 * index
                    let offset = file.u32(at + 8)
                    return BTFMember(
                        name: file.string(at: file.u32(at)), type: file.u32(at + 4),
                        bitOffset: kindFlag ? offset & 0xffffff : offset, bitfieldSize: kindFlag ? UInt8(offset >> 24) : 0)
                })
        case .enumeration, .enum64:
            let stride = kind == .enumeration ? 8 : 12
            return .enumerators(
                (0..<count).map { index in
                    let at = body + stride * index
                    let low = file.u32(at + 4)
                    let value: UInt64
                    if kind == .enum64 {
                        value = UInt64(file.u32(at + 8)) << 32 | UInt64(low)
                    } else {
                        // Signed 32-bit values are sign-extended so one reading works for both widths.
                        value = kindFlag ? UInt64(bitPattern: Int64(Int32(bitPattern: low))) : UInt64(low)
                    }
                    return BTFEnumerator(name: file.string(at: file.u32(at)), value: value)
                })
        case .variable:
            return .variable(linkage: file.u32(body))
        case .dataSection:
            return .sectionVariables(
                (0..<count).map { index in
                    let at = body + 12 * index
                    return BTFSectionVariable(type: file.u32(at), offset: file.u32(at + 4), size: file.u32(at + 8))
                })
        case .declTag:
            return .declTag(componentIndex: Int32(bitPattern: file.u32(body)))
        default:
            return .none
        }
    }

    /// The type id of a struct's or union's member `index` (below `vlen`), its name left undecoded.
    func memberType(at index: Int) -> UInt32 {
        guard let record, kind == .structure || kind == .union, index < Int(vlen) else { return 0 }
        return file.u32(record + BTF.recordSize + 12 * index + 4)
    }

    /// The members of a struct or union, empty for other kinds.
    public var members: [BTFMember] {
        if case .members(let members) = detail { return members }
        return []
    }

    /// The constants of an ENUM or ENUM64, empty for other kinds.
    public var enumerators: [BTFEnumerator] {
        if case .enumerators(let values) = detail { return values }
        return []
    }
}

/// The BTF file's bytes, checked, and where each type's record starts: what `BTFType` reads from.
final class BTFFile: Sendable {
    let bytes: [UInt8]
    let byteOrder: BTF.ByteOrder
    let stringStart: Int
    let stringEnd: Int
    /// Each type's record offset, by type id minus one.
    let records: [UInt32]

    init(bytes: [UInt8], byteOrder: BTF.ByteOrder, strings: Range<Int>, records: [UInt32]) {
        self.bytes = bytes
        self.byteOrder = byteOrder
        stringStart = strings.lowerBound
        stringEnd = strings.upperBound
        self.records = records
    }

    func u32(_ at: Int) -> UInt32 { Reader.u32(bytes, at, byteOrder) }

    /// The bytes of the NUL-terminated name at a string offset (checked when the file was read).
    func stringRange(at offset: UInt32) -> Range<Int> {
        let start = stringStart + Int(offset)
        let end = Reader.nul(in: bytes, start..<stringEnd) ?? stringEnd
        return start..<end
    }

    func string(at offset: UInt32) -> String {
        offset == 0 ? "" : String(decoding: bytes[stringRange(at: offset)], as: UTF8.self)
    }
}

/// The types of a BTF file by id (0 is void), each read from the file's bytes when looked at.
public struct BTFTypes: RandomAccessCollection, Sendable {
    let file: BTFFile

    public var startIndex: Int { 0 }
    public var endIndex: Int { file.records.count + 1 }

    public subscript(id: Int) -> BTFType {
        BTFType(file, record: id == 0 ? nil : Int(file.records[id - 1]))
    }

    /// memcmp order of two types' names: the byte order `SymbolList.byName` sorts names in.
    func compareNames(_ left: Int, _ right: Int) -> Int {
        compare(self[left].nameRange, self[right].nameRange)
    }

    /// memcmp order of a type's name and `other`'s UTF-8 bytes.
    func compareName(_ id: Int, with other: ArraySlice<UInt8>) -> Int {
        let range = self[id].nameRange
        return other.withUnsafeBufferPointer { text in
            file.bytes.withUnsafeBufferPointer { compareBytes(UnsafeBufferPointer(rebasing: $0[range]), text) }
        }
    }

    private func compare(_ left: Range<Int>, _ right: Range<Int>) -> Int {
        file.bytes.withUnsafeBufferPointer {
            compareBytes(UnsafeBufferPointer(rebasing: $0[left]), UnsafeBufferPointer(rebasing: $0[right]))
        }
    }
}

/// Which of the file's parts a BTF error is in.
public enum BTFSection: String, Sendable {
    case header
    case types = "type section"
    case strings = "string section"
}

/// Malformed BTF: what is wrong and where (section, type id, byte offset in the file).
public struct BTFError: Error, Sendable, Equatable, CustomStringConvertible {
    public var section: BTFSection
    public var typeID: UInt32?
    /// Byte offset in the BTF data.
    public var offset: Int?
    public var detail: String
    /// The kind number of a record this reader does not know (a newer kernel's): the BTF
    /// may be well formed, but nothing after that record can be read.
    public var unknownKind: UInt8?

    public init(_ section: BTFSection, typeID: UInt32? = nil, offset: Int? = nil, unknownKind: UInt8? = nil, _ detail: String) {
        self.section = section
        self.typeID = typeID
        self.offset = offset
        self.unknownKind = unknownKind
        self.detail = detail
    }

    public var description: String {
        var text = (unknownKind == nil ? "malformed BTF, " : "BTF newer than this reader (or damaged), ") + section.rawValue
        if let typeID { text += ", type id \(typeID)" }
        if let offset { text += " at byte offset \(hex(UInt64(offset)))" }
        return text + ": " + detail
    }
}

/// The types of one BTF blob, checked whole when read, then decoded from its bytes as they are looked at.
public struct BTF: Sendable {
    public enum ByteOrder: String, Sendable {
        case little
        case big
    }

    /// The kernel's limits (uapi/linux/btf.h) and its verifier's resolve depth.
    static let maximumTypeID: UInt32 = 0xfffff
    static let maximumChainDepth = 32
    static let headerSize = 24
    static let recordSize = 12

    public let byteOrder: ByteOrder
    /// Indexed by type id; `types[0]` stands for void.
    public let types: BTFTypes
    /// BTF does not record the pointer size; it is that of `long` (LP64 and ILP32 alike), 8 if there is none.
    public let pointerSize: Int

    /// Decodes and checks `bytes`.
    ///
    /// - Throws: `BTFError` naming the section, type id and offset of the first problem:
    ///   a bad header, a section outside the data, a truncated record, an unknown kind,
    ///   a name outside the string section, a type id that does not exist, or a reference
    ///   chain that loops or is deeper than the kernel allows.
    public init(bytes: [UInt8]) throws(BTFError) {
        let reader = try Reader(bytes)
        byteOrder = reader.byteOrder
        types = BTFTypes(
            file: BTFFile(
                bytes: bytes, byteOrder: reader.byteOrder, strings: reader.stringStart..<reader.stringEnd,
                records: try reader.checkRecords()))
        try Self.checkReferences(types)
        let long = types.first { $0.kind == .int && ($0.name == "long unsigned int" || $0.name == "long int") }
        pointerSize = long.map { Int($0.sizeOrType) } ?? 8
    }

    /// Follows typedefs and qualifiers (const, volatile, restrict, type tags) to the type they stand for.
    /// Safe on any checked BTF: chains are bounded by `init`.
    public func skippingQualifiers(_ id: UInt32) -> UInt32 {
        var current = id
        for _ in 0...Self.maximumChainDepth {
            let type = types[Int(current)]
            switch type.kind {
            case .typedef, .volatile, .const, .restrict, .typeTag: current = type.sizeOrType
            default: return current
            }
        }
        return current
    }

    /// The byte size of a data type, through typedefs, qualifiers and arrays; nil for
    /// void, functions and other kinds without a size.
    public func size(of id: UInt32) -> UInt64? {
        var current = id
        var factor: UInt64 = 1
        for _ in 0...Self.maximumChainDepth {
            guard current != 0 else { return nil }
            let type = types[Int(current)]
            switch type.kind {
            case .int, .enumeration, .enum64, .structure, .union, .float:
                let (total, overflow) = factor.multipliedReportingOverflow(by: UInt64(type.sizeOrType))
                return overflow ? nil : total
            case .pointer:
                let (total, overflow) = factor.multipliedReportingOverflow(by: UInt64(pointerSize))
                return overflow ? nil : total
            case .array:
                guard case .array(let element, _, let count) = type.detail else { return nil }
                let (next, overflow) = factor.multipliedReportingOverflow(by: UInt64(count))
                guard !overflow else { return nil }
                factor = next
                current = element
            case .typedef, .volatile, .const, .restrict, .typeTag:
                current = type.sizeOrType
            default:
                return nil
            }
        }
        return nil
    }

    /// Checks that every type id a record names exists and that no reference chain
    /// (pointers, typedefs, qualifiers, array elements) loops or runs deeper than 32 steps.
    static func checkReferences(_ types: BTFTypes) throws(BTFError) {
        let count = UInt32(types.count)
        func check(_ id: UInt32, of owner: UInt32, _ role: @autoclosure () -> String) throws(BTFError) {
            guard id < count else {
                throw BTFError(
                    .types, typeID: owner,
                    "\(role()) refers to type id \(id), but there are only \(count - 1) types "
                        + "(is this split BTF of a module, which needs the kernel's BTF as its base?)")
            }
        }
        for (index, type) in types.enumerated().dropFirst() {
            let id = UInt32(index)
            switch type.kind {
            case .pointer, .typedef, .volatile, .const, .restrict, .typeTag, .variable:
                try check(type.sizeOrType, of: id, "its \(type.kind)")
            case .function:
                try check(type.sizeOrType, of: id, "the FUNC")
                guard types[Int(type.sizeOrType)].kind == .functionPrototype else {
                    throw BTFError(.types, typeID: id, "FUNC refers to type \(type.sizeOrType), which is not a FUNC_PROTO")
                }
            case .declTag:
                try check(type.sizeOrType, of: id, "the DECL_TAG")
            case .functionPrototype:
                try check(type.sizeOrType, of: id, "the return type")
            default:
                break
            }
            // Members' type ids are read without decoding their names (a name only for an error).
            switch type.kind {
            case .array:
                guard case .array(let element, let index, _) = type.detail else { break }
                try check(element, of: id, "the array's element type")
                try check(index, of: id, "the array's index type")
            case .structure, .union:
                for position in 0..<Int(type.vlen) {
                    try check(type.memberType(at: position), of: id, "member \(position) ('\(type.members[position].name)')")
                }
            case .dataSection:
                guard case .sectionVariables(let variables) = type.detail else { break }
                for (position, variable) in variables.enumerated() {
                    try check(variable.type, of: id, "section variable \(position)")
                }
            default:
                break
            }
        }
        // The chain length below each type plus one, memoised; 0 = not yet known.
        var stored = [UInt8](repeating: 0, count: types.count)
        var path: [UInt32] = []
        for start in 1..<types.count where stored[start] == 0 {
            path.removeAll(keepingCapacity: true)
            var current = UInt32(start)
            var below = 0
            while true {
                if stored[Int(current)] != 0 {
                    below = Int(stored[Int(current)]) - 1
                    break
                }
                let type = types[Int(current)]
                let next: UInt32
                if type.kind.followsReference {
                    next = type.sizeOrType
                } else if case .array(let element, _, _) = type.detail {
                    next = element
                } else {
                    stored[Int(current)] = 1
                    break
                }
                if let loop = path.firstIndex(of: current) {
                    let cycle = (path[loop...] + [current]).map(String.init).joined(separator: " -> ")
                    throw BTFError(.types, typeID: current, "type reference cycle: \(cycle)")
                }
                path.append(current)
                guard path.count <= maximumChainDepth else { throw chainTooLong(UInt32(start)) }
                if next == 0 { break }
                current = next
            }
            for (position, id) in path.enumerated() {
                let length = below + path.count - position
                guard length <= maximumChainDepth else { throw chainTooLong(id) }
                stored[Int(id)] = UInt8(length + 1)
            }
        }
    }

    private static func chainTooLong(_ id: UInt32) -> BTFError {
        BTFError(.types, typeID: id, "reference chain is longer than \(maximumChainDepth) types (the kernel's own limit)")
    }
}

/// Field-by-field reads over the BTF bytes in the header's byte order.
private struct Reader {
    let bytes: [UInt8]
    let byteOrder: BTF.ByteOrder
    let typeStart: Int
    let typeEnd: Int
    let stringStart: Int
    let stringEnd: Int

    init(_ bytes: [UInt8]) throws(BTFError) {
        self.bytes = bytes
        guard bytes.count >= BTF.headerSize else {
            throw BTFError(.header, offset: 0, "\(bytes.count) bytes is too short for the 24-byte header")
        }
        let order: BTF.ByteOrder
        switch (bytes[0], bytes[1]) {
        case (0x9f, 0xeb): order = .little
        case (0xeb, 0x9f): order = .big
        default:
            throw BTFError(
                .header, offset: 0,
                "bad magic \(hex(UInt64(bytes[0]))) \(hex(UInt64(bytes[1]))) (BTF starts with 0xEB9F in its byte order)")
        }
        guard bytes[2] == 1 else { throw BTFError(.header, offset: 2, "unsupported version \(bytes[2]) (only 1 exists)") }
        func word(_ at: Int) -> UInt32 { Self.u32(bytes, at, order) }
        let headerLength = Int(word(4))
        guard headerLength >= BTF.headerSize, headerLength <= bytes.count else {
            throw BTFError(.header, offset: 4, "header length \(headerLength) is outside 24...\(bytes.count)")
        }
        let data = bytes.count - headerLength
        func section(_ name: BTFSection, _ field: Int) throws(BTFError) -> Range<Int> {
            let offset = Int(word(field))
            let length = Int(word(field + 4))
            guard offset <= data, length <= data - offset else {
                throw BTFError(
                    .header, offset: field,
                    "\(name.rawValue) at \(offset) with length \(length) runs past the \(data) bytes after the header")
            }
            return (headerLength + offset)..<(headerLength + offset + length)
        }
        let types = try section(.types, 8)
        let strings = try section(.strings, 16)
        guard types.lowerBound % 4 == 0 else {
            throw BTFError(.header, offset: 8, "type section offset \(types.lowerBound) is not 4-byte aligned")
        }
        guard !types.overlaps(strings) else {
            throw BTFError(.header, offset: 8, "type section \(types) and string section \(strings) overlap")
        }
        guard !strings.isEmpty, bytes[strings.lowerBound] == 0 else {
            throw BTFError(.strings, offset: strings.lowerBound, "the string section must start with the empty name (a NUL byte)")
        }
        byteOrder = order
        typeStart = types.lowerBound
        typeEnd = types.upperBound
        stringStart = strings.lowerBound
        stringEnd = strings.upperBound
    }

    /// The 32-bit word at `at` (inside `bytes`: every caller checked the record or header first).
    static func u32(_ bytes: [UInt8], _ at: Int, _ order: BTF.ByteOrder) -> UInt32 {
        precondition(at >= 0 && at <= bytes.count - 4, "BTF read outside its checked bounds")
        let raw = bytes.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: at, as: UInt32.self) }
        return order == .little ? UInt32(littleEndian: raw) : UInt32(bigEndian: raw)
    }

    /// Where the first NUL in `bytes[range]` is, if any (memchr: names are looked up often).
    static func nul(in bytes: [UInt8], _ range: Range<Int>) -> Int? {
        precondition(range.lowerBound >= 0 && range.upperBound <= bytes.count, "BTF read outside its checked bounds")
        guard !range.isEmpty else { return nil }
        return bytes.withUnsafeBytes { raw -> Int? in
            guard let base = raw.baseAddress, let found = memchr(base + range.lowerBound, 0, range.count) else { return nil }
            return base.distance(to: UnsafeRawPointer(found))
        }
    }

    func u32(_ at: Int) -> UInt32 { Self.u32(bytes, at, byteOrder) }

    /// Checks that a name offset is inside the string section and its name ends there.
    func checkName(_ offset: UInt32, typeID: UInt32, at position: Int, _ role: @autoclosure () -> String) throws(BTFError) {
        if offset == 0 { return }
        let start = stringStart + Int(offset)
        guard Int(offset) < stringEnd - stringStart else {
            throw BTFError(
                .types, typeID: typeID, offset: position,
                "\(role()) name offset \(offset) is past the end of the \(stringEnd - stringStart)-byte string section")
        }
        guard Self.nul(in: bytes, start..<stringEnd) != nil else {
            throw BTFError(
                .strings, typeID: typeID, offset: start, "\(role()) name at string offset \(offset) has no terminating NUL")
        }
    }

    /// The size of the record at `offset`, checked against the section's end.
    private func record(at offset: Int, id: UInt32) throws(BTFError) -> (kind: BTFKind, info: UInt32, extra: Int) {
        guard id <= BTF.maximumTypeID else {
            throw BTFError(.types, typeID: id, offset: offset, "more types than the kernel's limit of \(BTF.maximumTypeID)")
        }
        guard typeEnd - offset >= BTF.recordSize else {
            throw BTFError(
                .types, typeID: id, offset: offset, "truncated record: \(typeEnd - offset) bytes left, a record needs 12")
        }
        let info = u32(offset + 4)
        let rawKind = UInt8((info >> 24) & 0x1f)
        guard let kind = BTFKind(rawValue: rawKind) else {
            // Each kind sizes its record differently, so a kind added after ENUM64 cannot be skipped.
            throw BTFError(
                .types, typeID: id, offset: offset + 4, unknownKind: rawKind,
                "unknown kind \(rawKind) (known: 1 to \(BTFKind.enum64.rawValue), INT to ENUM64); a record's size "
                    + "depends on its kind, so no type after it can be read")
        }
        let count = Int(info & 0xffff)
        let extra: Int
        switch kind {
        case .int, .variable, .declTag: extra = 4
        case .array: extra = 12
        case .structure, .union, .enum64, .dataSection: extra = 12 * count
        case .enumeration, .functionPrototype: extra = 8 * count
        default: extra = 0
        }
        let body = offset + BTF.recordSize
        guard typeEnd - body >= extra else {
            let what = extra == 4 || kind == .array ? "its \(extra)-byte \(kind) data" : "\(count) entries (\(extra) bytes)"
            throw BTFError(
                .types, typeID: id, offset: offset,
                "\(kind) record declares \(what), but only \(typeEnd - body) bytes remain in the type section")
        }
        return (kind, info, extra)
    }

    /// Checks every record (its size, kind, names, and parameters' type ids) and returns where each starts.
    func checkRecords() throws(BTFError) -> [UInt32] {
        // The records are counted first, so that the array is made once at its size, and
        // parameters can be checked against the last type id as they are read.
        var total = 1
        var offset = typeStart
        while offset < typeEnd {
            offset += BTF.recordSize + (try record(at: offset, id: UInt32(total))).extra
            total += 1
        }
        var records: [UInt32] = []
        records.reserveCapacity(total - 1)
        offset = typeStart
        while offset < typeEnd {
            let id = UInt32(records.count + 1)
            let (kind, info, extra) = try record(at: offset, id: id)
            try checkName(u32(offset), typeID: id, at: offset, "the \(kind)'s")
            try checkEntries(kind, id: id, at: offset + BTF.recordSize, count: Int(info & 0xffff), types: total)
            records.append(UInt32(offset))
            offset += BTF.recordSize + extra
        }
        return records
    }

    /// Checks the names of a record's members, constants and parameters, and its parameters' type ids.
    ///
    /// - Parameters:
    ///   - kind: the record's kind.
    ///   - id: its type id, for errors.
    ///   - body: where its data starts.
    ///   - count: its vlen.
    ///   - types: how many type ids there are (void included), to check parameters against.
    /// - Throws: `BTFError` for a name outside the string section or a parameter type that does not exist.
    private func checkEntries(_ kind: BTFKind, id: UInt32, at body: Int, count: Int, types: Int) throws(BTFError) {
        let (stride, role): (Int, String)
        switch kind {
        case .structure, .union: (stride, role) = (12, "member")
        case .enumeration: (stride, role) = (8, "constant")
        case .enum64: (stride, role) = (12, "constant")
        case .functionPrototype: (stride, role) = (8, "parameter")
        default: return
        }
        for index in 0..<count {
            let at = body + stride * index
            try checkName(u32(at), typeID: id, at: at, "\(role) \(index)'s")
            guard kind == .functionPrototype else { continue }
            let type = u32(at + 4)
            guard type < types else {
                throw BTFError(
                    .types, typeID: id,
                    "parameter \(index) refers to type id \(type), but there are only \(types - 1) types "
                        + "(is this split BTF of a module, which needs the kernel's BTF as its base?)")
            }
        }
    }
}
