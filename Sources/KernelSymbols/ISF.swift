// Volatility 3's Intermediate Symbol Format (ISF), format 6.2.0 as dwarf2json
// writes it and volatility3/schemas/schema-6.2.0.json describes it:
//
//   { "metadata":   { "format": "6.2.0", "producer": {name, version}, "linux": {"symbols": [source...]} },
//     "base_types": { "int": {size, signed, kind: int|char|bool|float|void, endian}, "pointer": ..., "void": ... },
//     "user_types": { "task_struct": {kind: struct|union, size, fields: {"pid": {type, offset[, anonymous]}}} },
//     "enums":      { "pid_type": {size, base, constants: {"PIDTYPE_PID": 0, ...}} },
//     "symbols":    { "init_task": {address[, type][, constant_data (base64)]} } }
//
// A type descriptor is {"kind": "base", "name"} | {"kind": "pointer", "subtype"} |
// {"kind": "array", "count", "subtype"} | {"kind": "struct"|"union", "name"} |
// {"kind": "enum", "name"} | {"kind": "function"} |
// {"kind": "bitfield", "bit_position", "bit_length", "type": base or enum}.
// Typedefs and qualifiers are resolved away, as dwarf2json does.
//
// Names: a struct, union or enum keeps its C tag. A tag that BTF holds more than
// once (different layouts from different compilation units) goes to the definition
// most members and variables use; the others become "TAG__ID". A type without a tag that a typedef names takes the
// typedef's name (after every tag, as dwarf2json names it); the rest become
// "unnamed_struct_ID", "unnamed_union_ID", "unnamed_enum_ID"; members without a name "unnamed_field_INDEX"
// (marked anonymous when they are a struct or union, which Volatility flattens).

import FoundationEssentials

/// Where the symbol addresses came from, for the ISF's metadata.
struct ISFSource {
    var name: String
    var sha256: String
}

/// Turns checked BTF into ISF JSON.
struct ISFWriter {
    let btf: BTF
    /// ISF names of structs and unions (and forward declarations), by type id: a dictionary,
    /// since they are a tenth of the types.
    private var userNames: [UInt32: String] = [:]
    /// ISF names of enums, by type id.
    private var enumNames: [UInt32: String] = [:]
    private let endian: String
    /// Whether this BTF wrote 1-byte integers without their signed bit, `signed char` too (pahole
    /// before 1.22; Debian 5.10's BTF): the bit then says nothing of `char` (see `isSigned`).
    private let oneByteSignLost: Bool
    /// The kernel's version from its banner, for `char`'s sign where the BTF lost it.
    private let kernel: (major: Int, minor: Int)?
    /// Whether the kernel is x86's (its `struct pt_regs` has `orig_ax`), the one architecture
    /// whose `char` is signed; arm64's, like ppc64's, s390's and riscv's, is unsigned.
    private let x86: Bool

