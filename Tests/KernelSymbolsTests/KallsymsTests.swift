import Foundation
import TestSupport
import Testing

@testable import KernelSymbols

struct SymbolFileTests {
    /// kallsyms is parsed as it is read, 256 KiB at a time: lines cut between reads parse as whole.
    @Test func aFileParsedAsItIsReadGivesWhatParsingItWholeGives() throws {
        var text = ""
        for index in 0..<40_000 {
            text += String(
                format: "ffffffff%08x %@ symbol_number_%d%@\n", index * 64, index % 3 == 0 ? "T" : "d", index,
                index % 7 == 0 ? "\t[module_\(index % 5)]" : "")
        }
        let bytes = Array(text.utf8)
        #expect(bytes.count > 3 * (256 << 10))
        let directory = try TemporaryDirectory()
        let path = directory.write("kallsyms", bytes)
        let (list, sha256) = try KernelSymbols.readSymbolFile(path, limit: 64 << 20)
        let whole = try SymbolList(parsing: bytes, path: path)
        #expect(Array(list) == Array(whole) && list.byName == whole.byName)
        // Every seventh line names a module: counted, not kept.
        #expect(list.count == 40_000 - 5_715 && list.moduleSymbolCount == 5_715)
        #expect(sha256 == sha256Hex(bytes))
        #expect(throws: SymbolTableError.self) { try KernelSymbols.readSymbolFile(path, limit: bytes.count - 1) }

        let bad = directory.write("bad", bytes + Array("ffffffff81000000 T\n".utf8))
        do throws(SymbolTableError) {
            _ = try KernelSymbols.readSymbolFile(bad, limit: 64 << 20)
            Issue.record("a line without a name was accepted")
        } catch {
            guard case .badSymbolFile(let problem) = error.reason else { throw error }
            #expect(problem.line == 40_001)
        }
    }

    @Test func parsesKallsymsLinesWithModules() throws {
        let list = try SymbolList(parsing: fixtureBytes("kallsyms"), path: "kallsyms")
        #expect(list.count == 17 && list.moduleSymbolCount == 2)
        #expect(list[3] == KernelSymbol(address: 0xffff_ffff_9e00_0000, type: UInt8(ascii: "T"), name: "_text"))
        // The kernel's own symbol wins over a module's of the same name, a global one over statics.
        #expect(list.symbol(named: "init_task")?.address == 0xffff_ffff_9f00_0000)
        #expect(list.symbol(named: "helper")?.address == 0xffff_ffff_9e00_4000)
        #expect(list.symbol(named: "e1000_probe") == nil)
        #expect(!list.addressesHidden)
        // One symbol per name, in name order.
        let names = list.byName.map { list.name(at: Int($0)) }
        #expect(names == names.sorted() && Set(names).count == names.count && names.count == 15)
    }

    @Test func seesAddressesHiddenByKptrRestrict() throws {
        #expect(try SymbolList(parsing: fixtureBytes("kallsyms-hidden"), path: "k").addressesHidden)
        #expect(!(try SymbolList(parsing: [], path: "k").addressesHidden))
    }

    @Test func toleratesEmptyLinesAndShortAddresses() throws {
        let list = try SymbolList(parsing: Array("\nc0100000 T _text\n\n1 a x\n".utf8), path: "map")
        #expect(list.map(\.address) == [0xc010_0000, 1])
    }

    /// A name that is not UTF-8 is kept repaired, so that byte order and string order agree.
    @Test func namesThatAreNotUTF8AreRepairedAndFound() throws {
        let bytes =
            Array("ffffffff81000000 T zeta\nffffffff81000010 T ".utf8) + [0x61, 0xff, 0x62]
            + Array("\nffffffff81000020 T alpha\n".utf8)
        let list = try SymbolList(parsing: bytes, path: "k")
        #expect(list[1].name == "a\u{FFFD}b")
        #expect(list.symbol(named: "a\u{FFFD}b")?.address == 0xffff_ffff_8100_0010)
        #expect(list.byName.map { list.name(at: Int($0)) } == ["alpha", "a\u{FFFD}b", "zeta"].sorted())
    }

