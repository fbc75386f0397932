import Foundation
import TestSupport
import Testing

@testable import KernelSymbols

/// The fixture kernel: layout.btf (pahole's BTF of layout.c), a kallsyms whose kernel
/// runs 0x1d000000 above the x86-64 link address, and its System.map.
struct SymbolTableTests {
    static let offset: UInt64 = 0x1d00_0000

    static func offline(kallsyms: String? = "kallsyms", systemMap: String? = nil, btf: String = "layout.btf") throws
        -> SymbolSources
    {
        SymbolSources(
            btf: try fixture(btf), kallsyms: try kallsyms.map(fixture), systemMap: try systemMap.map(fixture),
            banner: try fixture("version"))
    }

    static func make(_ sources: SymbolSources) throws -> (MadeTable, [String: Any]) {
        let table = try KernelSymbols.make(from: sources, producerVersion: "0.1.0")
        return (table, try document(table))
    }

    @Test func writesTypesAsVolatilityReadsThem() throws {
        let (table, isf) = try Self.make(Self.offline())
        let metadata = try #require(isf.object("metadata"))
        #expect(metadata["format"] as? String == "6.2.0")
        #expect(isf.object("metadata", "producer") as? [String: String] == ["name": "avml", "version": "0.1.0"])
        let pointer = try #require(isf.object("base_types", "pointer"))
        #expect(pointer["size"] as? Int == 8 && pointer["signed"] as? Bool == false)
        #expect(pointer["kind"] as? String == "int" && pointer["endian"] as? String == "little")
        #expect(isf.object("base_types", "void")?["kind"] as? String == "void")
        #expect(isf.object("base_types", "_Bool")?["kind"] as? String == "bool")
        #expect(isf.object("base_types", "char")?["kind"] as? String == "char")
        #expect(isf.object("base_types", "double")?["kind"] as? String == "float")
        #expect(isf.object("base_types", "int")?["signed"] as? Bool == true)

        let node = try #require(isf.object("user_types", "node"))
        #expect(node["kind"] as? String == "struct" && node["size"] as? Int == 152)
        let fields = try #require(node["fields"] as? [String: [String: Any]])
        #expect(fields["count"]?["offset"] as? Int == 32)
        // typedef cv_counter_t -> volatile -> const -> typedef counter_t -> typedef u32 -> unsigned int
        #expect(fields["count"]?["type"] as? [String: String] == ["kind": "base", "name": "unsigned int"])
        #expect((fields["next"]?["type"] as? [String: Any])?["kind"] as? String == "pointer")
        let name = try #require(fields["name"]?["type"] as? [String: Any])
        #expect(name["kind"] as? String == "array" && name["count"] as? Int == 16)
        #expect(fields["tail"]?["offset"] as? Int == 152)
        #expect(((fields["callback"]?["type"] as? [String: Any])?["subtype"] as? [String: String]) == ["kind": "function"])
        #expect(fields["colour"]?["type"] as? [String: String] == ["kind": "enum", "name": "colour"])
        // Anonymous members: named by position, flagged so Volatility lifts their fields.
        #expect(fields["unnamed_field_4"]?["anonymous"] as? Bool == true)
        let anonymousUnion = try #require((fields["unnamed_field_4"]?["type"] as? [String: String])?["name"])
        #expect(anonymousUnion.hasPrefix("unnamed_union_"))
        #expect(isf.object("user_types", anonymousUnion)?["size"] as? Int == 4)
        #expect(fields["point"]?["anonymous"] == nil)

        let flags = try #require(isf.object("user_types", "flags")?["fields"] as? [String: [String: Any]])
        func bitfield(_ name: String) -> (offset: Int?, position: Int?, length: Int?, type: String?) {
            let type = flags[name]?["type"] as? [String: Any]
            return (
                flags[name]?["offset"] as? Int, type?["bit_position"] as? Int, type?["bit_length"] as? Int,
                (type?["type"] as? [String: String])?["name"]
            )
        }
        #expect(bitfield("a") == (0, 0, 3, "unsigned int"))
        #expect(bitfield("b") == (0, 3, 5, "unsigned int"))
        #expect(bitfield("c") == (0, 8, 7, "int"))
        #expect(bitfield("colour") == (4, 0, 32, "colour"))
        #expect(bitfield("wide") == (8, 0, 40, "long long unsigned int"))
        #expect(bitfield("ready") == (13, 0, 1, "_Bool"))
        // A packed struct's bitfields: each read from a unit that lies inside the struct.
        let packed = try #require(isf.object("user_types", "packed")?["fields"] as? [String: [String: Any]])
        #expect(packed["straddle"]?["offset"] as? Int == 1)
        #expect((packed["straddle"]?["type"] as? [String: Any])?["bit_position"] as? Int == 0)
        #expect(packed["rest"]?["offset"] as? Int == 1)
        #expect((packed["rest"]?["type"] as? [String: Any])?["bit_position"] as? Int == 30)

        let colour = try #require(isf.object("enums", "colour"))
        #expect(colour["base"] as? String == "int" && colour["size"] as? Int == 4)
        #expect(colour["constants"] as? [String: Int] == ["RED": -1, "GREEN": 1, "BLUE": 0x7fff_ffff])
        #expect(isf.object("enums", "big")?["base"] as? String == "long unsigned int")
        let sections = ["base_types", "user_types", "enums"].map { (isf[$0] as? [String: Any])?.count ?? 0 }
        #expect(table.typeCount == sections.reduce(0, +))
    }

