import ImageFormats
import KernelSymbols
import MemorySources
import TestSupport
import Testing

@testable import Capture
@testable import RecordEngine

/// Kernel data a capture does not expect (issue 16), end to end through `MemoryCapture.run`,
/// as `avml acquire` runs it: the image is still taken, and the manifest says what is missing and why.
extension AcquisitionTests {
    /// x86-64 System RAM as /proc/iomem shows it: the first range ends mid-page, and kcore
    /// (which maps whole pages) lists no segment for the last one.
    static let unevenIOMem =
        "00000000-00000fff : Reserved\n00001000-0009fbff : System RAM\n000a0000-000fffff : PCI Bus\n"
        + "00100000-002fffff : System RAM\n  00200000-0020ffff : Kernel code\n00300000-003fffff : System RAM\n"

    /// Segments of /proc/kcore with no physical address, in a 6.1 kernel's order: vmalloc, modules,
    /// the vsyscall page, and the vmemmap of each RAM range (struct pages, not RAM).
    static let unmarkedSegments: [KCoreFixtureSegment] = [
        .init(virtual: 0xffff_c900_0000_0000, physical: .max, size: 0x1fff_ffff_ffff, data: nil),
        .init(virtual: 0xffff_ffff_c000_0000, physical: .max, size: 0x3f00_0000, data: nil),
        .init(virtual: 0xffff_ffff_ff60_0000, physical: .max, size: 0x1000, data: [UInt8](repeating: 0xee, count: 0x1000)),
        .init(virtual: 0xffff_ea00_0000_0000, physical: .max, size: 0x1000, data: [UInt8](repeating: 0xea, count: 0x1000)),
    ]

    /// The LiME image of these ranges of the test memory.
    func lime(_ ranges: [Range<UInt64>]) -> [UInt8] {
        joined(
            ranges.flatMap { range in
                [
                    RecordHeader(compressed: false, start: range.lowerBound, end: range.upperBound - 1).bytes,
                    Array(Self.memory[Int(range.lowerBound)..<Int(range.upperBound)]),
                ]
            })
    }

    @Test func systemRAMThatNoKCoreSegmentMapsIsNamedInTheManifestAndNotZeroFilled() throws {
        let ram = { (range: Range<UInt64>) in
            KCoreFixtureSegment(
                virtual: 0xffff_8880_0000_0000 + range.lowerBound, physical: range.lowerBound, size: UInt64(range.count),
                data: Array(Self.memory[Int(range.lowerBound)..<Int(range.upperBound)]))
        }
        let segments: [KCoreFixtureSegment] =
            [
                // The kernel text, again inside RAM (on a live kernel the same bytes; here others,
                // so that a read through this alias instead of the direct map would show).
                .init(
                    virtual: 0xffff_ffff_8100_0000, physical: 0x20_0000, size: 0x1_0000,
                    data: [UInt8](repeating: 0x7e, count: 0x1_0000))
            ] + Self.unmarkedSegments + [
                ram(0x1000..<0x9_f000),  // whole pages only: 0x9f000-0x9fbff is not in kcore
                ram(0x10_0000..<0x30_0000),
                // A zero-size segment where the missing range is, and a remap of device memory.
                .init(virtual: 0xffff_8880_0030_0000, physical: 0x30_0000, size: 0, data: []),
                .init(
                    virtual: 0xffff_ffff_ff5f_b000, physical: 0xfee0_0000, size: 0x1000,
                    data: [UInt8](repeating: 0xa9, count: 0x1000)),
            ]
        var capture = acquisition(crash: nil, kcore: directory.write("kcore", kcoreImage(segments)), mem: nil)
        capture.liveIOMemPath = directory.write("uneven-iomem", Array(Self.unevenIOMem.utf8))
        var warnings: [String] = []
        let result = try capture.run(warn: { warnings.append($0) })
        let captured: [Range<UInt64>] = [0x1000..<0x9_f000, 0x10_0000..<0x30_0000]
        #expect(result.source == .device(.kcore) && result.capturedRanges == captured)
        // The image holds exactly what kcore maps, from the direct map: nothing zero-filled in the gaps.
        #expect(same(directory.read("image.lime"), lime(captured)))
        let manifest = try Manifest.read(from: directory["image.lime.json"])
        #expect(manifest.ranges.captured == captured.map(Manifest.AddressRange.init))
        #expect(manifest.ranges.notCaptured == [.init(0x9_f000..<0x9_fc00), .init(0x30_0000..<0x40_0000)])
        #expect(manifest.unreadable.isEmpty)
        let expected =
            "1051648 bytes of System RAM are not in the image: /proc/kcore maps no memory at 0x9f000-0x9fbff, 0x300000-0x3fffff"
        #expect(manifest.warnings?.contains { $0.hasPrefix(expected) } == true, "\(manifest.warnings ?? [])")
        #expect(warnings == manifest.warnings ?? [])
    }

    @Test func aKCoreWithNoPhysicalAddressesGivesNoMemoryAndTheNextSourceIsRead() throws {
        // Every segment is marked "no physical address": kcore has no RAM to give, and its
        // vmemmap must not be taken for RAM by guessing a direct map.
        let kcore = directory.write("kcore", kcoreImage(Self.unmarkedSegments))
        let result = try acquisition(crash: nil, kcore: kcore, mem: directory.write("mem", Self.memory)).run()
        #expect(result.source == .device(.mem))
        #expect(result.earlierFailures.last == "/proc/kcore: \(kcore) maps no memory at address 0x1000")
        #expect(same(directory.read("image.lime"), expectedLiME()))
    }