    init(btf: BTF, kernel: (major: Int, minor: Int)? = nil) throws(BTFError) {
        self.btf = btf
        self.kernel = kernel
        endian = btf.byteOrder.rawValue
        oneByteSignLost = btf.types.contains { type in
            guard type.kind == .int, type.sizeOrType == 1, case .integer(let encoding, _, _) = type.detail else { return false }
            return encoding & BTFType.signedEncoding == 0 && type.name == "signed char"
        }
        x86 = btf.types.contains { type in
            guard type.kind == .structure, type.name == "pt_regs", case .members(let members) = type.detail else { return false }
            return members.contains { $0.name == "orig_ax" }
        }
        let count = btf.types.count
        var userTaken: [String: UInt32] = [:]
        var enumTaken: [String: UInt32] = [:]
        func assign(_ name: String, _ id: UInt32, in taken: inout [String: UInt32]) -> String {
            var candidate = name
            while taken[candidate] != nil { candidate += "__\(id)" }
            taken[candidate] = id
            return candidate
        }
        // A type without a tag that a typedef names (`typedef struct { ... } kernel_cap_t;`)
        // takes the typedef's name, as dwarf2json gives it: Volatility attaches its helpers
        // (kernel_cap_t's get_capabilities) to that name. The first typedef wins.
        var typedefNames: [UInt32: String] = [:]
        for type in btf.types where type.kind == .typedef && type.hasName {
            let target = Int(type.sizeOrType)
            guard target > 0, target < count, !btf.types[target].hasName,
                [.structure, .union, .enumeration, .enum64].contains(btf.types[target].kind)
            else { continue }
            if typedefNames[UInt32(target)] == nil { typedefNames[UInt32(target)] = type.name }
        }
        // Tags first, so that a typedef's name never takes a tag's place. A tag BTF defines more
        // than once (`struct console` in printk.h and a 40-byte one local to a driver) is given
        // to the definition most used (`uses(of:in:)`), the others `TAG__ID`.
        var repeated: [UInt32: [UInt32]] = [:]  // by the first definition's id: every definition
        for pass in [false, true] {
            for (index, type) in btf.types.enumerated().dropFirst() where type.hasName != pass {
                let id = UInt32(index)
                switch type.kind {
                case .structure, .union:
                    let base =
                        pass
                        ? typedefNames[id] ?? "unnamed_\(type.kind == .union ? "union" : "struct")_\(id)" : type.name
                    if !pass, let first = userTaken[base], userNames[first] == base {
                        repeated[first, default: [first]].append(id)
                    }
                    userNames[id] = assign(base, id, in: &userTaken)
                case .enumeration, .enum64:
                    let base = pass ? typedefNames[id] ?? "unnamed_enum_\(id)" : type.name
                    if !pass, let first = enumTaken[base], enumNames[first] == base {
                        repeated[first, default: [first]].append(id)
                    }
                    enumNames[id] = assign(base, id, in: &enumTaken)
                default:
                    break
                }
            }
            guard !pass, !repeated.isEmpty else { continue }
            let uses = Self.uses(of: Set(repeated.values.joined()), in: btf)
            for (first, ids) in repeated {
                // The first of the most used, so that ties keep BTF's order.
                var best = first
                for id in ids where uses[id, default: 0] > uses[best, default: 0] { best = id }
                guard best != first else { continue }
                func rename(_ names: inout [UInt32: String], _ taken: inout [String: UInt32]) {
                    guard let plain = names[first], let suffixed = names[best] else { return }
                    taken[suffixed] = nil
                    taken[plain] = best
                    names[best] = plain
                    names[first] = assign(plain, first, in: &taken)
                }
                if userNames[first] != nil {
                    rename(&userNames, &userTaken)
                } else {
                    rename(&enumNames, &enumTaken)
                }
            }
        }
        // A forward declaration stands for the definition of the same tag, when there is one.
        for (index, type) in btf.types.enumerated() where type.kind == .forward {
            guard type.hasName else {
                throw BTFError(.types, typeID: UInt32(index), "FWD without a name")
            }
            userNames[UInt32(index)] = type.name
        }
    }

    // MARK: Descriptors

    /// The ISF type descriptor of a BTF type, as JSON bytes.
    func descriptor(of id: UInt32) throws(BTFError) -> [UInt8] {
        var json = JSONWriter(capacity: 64)
        try writeDescriptor(of: id, into: &json)
        return json.bytes
    }

