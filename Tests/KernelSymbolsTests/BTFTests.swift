import Foundation
import Testing

@testable import KernelSymbols

/// One record of every kind the kernel emits.
func everyKind(order: BTF.ByteOrder) -> [UInt8] {
    var b = BTFBuilder(order: order)
    b.int("int", size: 4, encoding: BTFType.signedEncoding)  // 1
    b.record(.pointer, sizeOrType: 3)  // 2
    b.structure("s", size: 8, kindFlag: true, members: [("a", 1, 0, 3), ("b", 1, 3, 5), ("next", 2, 0, 0)])  // 3
    b.structure("u", size: 4, union: true, members: [("i", 1, 0, 0), ("f", 17, 0, 0)])  // 4
    b.record(.array, sizeOrType: 0, extra: [1, 1, 4])  // 5
    let (a, bName) = (b.name("A"), b.name("B"))
    b.record(.enumeration, "e", vlen: 2, kindFlag: true, sizeOrType: 4, extra: [a, UInt32(bitPattern: -1), bName, 2])  // 6
    b.record(.enum64, "e64", vlen: 1, sizeOrType: 8, extra: [b.name("HUGE"), 0x5678_9abc, 0x1234])  // 7
    b.record(.forward, "opaque", kindFlag: true)  // 8
    b.record(.typedef, "t", sizeOrType: 1)  // 9
    b.record(.volatile, sizeOrType: 9)  // 10
    b.record(.const, sizeOrType: 10)  // 11
    b.record(.restrict, sizeOrType: 2)  // 12
    b.record(.functionPrototype, vlen: 2, sizeOrType: 1, extra: [b.name("x"), 1, 0, 2])  // 13
    b.record(.function, "f", vlen: 1, sizeOrType: 13)  // 14
    b.record(.variable, "v", sizeOrType: 1, extra: [1])  // 15
    b.record(.dataSection, ".data..percpu", vlen: 1, sizeOrType: 4, extra: [15, 0, 4])  // 16
    b.record(.float, "float", sizeOrType: 4)  // 17
    b.record(.declTag, "tag", sizeOrType: 14, extra: [UInt32(bitPattern: -1)])  // 18
    b.record(.typeTag, "user", sizeOrType: 1)  // 19
    return b.bytes()
}

