import Foundation
import TestSupport
import Testing

@testable import KernelSymbols

/// Kernel data this avml does not expect (issue 16): a newer kernel's BTF, a kallsyms
/// without data symbols. Each must give no table, or a correct one, and a reason that
/// says what was wrong, where, and what the analyst does instead.
struct UnexpectedKernelDataTests {
    /// The BTF files to damage: the project's fixture, and this machine's kernel BTF when it has one.
    static let btfFiles: [String] = {
        var files = ["layout.btf"]
        if FileManager.default.fileExists(atPath: "/sys/kernel/btf/vmlinux") { files.append("/sys/kernel/btf/vmlinux") }
        return files
    }()

    @Test(arguments: btfFiles, [UInt8(20), 25, 31])
    func aBTFKindOfANewerKernelMakesNoTableAndSaysWhatToDo(btfFile: String, kind: UInt8) throws {
        let directory = try TemporaryDirectory()
        let original =
            btfFile.hasPrefix("/") ? Array(try Data(contentsOf: URL(fileURLWithPath: btfFile))) : try fixtureBytes(btfFile)
        let typeCount = try BTF(bytes: original).types.count
        let newer = try #require(btfWithNewerKind(original, kind: kind, typeCount: typeCount))
        var sources = try SymbolTableTests.offline()
        sources.btf = directory.write("vmlinux.btf", newer.bytes)
        let error = try SymbolTableTests.failure(sources)
        guard case .badBTF(let path, let btfError) = error.reason else { throw Failure("\(error)") }
        #expect(path == sources.btf && btfError.typeID == UInt32(newer.typeID) && btfError.offset == newer.offset)
        #expect(btfError.unknownKind == kind)
        let text = error.description
        #expect(text.hasPrefix(sources.btf + ": "))
        #expect(text.contains("type id \(newer.typeID) at byte offset 0x\(String(newer.offset, radix: 16))"))
        #expect(text.contains("unknown kind \(kind)") && text.contains("newer"))
        #expect(text.contains("dwarf2json linux --elf vmlinux"))
        let entry = SymbolsManifestEntry(error: error)
        #expect(entry.missing == true && entry.reason == text && entry.path == nil)
    }