    @Test func writesLinkTimeAddressesAndTypedSymbols() throws {
        let (table, isf) = try Self.make(Self.offline())
        func symbol(_ name: String) -> [String: Any]? { isf.object("symbols", name) }
        func address(_ name: String) -> UInt64? { (symbol(name)?["address"] as? NSNumber)?.uint64Value }
        // kallsyms' addresses in the image, less the KASLR offset; per-CPU offsets untouched.
        #expect(address("_text") == 0xffff_ffff_8100_0000)
        #expect(address("init_task") == 0xffff_ffff_9f00_0000 - Self.offset)
        #expect(address("percpu_counter") == 0x98)
        #expect(symbol("e1000_probe") == nil)
        #expect(table.kaslrOffset == Self.offset)
        #expect(table.kaslrOffsetSource.contains("default link address"))
        // Types: the ones Volatility reads typed, BTF's variables and functions.
        #expect(symbol("init_task")?["type"] as? [String: String] == ["kind": "struct", "name": "task_struct"])
        #expect(symbol("percpu_node")?["type"] as? [String: String] == ["kind": "struct", "name": "node"])
        #expect(symbol("use")?["type"] as? [String: String] == ["kind": "function"])
        #expect(symbol("helper")?["type"] == nil)
        #expect((symbol("_text")?["type"] as? [String: Any])?["kind"] as? String == "array")
        // tk_core's types are not in this BTF: said, not guessed.
        #expect(symbol("tk_core")?["type"] == nil)
        #expect(table.notes.contains { $0.hasPrefix("no type in this kernel's BTF for") && $0.contains("tk_core") })
        // linux_banner as the kernel holds it, for Volatility's banner scan.
        let banner = try String(contentsOfFile: fixture("version"), encoding: .utf8)
        let data = try #require((symbol("linux_banner")?["constant_data"] as? String).flatMap { Data(base64Encoded: $0) })
        #expect(Array(data) == Array(banner.utf8) + [0])
        #expect(table.banner + "\n" == banner)
        #expect(table.symbolCount == (isf["symbols"] as? [String: Any])?.count)
        #expect(table.typedSymbolCount >= 5)
        #expect(table.btfSHA256 == sha256Hex(try fixtureBytes("layout.btf")))
        #expect(table.kallsymsSHA256 == sha256Hex(try fixtureBytes("kallsyms")))
        #expect(table.sha256 == sha256Hex(table.compressed))
        let sources = try #require(isf.object("metadata", "linux")?["symbols"] as? [[String: String]])
        #expect(sources.first?["hash_value"] == table.kallsymsSHA256 && sources.first?["kind"] == "system-map")
    }