    @Test(arguments: [
        ("ffffffff81000000 T\n", 1, "2 fields"),  // no name
        ("ffffffff81000000 T _text\nzzzz T x\n", 2, "not 1 to 16 hex digits"),  // not hex
        ("ffffffff810000001 T x\n", 1, "not 1 to 16 hex digits"),  // 17 digits
        ("ffffffff81000000 TT x\n", 1, "not one letter"),
        ("ffffffff81000000 7 x\n", 1, "not one letter"),
        ("ffffffff81000000 t x e1000\n", 1, "not a [module]"),
        ("ffffffff81000000 t x [a] extra\n", 1, "5 fields"),
        ("\n\nffffffffffffffff B The real System.map is in the linux-image-<version>-dbg package\n", 3, "fields"),
        ("ffffffff81000000 T \u{1b}[31mred\u{1b}[0m\u{7}\u{7} extra\n", 1, "\\u{1b}"),  // escaped in the message
    ])
    func garbageLinesNameTheirLine(text: String, line: Int, detail: String) throws {
        do {
            _ = try SymbolList(parsing: Array(text.utf8), path: "/proc/kallsyms")
            Issue.record("accepted \(text)")
        } catch {
            #expect(error.line == line)
            #expect(error.description.contains(detail), "\(error)")
            #expect(error.description.hasPrefix("/proc/kallsyms line \(line): "))
            #expect(!error.description.contains("\u{1b}"))
        }
    }

    @Test func rejectsOverlongNames() throws {
        let text = "ffffffff81000000 T " + String(repeating: "a", count: 513) + "\n"
        #expect(throws: SymbolFileError.self) { try SymbolList(parsing: Array(text.utf8), path: "k") }
    }
}

struct VMCoreInfoTests {
    /// An ELF64 core with one PT_NOTE segment holding `notes`.
    static func core(notes: [UInt8]) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: 64 + 56)
        out.replaceSubrange(0..<6, with: [0x7f, 0x45, 0x4c, 0x46, 2, 1])
        func put(_ value: UInt64, _ at: Int, _ size: Int) {
            for index in 0..<size { out[at + index] = UInt8(truncatingIfNeeded: value >> (8 * UInt64(index))) }
        }
        put(64, 32, 8)  // e_phoff
        put(56, 54, 2)  // e_phentsize
        put(1, 56, 2)  // e_phnum
        put(4, 64, 4)  // PT_NOTE
        put(120, 64 + 8, 8)  // p_offset
        put(UInt64(notes.count), 64 + 32, 8)  // p_filesz
        return out + notes
    }

    static func note(_ name: String, _ description: String) -> [UInt8] {
        func word(_ value: Int) -> [UInt8] { (0..<4).map { UInt8(truncatingIfNeeded: value >> (8 * $0)) } }
        func padded(_ bytes: [UInt8]) -> [UInt8] { bytes + [UInt8](repeating: 0, count: (4 - bytes.count % 4) % 4) }
        let nameBytes = Array(name.utf8) + [0]
        let text = Array(description.utf8)
        return word(nameBytes.count) + word(text.count) + word(0) + padded(nameBytes) + padded(text)
    }

    static func read(_ bytes: [UInt8]) -> (UInt64, Int) throws -> [UInt8] {
        { offset, count in
            guard offset < UInt64(bytes.count) else { return [] }
            return Array(bytes[Int(offset)..<min(bytes.count, Int(offset) + count)])
        }
    }

    @Test func findsKernelOffsetAfterOtherNotes() throws {
        let core = Self.core(
            notes: Self.note("CORE", "prstatus") + Self.note("VMCOREINFO", "OSRELEASE=6.1.0-57-amd64\nKERNELOFFSET=1d000000\n"))
        let text = try #require(try VMCoreInfo.text(read: Self.read(core)))
        #expect(VMCoreInfo.kernelOffset(in: text) == 0x1d00_0000)
        #expect(VMCoreInfo.release(in: text) == "6.1.0-57-amd64")
    }

    @Test func noNoteIsNil() throws {
        #expect(try VMCoreInfo.text(read: Self.read(Self.core(notes: Self.note("CORE", "x")))) == nil)
    }

    @Test func hostileCores() throws {
        var lying = Self.note("VMCOREINFO", "KERNELOFFSET=1")
        lying[4] = 0xff  // descsz far past the segment
        #expect(throws: VMCoreInfoError.self) { try VMCoreInfo.text(read: Self.read(Self.core(notes: lying))) }
        #expect(throws: VMCoreInfoError.self) { try VMCoreInfo.text(read: Self.read(Array("not an ELF".utf8))) }
        var huge = Self.core(notes: [])
        huge[56] = 0xff  // 65535 program headers
        huge[57] = 0xff
        huge[54] = 0xff
        #expect(throws: VMCoreInfoError.self) { try VMCoreInfo.text(read: Self.read(huge)) }
        // Every truncation of a valid core is an error or nil, never a crash.
        let core = Self.core(notes: Self.note("VMCOREINFO", "KERNELOFFSET=2\n"))
        for length in 0..<core.count {
            _ = try? VMCoreInfo.text(read: Self.read(Array(core.prefix(length))))
        }
    }
}