struct BTFReaderTests {
    @Test(arguments: [BTF.ByteOrder.little, .big])
    func decodesEveryKindInBothByteOrders(order: BTF.ByteOrder) throws {
        let btf = try BTF(bytes: everyKind(order: order))
        #expect(btf.byteOrder == order)
        #expect(btf.types.count == 20)
        #expect(
            btf.types.dropFirst().map(\.kind.rawValue) == [1, 2, 4, 5, 3, 6, 19, 7, 8, 9, 10, 11, 13, 12, 14, 15, 16, 17, 18])
        guard case .integer(let encoding, 0, 32) = btf.types[1].detail else { throw Failure("INT detail") }
        #expect(encoding == BTFType.signedEncoding && btf.types[1].name == "int" && btf.types[1].sizeOrType == 4)
        #expect(
            btf.types[3].members == [
                BTFMember(name: "a", type: 1, bitOffset: 0, bitfieldSize: 3),
                BTFMember(name: "b", type: 1, bitOffset: 3, bitfieldSize: 5),
                BTFMember(name: "next", type: 2, bitOffset: 0, bitfieldSize: 0),
            ])
        #expect(btf.types[4].kind == .union && btf.types[4].members.map(\.name) == ["i", "f"])
        guard case .array(1, 1, 4) = btf.types[5].detail else { throw Failure("ARRAY detail") }
        #expect(
            btf.types[6].enumerators == [
                BTFEnumerator(name: "A", value: UInt64(bitPattern: -1)), BTFEnumerator(name: "B", value: 2),
            ])
        #expect(btf.types[7].enumerators == [BTFEnumerator(name: "HUGE", value: 0x1234_5678_9abc)])
        #expect(btf.types[8].kind == .forward && btf.types[8].kindFlag)
        #expect(btf.skippingQualifiers(11) == 1)
        // A FUNC_PROTO's parameters are checked, not kept.
        #expect(btf.types[13].kind == .functionPrototype && btf.types[13].vlen == 2 && btf.types[13].sizeOrType == 1)
        #expect(btf.types[14].sizeOrType == 13 && btf.types[14].vlen == 1)
        guard case .variable(linkage: 1) = btf.types[15].detail else { throw Failure("VAR detail") }
        guard case .sectionVariables(let variables) = btf.types[16].detail else { throw Failure("DATASEC detail") }
        #expect(variables == [BTFSectionVariable(type: 15, offset: 0, size: 4)])
        #expect(btf.types[17].kind == .float && btf.types[17].sizeOrType == 4)
        guard case .declTag(componentIndex: -1) = btf.types[18].detail else { throw Failure("DECL_TAG detail") }
        #expect(btf.types[19].kind == .typeTag && btf.types[19].name == "user")
        #expect(btf.size(of: 5) == 16 && btf.size(of: 11) == 4 && btf.size(of: 2) == 8 && btf.size(of: 13) == nil)
    }

    /// pahole's encoding of layout.c (Fixtures/make-layout-btf.sh), the way kernel BTF is made.
    @Test func readsPaholesEncodingOfACFile() throws {
        let btf = try BTF(bytes: fixtureBytes("layout.btf"))
        let node = try #require(btf.types.first { $0.kind == .structure && $0.name == "node" })
        // offsetof() of x86-64's ABI for layout.c's struct node.
        #expect(node.sizeOrType == 152)
        #expect(node.members.map { $0.bitOffset / 8 } == [0, 8, 16, 32, 36, 40, 48, 72, 80, 88, 96, 104, 152])
        let flags = try #require(btf.types.first { $0.kind == .structure && $0.name == "flags" })
        #expect(flags.kindFlag)
        #expect(flags.members.map(\.bitOffset) == [0, 3, 8, 32, 64, 104])
        #expect(flags.members.map(\.bitfieldSize) == [3, 5, 7, 32, 40, 1])
        let colour = try #require(btf.types.first { $0.kind == .enumeration && $0.name == "colour" })
        #expect(colour.kindFlag && colour.enumerators.map { Int64(bitPattern: $0.value) } == [-1, 1, 0x7fff_ffff])
        #expect(btf.types.contains { $0.kind == .enum64 && $0.enumerators.first?.value == 0x12_3456_789a })
        #expect(btf.types.contains { $0.kind == .forward && $0.name == "opaque" })
        #expect(btf.types.contains { $0.kind == .dataSection && $0.name == ".data..percpu" && $0.vlen == 2 })
    }

    @Test func readsThisMachinesKernelBTF() throws {
        let path = "/sys/kernel/btf/vmlinux"
        guard FileManager.default.fileExists(atPath: path) else { return }
        let bytes = Array(try Data(contentsOf: URL(fileURLWithPath: path)))
        let btf = try BTF(bytes: bytes)
        #expect(btf.types.count > 10000)
        let task = try #require(btf.types.first { $0.kind == .structure && $0.name == "task_struct" })
        #expect(task.sizeOrType > 1000)
        #expect(task.members.contains { $0.name == "comm" } && task.members.contains { $0.name == "pid" })
        #expect(btf.pointerSize == 8)
        for kind in [BTFKind.int, .pointer, .array, .structure, .union, .enumeration, .typedef, .const, .function] {
            #expect(btf.types.contains { $0.kind == kind }, "no \(kind) in the kernel's BTF")
        }
    }
}

struct BTFHostileInputTests {
    /// A small valid blob for the hostile cases to damage: int, pointer, struct.
    static func small() -> [UInt8] {
        var b = BTFBuilder()
        b.int("int", size: 4, encoding: 1)
        b.record(.pointer, sizeOrType: 1)
        b.structure("s", size: 16, members: [("x", 1, 0, 0), ("p", 2, 64, 0)])
        return b.bytes()
    }

    @Test func theSmallBlobIsValid() throws {
        #expect(try BTF(bytes: Self.small()).types.count == 4)
    }

    @Test func truncatedAnywhere() throws {
        let bytes = Self.small()
        for length in 0..<bytes.count {
            let error = try #require(btfError(Array(bytes.prefix(length))), "length \(length)")
            #expect(error.section == .header || error.section == .strings || error.section == .types)
        }
        #expect(btfError(Array(bytes.prefix(10)))?.description.contains("too short for the 24-byte header") == true)
    }

    @Test func badMagicAndVersion() throws {
        var bytes = Self.small()
        bytes[0] = 0x7f
        #expect(btfError(bytes)?.detail.contains("bad magic") == true)
        bytes = Self.small()
        bytes[2] = 2
        #expect(btfError(bytes)?.detail.contains("version 2") == true)
    }

    @Test func lyingSectionLengths() throws {
        var bytes = Self.small()
        patch(&bytes, at: 12, 0x7fff_ff00)  // type_len
        let error = try #require(btfError(bytes))
        #expect(error.section == .header && error.detail.contains("runs past"))
        bytes = Self.small()
        patch(&bytes, at: 20, 0xffff_fff0)  // str_len
        #expect(btfError(bytes)?.detail.contains("string section") == true)
        bytes = Self.small()
        patch(&bytes, at: 4, 0xffff)  // hdr_len
        #expect(btfError(bytes)?.detail.contains("header length") == true)
        // A type section that stops inside the struct's members.
        bytes = Self.small()
        patch(&bytes, at: 12, 12 * 3 + 4 + 12)
        let cut = try #require(btfError(bytes))
        #expect(cut.typeID == 3 && cut.detail.contains("declares 2 entries"))
    }

