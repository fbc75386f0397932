import Foundation
import Testing

@testable import MemorySources

func fixture(_ name: String) throws -> String {
    let url = try #require(Bundle.module.url(forResource: name, withExtension: "txt", subdirectory: "Fixtures/iomem"))
    return try String(contentsOf: url, encoding: .utf8)
}

struct IOMemTests {
    @Test func readsTopLevelRAMWithInclusiveEnds() throws {
        // 00001000-0009fbff, 00100000-3ffeffff and 100000000-19fffffff are System RAM.
        #expect(
            try IOMem.systemRAM(fixture("avml-iomem")) == [
                0x1000..<0x9fc00, 0x10_0000..<0x3fff_0000, 0x1_0000_0000..<0x1_a000_0000,
            ])
    }

    @Test func readsAFirecrackerGuest() throws {
        #expect(
            try IOMem.systemRAM(fixture("firecracker-vm")) == [
                0x1000..<0x9fc00, 0x10_0000..<0xc000_0000, 0x1_0000_0000..<0x6_4000_0000,
            ])
    }

    @Test func mergesAdjacentRangesAndKeepsNestedRAMInside() throws {
        // avml-iomem-5 splits RAM at 0a6f3017/0a6f3018 and so on: adjacent, so one range.
        let ranges = try IOMem.systemRAM(fixture("avml-iomem-5"))
        #expect(ranges.contains(0x10_0000..<0x0e65_6000))
        // avml-iomem-3 nests "System RAM" 03000000-0b0fffff inside 00100000-7fedffff.
        let nested = try IOMem.systemRAM(fixture("avml-iomem-3"))
        #expect(nested.contains(0x10_0000..<0x7fee_0000))
        #expect(!nested.contains { $0.lowerBound == 0x0300_0000 })
    }

    @Test(arguments: ["avml-iomem", "avml-iomem-2", "avml-iomem-3", "avml-iomem-4", "avml-iomem-5", "firecracker-vm"])
    func everyFixtureGivesSortedDisjointRAMCoveringEverySystemRAMLine(name: String) throws {
        let text = try fixture(name)
        let ranges = try IOMem.systemRAM(text)
        for (left, right) in zip(ranges, ranges.dropFirst()) {
            #expect(left.upperBound < right.lowerBound, "ranges must be sorted, disjoint and not adjacent")
        }
        let entries = try IOMem.entries(text, path: name)
        for entry in entries {
            let covered = ranges.contains { $0.lowerBound <= entry.start && entry.end < $0.upperBound }
            if IOMem.isSystemRAM(entry.name) {
                #expect(covered, "\(entry.name) \(entry.start)-\(entry.end) must be captured")
            } else if entry.depth == 0 && entry.name != "System RAM" {
                // A top-level non-RAM resource (PCI, ACPI, reserved) never overlaps what is read.
                #expect(!ranges.contains { $0.overlaps(entry.start..<entry.end + 1) }, "\(entry.name) must not be read")
            }
        }
    }

    @Test func includesSuffixedRAMFromNewerKernels() throws {
        let text = """
            00001000-0009ffff : System RAM
            100000000-13fffffff : System RAM (kmem)
            140000000-17fffffff : Persistent Memory
              140000000-15fffffff : System RAM (virtio_mem)
            180000000-1bfffffff : Soft Reserved
            """
        #expect(try IOMem.systemRAM(text) == [0x1000..<0xa0000, 0x1_0000_0000..<0x1_6000_0000])
    }

    @Test func explainsHiddenAddresses() {
        let text = "00000000-00000000 : System RAM\n00000000-00000000 : Reserved\n  00000000-00000000 : Kernel code\n"
        do {
            _ = try IOMem.systemRAM(text)
            Issue.record("hidden addresses must be refused")
        } catch {
            #expect(error.reason == .addressesHidden)
            #expect(error.description.contains("CAP_SYS_ADMIN"))
        }
    }

    @Test(
        arguments: [
            // No separator.
            ("00001000-0009ffff System RAM", 1),
            // Not hex.
            ("00001000-0009ffff : System RAM\n0000zz00-0009ffff : System RAM", 2),
            // End before start.
            ("00002000-00001000 : System RAM", 1),
        ] as [(String, Int)])
    func namesTheBadLine(text: String, line: Int) {
        do {
            _ = try IOMem.systemRAM(text, path: "saved-iomem")
            Issue.record("must fail")
        } catch {
            guard case .badIOMemLine(let number, _) = error.reason else {
                Issue.record("unexpected \(error)")
                return
            }
            #expect(number == line)
            #expect(error.description.hasPrefix("saved-iomem line \(line)"))
        }
    }

    @Test func refusesAMapWithoutRAM() {
        #expect(throws: SourceError.self) { try IOMem.systemRAM("00000000-00000fff : Reserved\n") }
    }

    @Test func intersectsRangesWithSegments() {
        let ram: [Range<UInt64>] = [0x1000..<0xa0000, 0x10_0000..<0x4000_0000]
        let segments: [Range<UInt64>] = [0..<0x9f000, 0x10_0000..<0x2000_0000, 0x2000_0000..<0x3000_0000]
        #expect(
            IOMem.intersect(ram, with: segments) == [
                0x1000..<0x9f000, 0x10_0000..<0x2000_0000, 0x2000_0000..<0x3000_0000,
            ])
    }
}