    /// Writes the ISF type descriptor of a BTF type. Made anew each time rather than kept:
    /// a cache of every type's descriptor was 2.3 MiB (6.1) of host memory overwritten, for
    /// a few bytes and a dictionary lookup or two per use.
    func writeDescriptor(of id: UInt32, into json: inout JSONWriter) throws(BTFError) {
        guard id != 0 else { return json.raw(#"{"kind":"base","name":"void"}"#) }
        let type = btf.types[Int(id)]
        switch type.kind {
        case .int, .float:
            json.raw(#"{"kind":"base","name":"#)
            json.string(baseName(id))
            json.raw("}")
        case .pointer:
            json.raw(#"{"kind":"pointer","subtype":"#)
            try writeDescriptor(of: type.sizeOrType, into: &json)
            json.raw("}")
        case .array:
            guard case .array(let element, _, let count) = type.detail else { return }
            json.raw(#"{"kind":"array","count":"#)
            json.number(UInt64(count))
            json.raw(#","subtype":"#)
            try writeDescriptor(of: element, into: &json)
            json.raw("}")
        case .structure, .union, .forward:
            let isUnion = type.kind == .union || (type.kind == .forward && type.kindFlag)
            json.raw(isUnion ? #"{"kind":"union","name":"# : #"{"kind":"struct","name":"#)
            json.string(userNames[id] ?? type.name)
            json.raw("}")
        case .enumeration, .enum64:
            json.raw(#"{"kind":"enum","name":"#)
            json.string(enumNames[id] ?? type.name)
            json.raw("}")
        case .typedef, .volatile, .const, .restrict, .typeTag:
            try writeDescriptor(of: type.sizeOrType, into: &json)
        case .function, .functionPrototype:
            json.raw(#"{"kind":"function"}"#)
        case .variable, .dataSection, .declTag:
            throw BTFError(.types, typeID: id, "a \(type.kind) is used where a data type is expected")
        }
    }

    /// How many struct and union members and variables have each of `ids` as their type, through
    /// pointers, typedefs, qualifiers and arrays: a definition that headers share is used
    /// throughout the kernel, one local to a file a few times.
    private static func uses(of ids: Set<UInt32>, in btf: BTF) -> [UInt32: Int] {
        var uses: [UInt32: Int] = [:]
        func use(_ id: UInt32) {
            var id = id
            for _ in 0..<32 {
                guard id != 0, Int(id) < btf.types.count else { return }
                let type = btf.types[Int(id)]
                if type.kind.followsReference {
                    id = type.sizeOrType
                } else if type.kind == .array, case .array(let element, _, _) = type.detail {
                    id = element
                } else {
                    break
                }
            }
            if ids.contains(id) { uses[id, default: 0] += 1 }
        }
        for type in btf.types {
            switch type.kind {
            case .structure, .union:
                for position in 0..<Int(type.vlen) { use(type.memberType(at: position)) }
            case .variable:
                use(type.sizeOrType)
            default:
                break
            }
        }
        return uses
    }

    /// Whether a BTF integer is signed: BTF's bit, except where the BTF lost it for 1-byte
    /// integers (`oneByteSignLost`). There `signed char` is signed by its name, and `char` as
    /// the kernel was compiled: on x86 signed before Linux 6.2, which builds with
    /// -funsigned-char, elsewhere (arm64's Debian 5.10) unsigned, as tables made from DWARF say.
    private func isSigned(_ type: BTFType, encoding: UInt8) -> Bool {
        if encoding & BTFType.signedEncoding != 0 { return true }
        guard oneByteSignLost, type.sizeOrType == 1, encoding & BTFType.boolEncoding == 0 else { return false }
        let name = type.name
        if name == "signed char" { return true }
        guard name == "char", x86, let kernel else { return false }
        return (kernel.major, kernel.minor) < (6, 2)
    }

    /// C's floating types, which pahole before 1.21 (BTF without FLOAT) wrote as INTs without
    /// an encoding (Debian 5.10's `double`): floats by their names, never an enum's base.
    static let floatingNames: Set<String> = ["float", "double", "long double"]

    private func baseName(_ id: UInt32) -> String {
        let type = btf.types[Int(id)]
        return type.hasName ? type.name : "unnamed_base_\(id)"
    }

    // MARK: Declared types of symbols

    /// The type id of each name, per kind, for `resolve` (the first definition; for a tag defined
    /// several times, the one the table gives the name): only the kinds it looks up (not the
    /// tens of thousands of functions). Made for the declared types and let go before the
    /// table is written, whose memory is at its peak then.
    struct TypeIndex {
        fileprivate var byName: [BTFKind: [String: UInt32]] = [:]
    }

    func typeIndex() -> TypeIndex {
        var index = TypeIndex()
        for (id, type) in btf.types.enumerated().dropFirst() where type.hasName {
            guard [.int, .float, .structure, .union, .typedef].contains(type.kind) else { continue }
            let name = type.name
            // A tag defined several times resolves to the definition that holds its name in the table.
            let holdsName = (type.kind == .structure || type.kind == .union) && userNames[UInt32(id)] == name
            if holdsName || index.byName[type.kind]?[name] == nil {
                index.byName[type.kind, default: [:]][name] = UInt32(id)
            }
        }
        return index
    }

    /// The descriptor and byte size of a declared C type, or nil when this kernel's BTF lacks it.
    /// `nextAddress` (the lowest symbol address above `address`) is asked only by arrays that run
    /// up to the next symbol: finding it scans every symbol.
    func resolve(
        _ declared: DeclaredType, in index: TypeIndex, address: UInt64, nextAddress: () -> UInt64?, kernel: (Int, Int)?
    ) -> (json: [UInt8], size: UInt64?)? {
        func named(_ kind: BTFKind, _ name: String) -> UInt32? { index.byName[kind]?[name] }
        func fromID(_ id: UInt32?) -> ([UInt8], UInt64?)? {
            guard let id, let json = try? descriptor(of: id) else { return nil }
            return (json, btf.size(of: id))
        }
        switch declared {
        case .base(let name):
            return fromID(named(.int, name) ?? named(.float, name))
        case .structure(let name):
            return fromID(named(.structure, name))
        case .union(let name):
            return fromID(named(.union, name))
        case .typedef(let name):
            return fromID(named(.typedef, name))
        case .function:
            return (Array(#"{"kind":"function"}"#.utf8), nil)
        case .anonymousStructure(let members):
            let id = btf.types.indices.first { index in
                let type = btf.types[index]
                return type.kind == .structure && !type.hasName && type.members.map(\.name) == members
            }
            return fromID(id.map(UInt32.init))
        case .pointer(let target):
            guard let inner = resolve(target, in: index, address: address, nextAddress: { nil }, kernel: kernel) else {
                return nil
            }
            return (Array(#"{"kind":"pointer","subtype":"#.utf8) + inner.json + [0x7d], UInt64(btf.pointerSize))
        case .array(let element, let count):
            guard let inner = resolve(element, in: index, address: address, nextAddress: { nil }, kernel: kernel) else {
                return nil
            }
            let elements: UInt64
            switch count {
            case .fixed(let value):
                elements = UInt64(value)
            case .untilNextSymbol:
                guard let size = inner.size, size > 0, let nextAddress = nextAddress(), nextAddress > address else { return nil }
                elements = (nextAddress - address) / size
            case .byKernelVersion(let table):
                guard let kernel, let entry = table.last(where: { ($0.major, $0.minor) <= kernel }) else { return nil }
                elements = UInt64(entry.count)
            }
            var json = JSONWriter(capacity: inner.json.count + 40)
            json.raw(#"{"kind":"array","count":"#)
            json.number(elements)
            json.raw(#","subtype":"#)
            json.raw(inner.json)
            json.raw("}")
            let total = inner.size.map { $0.multipliedReportingOverflow(by: elements) }
            return (json.bytes, total?.overflow == false ? total?.partialValue : nil)
        case .firstOf(let choices):
            for choice in choices {
                if let found = resolve(choice, in: index, address: address, nextAddress: nextAddress, kernel: kernel) {
                    return found
                }
            }
            return nil
        }
    }

    /// The BTF variables (per-CPU ones, in current kernels) and functions that type symbols: one
    /// type id per name (the name's last variable, else its first function), in name order as
    /// `SymbolList.byName` sorts (UTF-8 bytes), so that the table's symbols find theirs in one
    /// pass instead of through a dictionary of some 50,000 names.
    ///
    /// - Throws: `BTFError` for a variable whose type cannot be described.
    func btfSymbolIDs() throws(BTFError) -> [UInt32] {
        var ids: [UInt32] = []
        for (index, type) in btf.types.enumerated() where type.hasName {
            guard type.kind == .variable || type.kind == .function else { continue }
            if type.kind == .variable { _ = try descriptor(of: type.sizeOrType) }
            ids.append(UInt32(index))
        }
        let types = btf.types
        ids.sort { left, right in
            let order = types.compareNames(Int(left), Int(right))
            return order != 0 ? order < 0 : left < right
        }
        var chosen: [UInt32] = []
        var start = 0
        while start < ids.count {
            var end = start + 1
            while end < ids.count && types.compareNames(Int(ids[start]), Int(ids[end])) == 0 { end += 1 }
            let group = ids[start..<end]
            chosen.append(group.last { types[Int($0)].kind == .variable } ?? ids[start])
            start = end
        }
        return chosen
    }

    /// Writes the type descriptor of a symbol's BTF variable or function (an id from `btfSymbolIDs`).
    func writeSymbolType(_ id: UInt32, into json: inout JSONWriter) throws(BTFError) {
        let type = btf.types[Int(id)]
        if type.kind == .variable {
            try writeDescriptor(of: type.sizeOrType, into: &json)
        } else {
            json.raw(#"{"kind":"function"}"#)
        }
    }

    // MARK: The document

    /// The counts of what `write` wrote.
    struct Counts {
        var baseTypes = 0
        var userTypes = 0
        var enums = 0
        var symbols = 0
    }

    /// The ISF document up to its symbols, into `json`; `writeSymbol` and `writeEnd` finish it,
    /// so that the symbols (hundreds of thousands) are written as they are read, never gathered.
    func writeStart(into json: inout JSONWriter, producerVersion: String, sources: [ISFSource]) throws(BTFError)
        -> Counts
    {
        var counts = Counts()
        json.raw(#"{"metadata":{"format":"6.2.0","producer":{"name":"avml","version":"#)
        json.string(producerVersion)
        json.raw(#"},"linux":{"symbols":["#)
        for (index, source) in sources.enumerated() {
            if index > 0 { json.byte(0x2c) }
            json.raw(#"{"kind":"system-map","name":"#)
            json.string(source.name)
            json.raw(#","hash_type":"sha256","hash_value":"#)
            json.string(source.sha256)
            json.raw("}")
        }
        json.raw("]}},")
        counts.baseTypes = writeBaseTypes(&json)
        json.byte(0x2c)
        counts.userTypes = try writeUserTypes(&json)
        json.byte(0x2c)
        counts.enums = writeEnums(&json)
        json.raw(#","symbols":{"#)
        return counts
    }

    /// What is known of a symbol's type.
    enum SymbolType {
        case none
        /// A declared type's descriptor, resolved.
        case declared([UInt8])
        /// The BTF variable or function of that id (from `btfSymbolIDs`).
        case btf(UInt32)
    }

    /// One symbol: its name (UTF-8), link-time address and what is known of its type;
    /// `first` for the first one written.
    func writeSymbol(
        name: ArraySlice<UInt8>, address: UInt64, type: SymbolType, constantData: [UInt8]? = nil, first: Bool,
        into json: inout JSONWriter
    ) throws(BTFError) {
        if !first { json.byte(0x2c) }
        json.key(name)
        json.raw(#"{"address":"#)
        json.number(address)
        switch type {
        case .none:
            break
        case .declared(let descriptor):
            json.raw(#","type":"#)
            json.raw(descriptor)
        case .btf(let id):
            json.raw(#","type":"#)
            try writeSymbolType(id, into: &json)
        }
        if let constantData {
            json.raw(#","constant_data":"#)
            json.string(Data(constantData).base64EncodedString())
        }
        json.raw("}")
    }

    /// Closes the symbols and the document.
    static func writeEnd(into json: inout JSONWriter) {
        json.raw("}}\n")
    }

    private func writeBaseType(_ json: inout JSONWriter, _ name: String, size: UInt32, signed: Bool, kind: StaticString) {
        json.key(name)
        json.raw(#"{"size":"#)
        json.number(UInt64(size))
        json.raw(#","signed":"#)
        json.bool(signed)
        json.raw(#","kind":""#)
        json.raw(kind)
        json.raw(#"","endian":"#)
        json.string(endian)
        json.raw("}")
    }

    private func writeBaseTypes(_ json: inout JSONWriter) -> Int {
        json.raw(#""base_types":{"#)
        writeBaseType(&json, "pointer", size: UInt32(btf.pointerSize), signed: false, kind: "int")
        json.byte(0x2c)
        writeBaseType(&json, "void", size: 0, signed: false, kind: "void")
        var written: Set<String> = ["pointer", "void"]
        for (index, type) in btf.types.enumerated().dropFirst() {
            guard type.kind == .int || type.kind == .float else { continue }
            let name = baseName(UInt32(index))
            guard written.insert(name).inserted else { continue }
            json.byte(0x2c)
            if type.kind == .float || Self.floatingNames.contains(name) {
                writeBaseType(&json, name, size: type.sizeOrType, signed: true, kind: "float")
                continue
            }
            guard case .integer(let encoding, _, _) = type.detail else { continue }
            let kind: StaticString =
                if encoding & BTFType.boolEncoding != 0 || name == "_Bool" {
                    "bool"
                } else if encoding & BTFType.charEncoding != 0 || (type.sizeOrType == 1 && name.hasSuffix("char")) {
                    "char"
                } else {
                    "int"
                }
            writeBaseType(&json, name, size: type.sizeOrType, signed: isSigned(type, encoding: encoding), kind: kind)
        }
        json.raw("}")
        return written.count
    }

    private func writeUserTypes(_ json: inout JSONWriter) throws(BTFError) -> Int {
        json.raw(#""user_types":{"#)
        var count = 0
        for (index, type) in btf.types.enumerated() where type.kind == .structure || type.kind == .union {
            let id = UInt32(index)
            if count > 0 { json.byte(0x2c) }
            count += 1
            json.key(userNames[UInt32(index)] ?? type.name)
            json.raw(type.kind == .union ? #"{"kind":"union","size":"# : #"{"kind":"struct","size":"#)
            json.number(UInt64(type.sizeOrType))
            json.raw(#","fields":{"#)
            for (position, member) in type.members.enumerated() {
                if position > 0 { json.byte(0x2c) }
                try writeMember(&json, member, position: position, of: id, structSize: type.sizeOrType)
            }
            json.raw("}}")
        }
        json.raw("}")
        return count
    }

    private func writeMember(
        _ json: inout JSONWriter, _ member: BTFMember, position: Int, of owner: UInt32, structSize: UInt32
    ) throws(BTFError) {
        func bad(_ detail: String) -> BTFError {
            BTFError(.types, typeID: owner, "member \(position) ('\(member.name)'): \(detail)")
        }
        guard UInt64(member.bitOffset) <= UInt64(structSize) * 8 else {
            throw bad("bit offset \(member.bitOffset) is past the end of the \(structSize)-byte type")
        }
        let resolved = btf.skippingQualifiers(member.type)
        let resolvedType = btf.types[Int(resolved)]
        var anonymous = false
        if member.name.isEmpty {
            json.key("unnamed_field_\(position)")
            anonymous = resolved != 0 && (resolvedType.kind == .structure || resolvedType.kind == .union)
        } else {
            json.key(member.name)
        }
        // A bitfield: its width is in the member (kind_flag) or, without kind_flag, in its INT type.
        var bitOffset = UInt64(member.bitOffset)
        var width = UInt64(member.bitfieldSize)
        if width == 0, resolved != 0, case .integer(_, let intOffset, let bits) = resolvedType.detail,
            UInt64(bits) < UInt64(resolvedType.sizeOrType) * 8 || intOffset != 0
        {
            bitOffset += UInt64(intOffset)
            width = UInt64(bits)
        }
        if width == 0 {
            guard bitOffset % 8 == 0 else { throw bad("bit offset \(bitOffset) is not on a byte boundary") }
            json.raw(#"{"type":"#)
            try writeDescriptor(of: member.type, into: &json)
            json.raw(#","offset":"#)
            json.number(bitOffset / 8)
            if anonymous { json.raw(#","anonymous":true"#) }
            json.raw("}")
            return
        }
        // Volatility reads the bitfield's base type at the member's byte offset and takes
        // bit_position..bit_position+bit_length of it: use the storage unit the compiler
        // used (aligned to the base type's size), else the byte holding the first bit, else
        // the last unit inside the struct, preferring one that stays inside the struct
        // (packed structs put bitfields across alignment boundaries).
        guard resolved != 0, [.int, .enumeration, .enum64].contains(resolvedType.kind) else {
            throw bad(
                "a bitfield whose type is \(resolved == 0 ? "void" : resolvedType.kind.description), not an integer or enum")
        }
        let unitBytes = UInt64(resolvedType.sizeOrType)
        guard unitBytes > 0, width <= unitBytes * 8 else {
            throw bad("a \(width)-bit bitfield in a \(resolvedType.sizeOrType)-byte type")
        }
        let candidates =
            [bitOffset / (unitBytes * 8) * unitBytes, bitOffset / 8]
            + (UInt64(structSize) >= unitBytes ? [UInt64(structSize) - unitBytes] : [])
        let fitting = candidates.filter { $0 * 8 <= bitOffset && bitOffset - $0 * 8 + width <= unitBytes * 8 }
        guard let unit = fitting.first(where: { $0 + unitBytes <= UInt64(structSize) }) ?? fitting.first else {
            throw bad("a \(width)-bit bitfield at bit \(bitOffset) does not fit its \(unitBytes)-byte type")
        }
        json.raw(#"{"type":{"kind":"bitfield","bit_position":"#)
        json.number(bitOffset - unit * 8)
        json.raw(#","bit_length":"#)
        json.number(width)
        json.raw(#","type":"#)
        try writeDescriptor(of: resolved, into: &json)
        json.raw(#"},"offset":"#)
        json.number(unit)
        json.raw("}")
    }

    private func writeEnums(_ json: inout JSONWriter) -> Int {
        // Base types per (size, signed): prefer kind int, then the shortest name.
        var bases: [String: String] = [:]
        for type in btf.types where type.kind == .int && type.hasName {
            guard case .integer(let encoding, _, _) = type.detail, encoding & (BTFType.boolEncoding | BTFType.charEncoding) == 0,
                !Self.floatingNames.contains(type.name)
            else { continue }
            let isChar = type.sizeOrType == 1 && type.name.hasSuffix("char")
            let key = "\(type.sizeOrType)/\(isSigned(type, encoding: encoding))"
            if let existing = bases[key] {
                let existingIsChar = existing.hasSuffix("char")
                if (isChar ? 1 : 0, type.name.count) >= (existingIsChar ? 1 : 0, existing.count) { continue }
            }
            bases[key] = type.name
        }
        json.raw(#""enums":{"#)
        var count = 0
        for (index, type) in btf.types.enumerated() where type.kind == .enumeration || type.kind == .enum64 {
            if count > 0 { json.byte(0x2c) }
            count += 1
            json.key(enumNames[UInt32(index)] ?? type.name)
            json.raw(#"{"size":"#)
            json.number(UInt64(type.sizeOrType))
            json.raw(#","base":"#)
            json.string(bases["\(type.sizeOrType)/\(type.kindFlag)"] ?? "void")
            json.raw(#","constants":{"#)
            // In name (byte) order, as dwarf2json writes them: Volatility keeps the order, so plugins
            // that list an enum's names (page flags) give them in it, and where two names share a value
            // the later one names it.
            let constants = type.enumerators.sorted { $0.name.utf8.lexicographicallyPrecedes($1.name.utf8) }
            for (position, constant) in constants.enumerated() {
                if position > 0 { json.byte(0x2c) }
                json.key(constant.name)
                if type.kindFlag {
                    json.number(Int64(bitPattern: constant.value))
                } else {
                    json.number(constant.value)
                }
            }
            json.raw("}}")
        }
        json.raw("}")
        return count
    }
}

extension BTF {
    /// An ISF document holding these types and no symbols: what `avml symbols` writes
    /// minus the addresses (for tools and the fuzzer; Volatility needs the symbols too).
    ///
    /// - Throws: `BTFError` for types that cannot be described (a bitfield of a struct, say).
    public func isfTypes() throws(BTFError) -> [UInt8] {
        let writer = try ISFWriter(btf: self)
        _ = try writer.btfSymbolIDs()
        var json = JSONWriter(capacity: 48 << 20)
        _ = try writer.writeStart(into: &json, producerVersion: "0.0.0", sources: [])
        ISFWriter.writeEnd(into: &json)
        return json.bytes
    }
}