    @Test func hugeVlen() throws {
        var b = BTFBuilder()
        b.int("int", size: 4)
        b.record(.structure, "s", vlen: 0xffff, sizeOrType: 8, extra: [0, 1, 0])
        let error = try #require(btfError(b.bytes()))
        #expect(error.typeID == 2 && error.detail.contains("65535 entries (786420 bytes)"))
    }

    @Test func namesPastTheStringSection() throws {
        var bytes = Self.small()
        patch(&bytes, at: 24, 0x00ff_ffff)  // the int's name_off
        let error = try #require(btfError(bytes))
        #expect(error.typeID == 1 && error.offset == 24 && error.detail.contains("past the end"))
        // A name that runs to the end of the section without a NUL.
        var b = BTFBuilder()
        b.int("int", size: 4)
        var unterminated = b.bytes()
        unterminated.removeLast()
        patch(&unterminated, at: 20, UInt32(b.strings.count - 1))
        #expect(btfError(unterminated)?.detail.contains("no terminating NUL") == true)
    }

    @Test func unknownKind() throws {
        var bytes = Self.small()
        patch(&bytes, at: 24 + 4, 25 << 24)
        let error = try #require(btfError(bytes))
        #expect(error.typeID == 1 && error.offset == 28 && error.unknownKind == 25)
        #expect(
            error.description.hasPrefix(
                "BTF newer than this reader (or damaged), type section, type id 1 at byte offset 0x1c: unknown kind 25"))
    }

    @Test func typeIDsThatDoNotExist() throws {
        var b = BTFBuilder()
        b.record(.pointer, sizeOrType: 7)
        #expect(btfError(b.bytes())?.detail.contains("refers to type id 7") == true)
        var member = BTFBuilder()
        member.structure("s", size: 4, members: [("x", 99, 0, 0)])
        #expect(btfError(member.bytes())?.detail.contains("member 0 ('x') refers to type id 99") == true)
        var function = BTFBuilder()
        function.int("int", size: 4)
        function.record(.function, "f", sizeOrType: 1)
        #expect(btfError(function.bytes())?.detail.contains("not a FUNC_PROTO") == true)
        // Parameters are not kept, so they are checked as they are read: the type id, and the name.
        var prototype = BTFBuilder()
        prototype.int("int", size: 4)
        prototype.record(.functionPrototype, vlen: 2, sizeOrType: 1, extra: [prototype.name("x"), 1, 0, 99])
        let error = try #require(btfError(prototype.bytes()))
        #expect(error.typeID == 2 && error.detail.contains("parameter 1 refers to type id 99, but there are only 2 types"))
        var badName = BTFBuilder()
        badName.int("int", size: 4)
        badName.record(.functionPrototype, vlen: 1, sizeOrType: 1, extra: [0xffff, 1])
        #expect(btfError(badName.bytes())?.detail.contains("parameter 0's name offset 65535") == true)
    }

    @Test func aTypedefThatIsItself() throws {
        var b = BTFBuilder()
        b.record(.typedef, "loop", sizeOrType: 1)
        let error = try #require(btfError(b.bytes()))
        #expect(error.detail == "type reference cycle: 1 -> 1")
    }

    @Test func qualifierCycles() throws {
        var b = BTFBuilder()
        b.int("int", size: 4)
        b.record(.const, sizeOrType: 3)  // 2 -> 3 -> 4 -> 2
        b.record(.volatile, sizeOrType: 4)
        b.record(.pointer, sizeOrType: 2)
        #expect(btfError(b.bytes())?.detail.contains("cycle: 2 -> 3 -> 4 -> 2") == true)
        var arrays = BTFBuilder()
        arrays.int("int", size: 4)
        arrays.record(.array, extra: [2, 1, 4])
        #expect(btfError(arrays.bytes())?.detail.contains("cycle: 2 -> 2") == true)
    }

    @Test func chainsDeeperThanTheKernelAllows() throws {
        var b = BTFBuilder()
        b.int("int", size: 4)
        for id in 2...40 { b.record(.pointer, sizeOrType: UInt32(id - 1)) }
        #expect(btfError(b.bytes())?.detail.contains("longer than 32") == true)
        var fine = BTFBuilder()
        fine.int("int", size: 4)
        for id in 2...33 { fine.record(.pointer, sizeOrType: UInt32(id - 1)) }
        #expect(try BTF(bytes: fine.bytes()).types.count == 34)
    }

    @Test func theStringSectionMustStartEmpty() throws {
        var b = BTFBuilder()
        b.int("int", size: 4)
        var blob = b.bytes()
        blob[24 + 16] = 0x41  // first byte of the string section
        #expect(btfError(blob)?.detail.contains("must start with the empty name") == true)
    }
}

struct Failure: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}