    @Test(
        arguments: [
            // Big-endian ELF64.
            (5, 2, "is not a usable ELF core: not little-endian (EI_DATA 2)"),
            // Neither ELFCLASS32 nor ELFCLASS64.
            (4, 3, "is not a usable ELF core: unknown ELF class 3"),
            // No ELF magic at all.
            (0, 0, "is not a usable ELF core: no ELF magic"),
        ] as [(Int, UInt8, String)])
    func aKCoreThatIsNotLittleEndianELFIsRefusedByPath(field: Int, value: UInt8, expected: String) throws {
        var bytes = kcoreImage(Self.ram, memory: Self.memory)
        bytes[field] = value
        let kcore = directory.write("kcore", bytes)
        // Asked for by --source: the capture fails, and the manifest says why, naming the file.
        var asked = acquisition(crash: nil, kcore: kcore, mem: nil)
        asked.source = .device(.kcore)
        let error = captureError { _ = try asked.run() }
        #expect(error?.side == "source" && error?.description == "\(kcore) \(expected)")
        #expect(try Manifest.read(from: directory["image.lime.json"]).error == "\(kcore) \(expected)")
        #expect(!directory.exists("image.lime"))
        // In AVML's order: the next source is read, and the manifest keeps kcore's error.
        let result = try acquisition(crash: nil, kcore: kcore, mem: directory.write("mem", Self.memory)).run()
        #expect(result.source == .device(.mem) && same(directory.read("image.lime"), expectedLiME()))
        let manifest = try Manifest.read(from: directory["image.lime.json"])
        #expect(manifest.sourceFailures.contains("/proc/kcore: \(kcore) \(expected)"), "\(manifest.sourceFailures)")
    }

    @Test func aBTFKindOfANewerKernelStillCapturesTheImageAndSaysWhy() throws {
        let original = try #require(readWholeFile(Self.symbolFixtures.btf))
        let newer = try #require(btfWithNewerKind(original, kind: 20, typeCount: try BTF(bytes: original).types.count))
        var capture = acquisition(crash: directory.write("crash", Self.memory), kcore: nil, mem: nil)
        capture.symbolsPath = directory["image.lime.isf.json.gz"]
        capture.symbolSources = Self.symbolFixtures
        capture.symbolSources.btf = directory.write("vmlinux.btf", newer.bytes)
        _ = try capture.run()
        #expect(same(directory.read("image.lime"), expectedLiME()))
        #expect(!directory.exists("image.lime.isf.json.gz"))
        let manifest = try Manifest.read(from: directory["image.lime.json"])
        #expect(manifest.exitStatus == 0)
        let entry = try #require(manifest.symbols)
        let reason = try #require(entry.reason)
        #expect(entry.missing == true && entry.path == nil)
        #expect(reason.hasPrefix("\(directory["vmlinux.btf"]): "))
        #expect(reason.contains("type id \(newer.typeID) at byte offset \(hex(UInt64(newer.offset)))"))
        #expect(reason.contains("unknown kind 20") && reason.contains("dwarf2json linux --elf vmlinux"))
        #expect(manifest.warnings?.contains("no symbol table for this kernel: \(reason)") == true)
    }

    @Test func functionsOnlyKallsymsGivesAReasonOrTheBuildsMap() throws {
        let fixtures = String(Self.symbolFixtures.kallsyms?.dropLast("kallsyms".count) ?? "")
        let maps = try TemporaryDirectory()
        var capture = acquisition(crash: directory.write("crash", Self.memory), kcore: nil, mem: nil)
        capture.symbolsPath = directory["image.lime.isf.json.gz"]
        capture.symbolSources = Self.symbolFixtures
        capture.symbolSources.kallsyms = fixtures + "kallsyms-functions-only"
        capture.symbolSources.systemMapDirectory = maps.path
        _ = try capture.run()
        #expect(same(directory.read("image.lime"), expectedLiME()) && !directory.exists("image.lime.isf.json.gz"))
        let missing = try #require(try Manifest.read(from: directory["image.lime.json"]).symbols)
        let reason = try #require(missing.reason)
        #expect(missing.missing == true)
        #expect(reason.contains("lacks init_task, init_mm, init_files, linux_banner") && reason.contains("CONFIG_KALLSYMS_ALL"))
        #expect(reason.contains("cannot read \(maps["System.map-6.1.0-57-amd64"])"))
        // With the build's System.map where acquire looks for it, the table has the map's addresses.
        maps.write("System.map-6.1.0-57-amd64", try #require(readWholeFile(fixtures + "System.map")))
        _ = try capture.run()
        let entry = try #require(try Manifest.read(from: directory["image.lime.json"]).symbols)
        #expect(entry.missing == nil && entry.path == directory["image.lime.isf.json.gz"])
        #expect(entry.systemMap == maps["System.map-6.1.0-57-amd64"] && entry.kaslrOffset == "0x1d000000")
        #expect(entry.notes?.contains { $0.contains("lacks init_task") && $0.contains("CONFIG_KALLSYMS_ALL") } == true)
    }
}