    /// The table goes to its destination as it is made; when the destination fails, the table
    /// fails as unwritable (not as a problem of the kernel's files), and nothing more is written.
    @Test func aDestinationThatFailsMakesTheTableUnwritable() throws {
        struct Full: Error, CustomStringConvertible {
            var description: String { "No space left on device" }
        }
        let collected = Collected()
        var calls = 0
        let sources = try Self.offline()
        do throws(SymbolTableError) {
            _ = try KernelSymbols.make(from: sources, producerVersion: "0.1.0") { bytes in
                calls += 1
                guard calls == 1 else { throw Full() }
                collected.bytes += bytes
            }
            Issue.record("a table whose destination failed was made")
        } catch {
            #expect(error.reason == .unwritable("No space left on device"))
            #expect(error.description == "cannot write the table: No space left on device")
        }
        #expect(calls == 2 && !collected.bytes.isEmpty)
        let made = try KernelSymbols.make(from: Self.offline(), producerVersion: "0.1.0")
        #expect(made.size == made.compressed.count && made.compressed.starts(with: collected.bytes))
    }

    @Test func theSameInputsGiveTheSameBytes() throws {
        let first = try KernelSymbols.make(from: Self.offline(), producerVersion: "0.1.0")
        let second = try KernelSymbols.make(from: Self.offline(), producerVersion: "0.1.0")
        #expect(first.compressed == second.compressed)
        #expect(Array(first.compressed.prefix(4)) == [0x1f, 0x8b, 8, 0] && first.compressed[4..<8].allSatisfy { $0 == 0 })
    }

    @Test func systemMapGivesTheOffsetWithKallsyms() throws {
        let (table, isf) = try Self.make(Self.offline(systemMap: "System.map"))
        #expect(table.kaslrOffset == Self.offset && table.kaslrOffsetSource == "kallsyms _text minus System.map _text")
        #expect(table.systemMapPath != nil && !table.notes.contains { $0.contains("System.map") })
        #expect((isf.object("symbols", "init_mm")?["address"] as? NSNumber)?.uint64Value == 0xffff_ffff_8200_1000)
    }

    @Test func systemMapStandsInForHiddenAddresses() throws {
        let (table, isf) = try Self.make(Self.offline(kallsyms: "kallsyms-hidden", systemMap: "System.map"))
        #expect((isf.object("symbols", "init_task")?["address"] as? NSNumber)?.uint64Value == 0xffff_ffff_8200_0000)
        #expect(table.kaslrOffset == nil)
        #expect(table.notes.contains { $0.contains("hides them (kptr_restrict)") })
        let sources = try #require(isf.object("metadata", "linux")?["symbols"] as? [[String: String]])
        #expect(sources.first?["hash_value"] == table.systemMapSHA256)
    }

    @Test func systemMapAloneWorksOffline() throws {
        let (table, isf) = try Self.make(Self.offline(kallsyms: nil, systemMap: "System.map"))
        #expect((isf.object("symbols", "linux_banner")?["address"] as? NSNumber)?.uint64Value == 0xffff_ffff_8220_0000)
        #expect(table.kallsymsSHA256 == nil)
    }

    @Test func liveLayoutFindsSystemMapByRelease() throws {
        let directory = try TemporaryDirectory()
        directory.write("System.map-6.1.0-57-amd64", try fixtureBytes("System.map"))
        var sources = try Self.offline(kallsyms: "kallsyms-hidden")
        sources.systemMapDirectory = directory.path
        let table = try KernelSymbols.make(from: sources, producerVersion: "0.1.0")
        #expect(table.systemMapPath == directory["System.map-6.1.0-57-amd64"])
    }

