import Glibc
import TestSupport
import Testing

@testable import MemorySources

/// Builds a little-endian ELF core with the given PT_LOAD segments (and one PT_NOTE).
struct ELFBuilder {
    var is64 = true
    var segments: [(offset: UInt64, virtual: UInt64, physical: UInt64, size: UInt64)] = []

    func bytes() -> [UInt8] {
        var out = [UInt8](repeating: 0, count: is64 ? 64 : 52)
        out.replaceSubrange(0..<4, with: [0x7f, 0x45, 0x4c, 0x46])
        out[4] = is64 ? 2 : 1
        out[5] = 1
        out[6] = 1
        put16(&out, 16, 4)  // ET_CORE
        let phentsize = is64 ? 56 : 32
        let phoff = out.count
        if is64 {
            put64(&out, 32, UInt64(phoff))
            put16(&out, 54, UInt16(phentsize))
            put16(&out, 56, UInt16(segments.count + 1))
        } else {
            put32(&out, 28, UInt32(phoff))
            put16(&out, 42, UInt16(phentsize))
            put16(&out, 44, UInt16(segments.count + 1))
        }
        var table = [UInt8](repeating: 0, count: phentsize)
        put32(&table, 0, 4)  // PT_NOTE, ignored
        out += table
        for segment in segments {
            var entry = [UInt8](repeating: 0, count: phentsize)
            put32(&entry, 0, 1)
            if is64 {
                put64(&entry, 8, segment.offset)
                put64(&entry, 16, segment.virtual)
                put64(&entry, 24, segment.physical)
                put64(&entry, 32, segment.size)
                put64(&entry, 40, segment.size)
            } else {
                put32(&entry, 4, UInt32(segment.offset))
                put32(&entry, 8, UInt32(truncatingIfNeeded: segment.virtual))
                put32(&entry, 12, UInt32(truncatingIfNeeded: segment.physical))
                put32(&entry, 16, UInt32(segment.size))
                put32(&entry, 20, UInt32(segment.size))
            }
            out += entry
        }
        return out
    }

    private func put16(_ bytes: inout [UInt8], _ at: Int, _ value: UInt16) {
        for index in 0..<2 { bytes[at + index] = UInt8(truncatingIfNeeded: value >> (8 * UInt16(index))) }
    }
    private func put32(_ bytes: inout [UInt8], _ at: Int, _ value: UInt32) {
        for index in 0..<4 { bytes[at + index] = UInt8(truncatingIfNeeded: value >> (8 * UInt32(index))) }
    }
    private func put64(_ bytes: inout [UInt8], _ at: Int, _ value: UInt64) {
        for index in 0..<8 { bytes[at + index] = UInt8(truncatingIfNeeded: value >> (8 * UInt64(index))) }
    }
}

func parse(_ elf: [UInt8]) throws -> [KCoreSegment] {
    try KCore.segments(path: "test-kcore") { (offset, count) throws(SourceError) in
        guard offset < UInt64(elf.count) else { return [] }
        return Array(elf[Int(offset)..<min(elf.count, Int(offset) + count)])
    }
}

struct KCoreTests {
    static let directMap: UInt64 = 0xffff_8880_0000_0000