    @Test func functionsOnlyKallsymsWithoutAMapMakesNoTableAndSaysWhy() throws {
        let directory = try TemporaryDirectory()
        var sources = try SymbolTableTests.offline(kallsyms: "kallsyms-functions-only")
        sources.systemMapDirectory = directory.path
        let error = try SymbolTableTests.failure(sources)
        let mapPath = directory["System.map-6.1.0-57-amd64"]
        guard case .missingSymbols(let names, let source, let functionsOnly, let systemMap) = error.reason else {
            throw Failure("\(error)")
        }
        // The module's "init_task [evil]" is not the kernel's.
        #expect(
            names == ["init_task", "init_mm", "init_files", "linux_banner", "init_top_pgt or init_level4_pgt or swapper_pg_dir"])
        #expect(source == sources.kallsyms && functionsOnly)
        #expect(systemMap == "cannot read \(mapPath): No such file or directory")
        let text = error.description
        #expect(text.contains("CONFIG_KALLSYMS_ALL is off") && text.contains(mapPath))
        #expect(text.contains("avml symbols --system-map") && text.contains("dwarf2json"))
    }

    @Test func functionsOnlyKallsymsTakesTheAddressesFromTheBuildsMap() throws {
        let directory = try TemporaryDirectory()
        directory.write("System.map-6.1.0-57-amd64", try fixtureBytes("System.map"))
        var sources = try SymbolTableTests.offline(kallsyms: "kallsyms-functions-only")
        sources.systemMapDirectory = directory.path
        let (table, isf) = try SymbolTableTests.make(sources)
        // Link-time addresses, as the build's System.map has them; the offset from kallsyms' _text.
        for (name, address) in [
            ("init_task", 0xffff_ffff_8200_0000), ("init_mm", 0xffff_ffff_8200_1000), ("init_files", 0xffff_ffff_8200_2000),
            ("init_top_pgt", 0xffff_ffff_8200_3000), ("linux_banner", 0xffff_ffff_8220_0000),
        ] as [(String, UInt64)] {
            #expect((isf.object("symbols", name)?["address"] as? NSNumber)?.uint64Value == address, "\(name)")
        }
        #expect(table.kaslrOffset == SymbolTableTests.offset && table.systemMapPath == directory["System.map-6.1.0-57-amd64"])
        #expect(
            table.notes.contains {
                $0.hasPrefix("addresses from \(directory["System.map-6.1.0-57-amd64"]): ")
                    && $0.contains("lacks init_task") && $0.contains("CONFIG_KALLSYMS_ALL is off")
            }, "\(table.notes)")
    }

    @Test func kallsymsWithDataSymbolsIsNotBlamedOnKallsymsAll() throws {
        // Data symbols are there, one required symbol is not: the kernel has CONFIG_KALLSYMS_ALL.
        let directory = try TemporaryDirectory()
        let sources = try Self.kallsyms(replacing: " D init_files\n", with: " D other_files\n", in: directory)
        let error = try SymbolTableTests.failure(sources)
        guard case .missingSymbols(let names, _, let functionsOnly, _) = error.reason else { throw Failure("\(error)") }
        #expect(names == ["init_files"] && !functionsOnly)
        #expect(!error.description.contains("CONFIG_KALLSYMS_ALL"))
    }

    /// The fixture's kallsyms with `replace` replaced by `with`.
    static func kallsyms(replacing replace: String, with replacement: String, in directory: TemporaryDirectory) throws
        -> SymbolSources
    {
        let text = try String(contentsOfFile: fixture("kallsyms"), encoding: .utf8)
        #expect(text.contains(replace))
        var sources = try SymbolTableTests.offline()
        sources.kallsyms = directory.write("kallsyms", Array(text.replacingOccurrences(of: replace, with: replacement).utf8))
        return sources
    }

    @Test func aNameListedGlobalAtTwoAddressesIsWarnedOfAndTheFirstIsTaken() throws {
        // No linked kernel has two global init_task: a tampered or spliced kallsyms.
        let directory = try TemporaryDirectory()
        let sources = try Self.kallsyms(
            replacing: "ffffffff9f000000 D init_task\n",
            with: "ffffffff9f000000 D init_task\nffffffff9f0ff000 D init_task\n", in: directory)
        let (table, isf) = try SymbolTableTests.make(sources)
        let warnings = table.notes.filter { $0.contains("as global at several addresses") }
        #expect(warnings.count == 1, "\(table.notes)")
        #expect(warnings.first?.hasPrefix("\(sources.kallsyms ?? "") lists 1 name(s)") == true)
        #expect(warnings.first?.contains("init_task at 0xffffffff9f000000, 0xffffffff9f0ff000") == true)
        let address = (isf.object("symbols", "init_task")?["address"] as? NSNumber)?.uint64Value
        #expect(address == 0xffff_ffff_9f00_0000 - SymbolTableTests.offset)
        #expect(SymbolsManifestEntry(table: table.table, path: "t.isf.json.gz").notes?.contains(warnings[0]) == true)
    }

    @Test func aStaticVolatilityReadsListedAtTwoAddressesIsWarnedOf() throws {
        // tk_core is `static` in the kernel: two file-local ones of that name make the table's a guess.
        let directory = try TemporaryDirectory()
        let sources = try Self.kallsyms(
            replacing: "ffffffff9f004000 D tk_core\n",
            with: "ffffffff9f004000 d tk_core\nffffffff9f005000 d tk_core\n", in: directory)
        let (table, _) = try SymbolTableTests.make(sources)
        let warnings = table.notes.filter { $0.contains("none global") }
        #expect(
            warnings == [
                "\(sources.kallsyms ?? "") lists tk_core at 0xffffffff9f004000, 0xffffffff9f005000, none global: "
                    + "the table gives the first, and Volatility reads tk_core there"
            ], "\(table.notes)")
    }

    @Test func staticsNoVolatilityCodeReadsAreNotWarnedOf() throws {
        // The fixture's two local `helper` (and a global one) are what every kernel has by the hundred.
        let (table, _) = try SymbolTableTests.make(SymbolTableTests.offline())
        #expect(!table.notes.contains { $0.contains("several addresses") || $0.contains("none global") }, "\(table.notes)")
    }
}