    @Test func noKallsymsFallsBackToTheMapOrSaysSo() throws {
        let directory = try TemporaryDirectory()
        var sources = try Self.offline(kallsyms: nil)
        sources.kallsyms = "/proc/nonexistent-kallsyms"
        sources.systemMapDirectory = directory.path
        let error = try Self.failure(sources)
        #expect(
            error.reason
                == .noKallsyms(
                    path: "/proc/nonexistent-kallsyms",
                    systemMap: "cannot read \(directory.path)/System.map-6.1.0-57-amd64: No such file or directory"))
        #expect(error.description.contains("CONFIG_KALLSYMS is off"))
        directory.write("System.map-6.1.0-57-amd64", try fixtureBytes("System.map"))
        let table = try KernelSymbols.make(from: sources, producerVersion: "0.1.0")
        #expect(table.notes.contains { $0.contains("/proc/nonexistent-kallsyms does not exist (CONFIG_KALLSYMS is off)") })
        // Offline, a kallsyms path that does not exist is just that.
        sources.systemMapDirectory = nil
        #expect(
            try Self.failure(sources).reason == .unreadable(path: "/proc/nonexistent-kallsyms", errno: .noSuchFileOrDirectory))
    }

    static func failure(_ sources: SymbolSources) throws -> SymbolTableError {
        do {
            _ = try KernelSymbols.make(from: sources, producerVersion: "0.1.0")
        } catch {
            return error
        }
        throw Failure("a table was made")
    }

    @Test func noBTFSaysWhatTheAnalystNeeds() throws {
        var sources = try Self.offline()
        sources.btf = "/sys/kernel/btf/nonexistent"
        let error = try Self.failure(sources)
        #expect(error.reason == .noBTF(path: "/sys/kernel/btf/nonexistent"))
        #expect(error.description.contains("CONFIG_DEBUG_INFO_BTF") && error.description.contains("dwarf2json"))
        #expect(SymbolsManifestEntry(error: error).missing == true)
        sources.btf = "/nonexistent/copy-of-btf"
        #expect(try Self.failure(sources).reason == .unreadable(path: "/nonexistent/copy-of-btf", errno: .noSuchFileOrDirectory))
    }

    @Test func hiddenAddressesWithoutAMapSayKptrRestrict() throws {
        let error = try Self.failure(Self.offline(kallsyms: "kallsyms-hidden"))
        guard case .addressesHidden = error.reason else { throw Failure("\(error)") }
        #expect(error.description.contains("kptr_restrict") && error.description.contains("none was given"))
    }

    @Test func debiansPlaceholderMapIsNamed() throws {
        let error = try Self.failure(Self.offline(kallsyms: "kallsyms-hidden", systemMap: "System.map-debian-placeholder"))
        #expect(error.description.contains("The real System.map is in the linux-image"))
        #expect(error.description.contains("kptr_restrict"))
    }

    @Test func functionsOnlyKallsymsSaysKallsymsAll() throws {
        let directory = try TemporaryDirectory()
        let text = try String(contentsOfFile: fixture("kallsyms"), encoding: .utf8)
        let functions = text.split(separator: "\n").filter { $0.contains(" T ") || $0.contains(" t ") }.joined(separator: "\n")
        var sources = try Self.offline()
        sources.kallsyms = directory.write("kallsyms", Array(functions.utf8))
        let error = try Self.failure(sources)
        #expect(error.description.contains("CONFIG_KALLSYMS_ALL") && error.description.contains("init_task"))
        // With the build's System.map, the functions kallsyms lists check it and give the offset.
        sources.systemMap = try fixture("System.map")
        let table = try KernelSymbols.make(from: sources, producerVersion: "0.1.0")
        #expect(table.kaslrOffset == Self.offset)
    }

    @Test func aMapOfAnotherBuildIsRefused() throws {
        let directory = try TemporaryDirectory()
        let map = try String(contentsOfFile: fixture("System.map"), encoding: .utf8)
            .replacingOccurrences(of: "ffffffff81001000 T use", with: "ffffffff81001040 T use")
        var sources = try Self.offline(kallsyms: nil)
        sources.kallsyms = directory.write(
            "kallsyms",
            Array(
                try String(contentsOfFile: fixture("kallsyms"), encoding: .utf8).replacingOccurrences(
                    of: " D init_task\n", with: " D other\n"
                ).utf8))
        sources.systemMap = directory.write("System.map", Array(map.utf8))
        let error = try Self.failure(sources)
        #expect(error.description.contains("is not the running kernel's") && error.description.contains("use"))
        // Hidden kallsyms: the per-CPU offsets in the BTF catch a map of another build.
        let shifted = map.replacingOccurrences(of: "0000000000000098 D percpu_counter", with: "00000000000000a0 D percpu_counter")
        sources.kallsyms = try fixture("kallsyms-hidden")
        sources.systemMap = directory.write("System.map-2", Array(shifted.utf8))
        #expect(try Self.failure(sources).description.contains("per-CPU variables are at other offsets"))
    }

    @Test func badBannerAndGarbageKallsymsAreErrors() throws {
        let directory = try TemporaryDirectory()
        var sources = try Self.offline()
        sources.banner = directory.write("version", Array("not a banner\n".utf8))
        #expect(try Self.failure(sources).description.contains("does not start with 'Linux version '"))
        sources = try Self.offline()
        sources.kallsyms = directory.write("kallsyms", Array("ffffffff81000000 T _text\nthis is not kallsyms\n".utf8))
        let error = try Self.failure(sources)
        guard case .badSymbolFile(let detail) = error.reason else { throw Failure("\(error)") }
        #expect(detail.line == 2)
    }

    @Test func btfErrorsNameTheFile() throws {
        let directory = try TemporaryDirectory()
        var sources = try Self.offline()
        sources.btf = directory.write("btf", Array(try fixtureBytes("layout.btf").prefix(100)))
        let error = try Self.failure(sources)
        guard case .badBTF = error.reason else { throw Failure("\(error)") }
        #expect(error.description.hasPrefix(directory["btf"]))
        // A module's BTF (no task_struct) is not a kernel's.
        var b = BTFBuilder()
        b.int("int", size: 4)
        sources.btf = directory.write("module.btf", b.bytes())
        #expect(try Self.failure(sources).description.contains("no task_struct, list_head"))
    }

    @Test func typesWithoutATagTakeTheirTypedefsNameAfterEveryTag() throws {
        // Linux 6.3+: `typedef struct { u64 val; } kernel_cap_t;`. Volatility attaches
        // kernel_cap_t's helpers to that name, which dwarf2json's tables give the struct.
        let (_, isf) = try Self.make(Self.offline())
        let cred = try #require(isf.object("user_types", "cred")?["fields"] as? [String: [String: Any]])
        #expect(cred["cap_effective"]?["type"] as? [String: String] == ["kind": "struct", "name": "kernel_cap_t"])
        #expect(isf.object("user_types", "kernel_cap_t", "fields", "val") != nil)
        #expect(cred["level"]?["type"] as? [String: String] == ["kind": "enum", "name": "level_t"])
        #expect((isf.object("enums", "level_t")?["constants"] as? [String: Int]) == ["LOW": 0, "HIGH": 1])
        // A typedef named like a tag leaves the tag its name.
        let other = try #require((cred["named_like_a_tag"]?["type"] as? [String: String])?["name"])
        #expect(other.hasPrefix("list_head__") && isf.object("user_types", other, "fields", "taken") != nil)
        #expect(isf.object("user_types", "list_head", "fields", "next") != nil)
    }

    /// pahole before 1.22 wrote 1-byte integers without BTF's signed bit (Debian 5.10's BTF:
    /// `signed char` unsigned): `signed char` is then signed by its name, and `char` as the
    /// kernel builds it: on x86 (pt_regs has orig_ax) signed before Linux 6.2 and unsigned
    /// since, on arm64 (Debian's arm64 5.10) unsigned; where `signed char` kept the bit (6.1,
    /// 6.12), the BTF says.
    @Test func oneByteSignsLostByPaholeComeFromTheNameTheKernelAndItsArchitecture() throws {
        func signs(
            signedChar encoding: UInt8, kernel: (major: Int, minor: Int)?, register: String = "orig_ax"
        ) throws -> [String: Bool] {
            var b = BTFBuilder()
            b.int("char", size: 1)
            b.int("signed char", size: 1, encoding: encoding)
            b.int("unsigned char", size: 1)
            b.int("_Bool", size: 1, encoding: BTFType.boolEncoding)
            let long = b.int("long int", size: 8, encoding: BTFType.signedEncoding)
            b.structure("pt_regs", size: 8, members: [(register, long, 0, 0)])
            let bases = try #require(try Self.sections(of: b, kernel: kernel)["base_types"])
            return bases.compactMapValues { $0["signed"] as? Bool }
        }
        let lost = try signs(signedChar: 0, kernel: (5, 10))
        #expect(lost["char"] == true && lost["signed char"] == true)
        #expect(lost["unsigned char"] == false && lost["_Bool"] == false && lost["long int"] == true)
        #expect(try signs(signedChar: 0, kernel: (6, 2))["char"] == false)
        #expect(try signs(signedChar: 0, kernel: nil)["char"] == false)
        let arm64 = try signs(signedChar: 0, kernel: (5, 10), register: "pstate")
        #expect(arm64["char"] == false && arm64["signed char"] == true)
        let kept = try signs(signedChar: BTFType.signedEncoding, kernel: (5, 10))
        #expect(kept["char"] == false && kept["signed char"] == true)
    }

    /// pahole before 1.21 (BTF without FLOAT) wrote `double` as an INT without an encoding
    /// (Debian 5.10): it is a float, signed, as DWARF says, and never an enum's base.
    @Test func floatingTypesWrittenAsIntegersAreFloats() throws {
        var b = BTFBuilder()
        b.int("double", size: 8)  // 1
        b.int("long unsigned int", size: 8)  // 2
        let constant = b.name("BIG")
        b.record(.enumeration, "wide", vlen: 1, sizeOrType: 8, extra: [constant, 1])
        let isf = try Self.sections(of: b, kernel: (5, 10))
        #expect(isf["base_types"]?["double"]?["kind"] as? String == "float")
        #expect(isf["base_types"]?["double"]?["signed"] as? Bool == true)
        #expect(isf["enums"]?["wide"]?["base"] as? String == "long unsigned int")
    }

    /// A tag BTF defines twice is the table's for the definition more members use (the header's,
    /// not one local to a file), the other `TAG__ID`; declared types resolve to the former.
    @Test func aTagDefinedTwiceIsTheMostUsedDefinitions() throws {
        var b = BTFBuilder()
        let int = b.int("int", size: 4, encoding: BTFType.signedEncoding)  // 1
        let local = b.structure("console", size: 4, members: [("x", int, 0, 0)])  // 2
        let shared = b.structure("console", size: 8, members: [("x", int, 0, 0), ("y", int, 32, 0)])  // 3
        let pointer = b.record(.pointer, sizeOrType: shared)  // 4
        b.structure("a", size: 8, members: [("c", pointer, 0, 0)])
        b.structure("b", size: 16, members: [("c", shared, 0, 0), ("d", local, 64, 0)])
        b.structure("e", size: 8, members: [("c", pointer, 0, 0)])
        let isf = try Self.sections(of: b, kernel: (6, 1))
        #expect(isf["user_types"]?["console"]?["size"] as? Int == 8)
        #expect(isf["user_types"]?["console__\(local)"]?["size"] as? Int == 4)
        let writer = try ISFWriter(btf: try BTF(bytes: b.bytes()))
        let resolved = writer.resolve(
            .structure("console"), in: writer.typeIndex(), address: 0, nextAddress: { nil }, kernel: nil)
        #expect(resolved?.size == 8)
    }

    /// The base types, user types and enums an ISFWriter writes for `builder`'s BTF.
    static func sections(of builder: BTFBuilder, kernel: (major: Int, minor: Int)?) throws
        -> [String: [String: [String: Any]]]
    {
        let writer = try ISFWriter(btf: try BTF(bytes: builder.bytes()), kernel: kernel)
        var json = JSONWriter(capacity: 4096)
        _ = try writer.writeStart(into: &json, producerVersion: "0", sources: [])
        ISFWriter.writeEnd(into: &json)
        let isf = try #require(try JSONSerialization.jsonObject(with: Data(json.bytes)) as? [String: Any])
        return isf.compactMapValues { $0 as? [String: [String: Any]] }
    }

    /// BTF types symbols by name: a name's last VAR, else its first FUNC; listed in the byte
    /// order of `SymbolList.byName`, so that the table's symbols find theirs in one pass.
    @Test func btfTypesEachNameByItsLastVariableElseItsFirstFunction() throws {
        var b = BTFBuilder()
        b.int("int", size: 4, encoding: BTFType.signedEncoding)  // 1
        b.int("long int", size: 8, encoding: BTFType.signedEncoding)  // 2
        b.record(.functionPrototype, sizeOrType: 1)  // 3
        b.record(.function, "v", vlen: 1, sizeOrType: 3)  // 4
        b.record(.variable, "v", sizeOrType: 1, extra: [1])  // 5
        b.record(.variable, "v", sizeOrType: 2, extra: [1])  // 6
        b.record(.function, "f", vlen: 1, sizeOrType: 3)  // 7
        b.record(.function, "f", vlen: 1, sizeOrType: 3)  // 8
        b.record(.variable, "B", sizeOrType: 1, extra: [1])  // 9: "B" < "f" < "v" by bytes
        let writer = try ISFWriter(btf: try BTF(bytes: b.bytes()))
        let ids = try writer.btfSymbolIDs()
        #expect(ids == [9, 7, 6])
        func symbolType(_ id: UInt32) throws -> String {
            var json = JSONWriter(capacity: 64)
            try writer.writeSymbolType(id, into: &json)
            return String(decoding: json.bytes, as: UTF8.self)
        }
        #expect(try symbolType(6) == #"{"kind":"base","name":"long int"}"#)
        #expect(try symbolType(7) == #"{"kind":"function"}"#)
    }

    /// JSON strings: plain names copied whole, quotes, backslashes and control characters
    /// escaped; a key from bytes is the key from the same String.
    @Test func jsonStringsAreEscapedAndKeysFromBytesMatch() {
        for (text, expected) in [
            ("init_task", #""init_task":"#), (#"a"b\c"#, #""a\"b\\c":"#), ("x\u{1}\u{7f}é", #""x\u0001\u007fé":"#),
        ] {
            var fromString = JSONWriter(capacity: 64)
            fromString.key(text)
            var fromBytes = JSONWriter(capacity: 64)
            fromBytes.key(Array(text.utf8)[...])
            #expect(String(decoding: fromString.bytes, as: UTF8.self) == expected && fromBytes.bytes == fromString.bytes)
        }
    }

    @Test func manifestEntryEncodesSnakeCase() throws {
        let table = try KernelSymbols.make(from: Self.offline(), producerVersion: "0.1.0")
        let entry = SymbolsManifestEntry(table: table.table, path: "/evidence/host.lime.isf.json.gz")
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        let json = try #require(String(data: try encoder.encode(entry), encoding: .utf8))
        #expect(json.contains(#""kaslr_offset":"0x1d000000""#) && json.contains(#""btf_sha256":"\#(table.btfSHA256)""#))
        #expect(json.contains(#""kallsyms_sha256""#) && json.contains(#""types":\#(table.typeCount)"#))
        #expect(!json.contains("missing"))
        #expect(try JSONDecoder().decode(SymbolsManifestEntry.self, from: Data(json.utf8)) == entry)
        let missing = try encoder.encode(SymbolsManifestEntry(missing: "--no-symbols"))
        #expect(String(data: missing, encoding: .utf8) == #"{"missing":true,"reason":"--no-symbols"}"#)
    }

    @Test func jsonStringsAreEscaped() {
        var json = JSONWriter(capacity: 16)
        json.string("a\"b\\c\u{1}\n\u{7f}é")
        #expect(String(decoding: json.bytes, as: UTF8.self) == #""a\"b\\c\u0001\u000a\u007fé""#)
        var numbers = JSONWriter(capacity: 16)
        numbers.number(UInt64.max)
        numbers.byte(0x2c)
        numbers.number(Int64.min)
        numbers.byte(0x2c)
        numbers.number(0)
        #expect(String(decoding: numbers.bytes, as: UTF8.self) == "18446744073709551615,-9223372036854775808,0")
    }

    @Test func gzipRoundTrips() throws {
        let text = Array(String(repeating: "symbol table ", count: 10000).utf8)
        let compressed = try Gzip.compress(text)
        #expect(compressed.count < text.count / 20)
        #expect(try gunzip(compressed) == text)
        #expect(try gunzip(Gzip.compress([])) == [])
    }

    /// The table is compressed as it is written; the file must be the bytes one pass would give.
    @Test func jsonCompressedAsItIsWrittenIsTheSameFileAsCompressedWhole() throws {
        func document(_ writer: inout JSONWriter) {
            var state: UInt64 = 7
            for index in 0..<200_000 {
                state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
                writer.key("symbol_\(index)_\(state >> 50)")
                writer.number(state >> 20)
                writer.byte(0x2c)
            }
        }
        var whole = JSONWriter(capacity: 1 << 20)
        document(&whole)
        let collected = Collected()
        var streamed = JSONWriter(compressingInto: try Gzip.BackgroundDeflater { collected.bytes += $0 })
        document(&streamed)
        #expect(whole.bytes.count > 4 << 20)
        try streamed.finishCompressed()
        let file = collected.bytes
        #expect(streamed.bytes.isEmpty)
        #expect(file == (try Gzip.compress(whole.bytes)))
        #expect(try gunzip(file) == whole.bytes)
    }
}