    @Test func skipsSentinelsAndEmptySegments() throws {
        var builder = ELFBuilder()
        builder.segments = [
            (0x1000, 0xffff_ffff_8100_0000, UInt64.max, 0x20_0000),  // kernel text: no physical address
            (0x4000, Self.directMap + 0x1000, 0x1000, 0x9e000),
            (0x9000, Self.directMap + 0x20_0000, 0x20_0000, 0),  // empty
        ]
        let segments = try parse(builder.bytes())
        #expect(segments.count == 2)
        #expect(segments[0].physicalAddress == nil)
        #expect(
            KCore.mappings(segments, systemRAM: [0x1000..<0x9fc00]) == [
                KCoreMapping(physical: 0x1000..<0x9f000, fileOffset: 0x4000)
            ])
    }

    @Test func readsELF32WithAWidenedSentinel() throws {
        var builder = ELFBuilder()
        builder.is64 = false
        builder.segments = [(0x1000, 0xc000_0000, 0xffff_ffff, 0x1000), (0x2000, 0xc010_0000, 0x10_0000, 0x8000)]
        let segments = try parse(builder.bytes())
        #expect(segments.map(\.physicalAddress) == [nil, 0x10_0000])
    }

    @Test func overlappingSegmentsMapEachAddressOnce() {
        let segments = [
            KCoreSegment(fileOffset: 0x10000, virtualAddress: 0, physicalAddress: 0x10_0000, size: 0x10_0000),
            // The kernel image again, inside the RAM segment above.
            KCoreSegment(fileOffset: 0x90000, virtualAddress: 0, physicalAddress: 0x18_0000, size: 0x10_0000),
        ]
        #expect(
            KCore.mappings(segments, systemRAM: []) == [
                KCoreMapping(physical: 0x10_0000..<0x20_0000, fileOffset: 0x10000),
                KCoreMapping(physical: 0x20_0000..<0x28_0000, fileOffset: 0x90000 + 0x8_0000),
            ])
    }

    @Test func oldKernelsWithZeroPhysicalAddressesUseTheDirectMap() {
        // Before 4.11 every p_paddr is 0; the RAM segments sit at directMap + physical.
        let base: UInt64 = 0xffff_9a00_0000_0000  // KASLR-randomised
        let segments = [
            KCoreSegment(fileOffset: 0x1000, virtualAddress: 0xffff_ffff_8100_0000, physicalAddress: 0, size: 0x100_0000),
            KCoreSegment(fileOffset: 0x2000, virtualAddress: base + 0x1000, physicalAddress: 0, size: 0x9e000),
            KCoreSegment(fileOffset: 0x3000, virtualAddress: base + 0x10_0000, physicalAddress: 0, size: 0x3fef_0000),
        ]
        let ram: [Range<UInt64>] = [0x1000..<0x9f000, 0x10_0000..<0x3fff_0000]
        #expect(KCore.directMapBase(segments, systemRAM: ram) == base)
        let mappings = KCore.mappings(segments, systemRAM: ram)
        #expect(mappings.contains(KCoreMapping(physical: 0x1000..<0x9f000, fileOffset: 0x2000)))
        #expect(mappings.contains(KCoreMapping(physical: 0x10_0000..<0x3fff_0000, fileOffset: 0x3000)))
        #expect(IOMem.intersect(ram, with: mappings.map(\.physical)) == ram)
    }

    @Test func segmentsThatAllHaveNoPhysicalAddressMapNoMemory() {
        // A 4.11+ kcore with no RAM segment: vmalloc, modules, the vsyscall page, a vmemmap
        // page. The vmemmap fits in RAM for some guessed base, but struct pages are not RAM.
        let segments = [
            KCoreSegment(
                fileOffset: 0x4900_0000_2000, virtualAddress: 0xffff_c900_0000_0000, physicalAddress: nil, size: 0x1fff_ffff_ffff),
            KCoreSegment(
                fileOffset: 0x7fff_c000_2000, virtualAddress: 0xffff_ffff_c000_0000, physicalAddress: nil, size: 0x3f00_0000),
            KCoreSegment(fileOffset: 0x4000, virtualAddress: 0xffff_ffff_ff60_0000, physicalAddress: nil, size: 0x1000),
            KCoreSegment(fileOffset: 0x5000, virtualAddress: 0xffff_ea00_0000_0000, physicalAddress: nil, size: 0x1000),
        ]
        #expect(KCore.mappings(segments, systemRAM: [0x1000..<0x9f000, 0x10_0000..<0x3fff_0000]) == [])
    }

    @Test(
        arguments: [
            // Big-endian ELF64.
            ([0x7f, 0x45, 0x4c, 0x46, 2, 2] + [UInt8](repeating: 0, count: 58), "not little-endian (EI_DATA 2)"),
            // ELFCLASSNONE.
            ([0x7f, 0x45, 0x4c, 0x46, 0, 1] + [UInt8](repeating: 0, count: 58), "unknown ELF class 0"),
            // Not ELF.
            ([UInt8](repeating: 0, count: 64), "no ELF magic"),
        ] as [([UInt8], String)])
    func headerErrorsNameThePathAndTheField(bytes: [UInt8], detail: String) {
        do {
            _ = try parse(bytes)
            Issue.record("accepted")
        } catch let error as SourceError {
            #expect(error.reason == .badELF(detail))
            #expect(error.description == "test-kcore is not a usable ELF core: \(detail)")
        } catch {
            Issue.record("\(error)")
        }
    }

    @Test(
        arguments: [
            // Not ELF.
            [UInt8](repeating: 0, count: 64),
            // Big-endian.
            [0x7f, 0x45, 0x4c, 0x46, 2, 2] + [UInt8](repeating: 0, count: 58),
            // Truncated.
            [0x7f, 0x45, 0x4c, 0x46, 2, 1],
        ] as [[UInt8]])
    func rejectsBadHeaders(bytes: [UInt8]) {
        #expect(throws: SourceError.self) { try parse(bytes) }
    }

    @Test func rejectsTruncatedProgramHeaders() {
        var builder = ELFBuilder()
        builder.segments = [(0x1000, 0, 0x1000, 0x1000)]
        #expect(throws: SourceError.self) { try parse(Array(builder.bytes().dropLast(10))) }
    }
}

