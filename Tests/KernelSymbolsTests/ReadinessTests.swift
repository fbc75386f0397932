import SystemPackage
import TestSupport
import Testing

@testable import KernelSymbols

/// `avml check`'s judgement of whether a table can be made, from a few bytes of each
/// file: it must agree with making the table where those bytes can tell.
struct ReadinessTests {
    @Test func visibleKallsymsCanMakeATable() throws {
        let sources = try SymbolTableTests.offline()
        #expect(try sources.readiness().get() == "BTF \(sources.btf), addresses from \(try #require(sources.kallsyms))")
        _ = try SymbolTableTests.make(sources)
    }

    @Test func hiddenKallsymsNeedsASystemMap() throws {
        var sources = try SymbolTableTests.offline(kallsyms: "kallsyms-hidden")
        let directory = try TemporaryDirectory()
        sources.systemMapDirectory = directory.path
        guard case .failure(let error) = sources.readiness(), case .addressesHidden = error.reason else {
            throw Failure("hidden kallsyms without a map: \(sources.readiness())")
        }
        guard case .addressesHidden = try SymbolTableTests.failure(sources).reason else { throw Failure("make disagrees") }
        directory.write("System.map-6.1.0-57-amd64", try fixtureBytes("System.map"))
        let found = try sources.readiness().get()
        #expect(found.contains("addresses from \(directory["System.map-6.1.0-57-amd64"])") && found.contains("hides them"))
    }

    /// Without CONFIG_KALLSYMS_ALL (Debian's arm64 5.10) kallsyms lists functions only, which
    /// its first 4 KiB cannot tell on arm64: check reads the names through and, missing the
    /// required ones (the fixture's module `init_task` is not the kernel's), says what making
    /// the table says.
    @Test func functionsOnlyKallsymsNeedsASystemMap() throws {
        var sources = try SymbolTableTests.offline(kallsyms: "kallsyms-functions-only")
        let directory = try TemporaryDirectory()
        sources.systemMapDirectory = directory.path
        guard case .failure(let error) = sources.readiness() else {
            throw Failure("functions only, no map: \(sources.readiness())")
        }
        #expect(error == (try SymbolTableTests.failure(sources)))
        directory.write("System.map-6.1.0-57-amd64", try fixtureBytes("System.map"))
        let found = try sources.readiness().get()
        #expect(found.contains("addresses from \(directory["System.map-6.1.0-57-amd64"])") && found.contains("lacks init_task"))
        _ = try SymbolTableTests.make(sources)
    }

    /// The names are found wherever the reads split the lines, a module's never.
    @Test func namesAreFoundWhereverTheReadsSplitTheLines() {
        let text = Array(
            ("ffff800010000000 T _stext\nffff800011000000 D init_mm\t[evil]\nffff800011000000 d _etext\n"
                + "ffff800012000000 D init_task\n").utf8)
        for piece in 1...text.count {
            var scanner = SymbolNameScanner(wanted: ["init_task", "init_mm", "_stext"])
            for start in stride(from: 0, to: text.count, by: piece) {
                text[start..<min(start + piece, text.count)].withUnsafeBytes { scanner.scan($0) }
            }
            #expect(scanner.found == [Array("init_task".utf8), Array("_stext".utf8)], "pieces of \(piece)")
        }
    }

    @Test func aMissingOrForeignBTFIsNamed() throws {
        var sources = try SymbolTableTests.offline()
        sources.btf = "/sys/kernel/btf/no-such-vmlinux"
        guard case .failure(let missing) = sources.readiness(), case .noBTF = missing.reason else { throw Failure("no BTF") }
        sources.btf = try fixture("version")
        guard case .failure(let foreign) = sources.readiness(), case .badBTF(let path, let error) = foreign.reason else {
            throw Failure("not BTF")
        }
        #expect(path == sources.btf && error.detail == "no BTF magic (0xeb9f)")
    }
}
