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