/// A kcore-shaped file: ELF headers, then segment data at the offsets they name.
func writeKCore(_ directory: String, ram: [(physical: UInt64, size: UInt64)], fill: (UInt64) -> UInt8) -> String {
    var builder = ELFBuilder()
    var offset: UInt64 = 0x4000
    for piece in ram {
        builder.segments.append((offset, 0xffff_8880_0000_0000 + piece.physical, piece.physical, piece.size))
        offset += piece.size
    }
    builder.segments.append((offset, 0xffff_ffff_8100_0000, UInt64.max, 0x1000))
    var bytes = builder.bytes()
    bytes += [UInt8](repeating: 0, count: 0x4000 - bytes.count)
    for piece in ram {
        bytes += (0..<piece.size).map { fill(piece.physical + $0) }
    }
    bytes += [UInt8](repeating: 0xee, count: 0x1000)
    let path = "\(directory)/kcore"
    let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
    bytes.withUnsafeBytes { _ = write(fd, $0.baseAddress, $0.count) }
    close(fd)
    return path
}

struct KCoreReaderTests {
    @Test func readsAcrossAdjacentSegmentsAndRefusesGaps() throws {
        let directory = try TemporaryDirectory()
        let path = writeKCore(directory.path, ram: [(0x1000, 0x3000), (0x4000, 0x2000), (0x10000, 0x1000)]) {
            UInt8(truncatingIfNeeded: $0 >> 4)
        }
        let reader = try KCoreReader(path: path, systemRAM: [0x1000..<0x6000, 0x10000..<0x11000])
        #expect(reader.readableRanges(of: [0x0..<0x20000]) == [0x1000..<0x6000, 0x10000..<0x11000])
        var buffer = [UInt8](repeating: 0, count: 0x2000)
        try buffer.withUnsafeMutableBytes { try reader.read(into: $0, at: 0x3000) }
        #expect(buffer == (0..<0x2000).map { UInt8(truncatingIfNeeded: (0x3000 + $0) >> 4) })
        #expect(throws: SourceError.self) {
            try buffer.withUnsafeMutableBytes { try reader.read(into: $0, at: 0x5000) }
        }
    }

    @Test func smallOrEmptyKCoreIsLockedDown() throws {
        let directory = try TemporaryDirectory()
        let path = directory.write("kcore", [])
        do {
            _ = try KCoreReader(path: path, systemRAM: [0..<0x1000])
            Issue.record("an empty kcore must be refused")
        } catch {
            #expect(error.description.contains("locked down or unavailable"))
        }
    }
}

struct PageSpanTests {
    @Test(
        arguments: [
            // Aligned whole pages.
            (UInt64(0x1000), 0x3000, [0..<0x1000, 0x1000..<0x2000, 0x2000..<0x3000]),
            // Starting mid-page, ending mid-page: partial first and last pieces.
            (0x1800, 0x1000, [0..<0x800, 0x800..<0x1000]),
            // Inside one page.
            (0x2010, 0x20, [0..<0x20]),
            // The partial last page of a range like 0x1000-0x9fbff.
            (0x9f000, 0xc00, [0..<0xc00]),
        ] as [(UInt64, Int, [Range<Int>])])
    func neverCrossAPageBoundary(address: UInt64, count: Int, expected: [Range<Int>]) {
        let spans = Array(PageSpans(address: address, count: count))
        #expect(spans == expected)
        for span in spans {
            let first: UInt64 = address + UInt64(span.lowerBound)
            let last: UInt64 = first + UInt64(span.count) - 1
            #expect(first / 4096 == last / 4096)
        }
    }
}
