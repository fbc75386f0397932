import Glibc
import Hashing
import ImageFormats
import KernelSymbols
import MemorySources
import TestSupport
import Testing

@testable import Capture
@testable import RecordEngine

/// A little-endian ELF64 core with one PT_LOAD per RAM range, data at 0x4000 onward.
func kcoreImage(_ ram: [Range<UInt64>], memory: [UInt8]) -> [UInt8] {
    kcoreImage(
        ram.map { range in
            KCoreFixtureSegment(
                virtual: 0xffff_8880_0000_0000 + range.lowerBound, physical: range.lowerBound, size: UInt64(range.count),
                data: Array(memory[Int(range.lowerBound)..<Int(range.upperBound)]))
        })
}

/// One PT_LOAD of a kcore fixture.
struct KCoreFixtureSegment {
    var virtual: UInt64
    /// p_paddr as the kernel writes it: all ones for "no physical address" (vmalloc, modules, vmemmap).
    var physical: UInt64
    var size: UInt64
    /// The segment's bytes in the file; nil for none, as for vmalloc's terabytes (the offset
    /// then lies past the end of the file, as in a real kcore, and is never read).
    var data: [UInt8]?
}

/// A little-endian ELF64 core with these PT_LOADs in this order, their data from 0x4000 onward.
func kcoreImage(_ segments: [KCoreFixtureSegment]) -> [UInt8] {
    func le(_ value: UInt64, _ width: Int) -> [UInt8] { (0..<width).map { UInt8(truncatingIfNeeded: value >> (8 * UInt64($0))) } }
    var header = [0x7f, 0x45, 0x4c, 0x46, 2, 1, 1] + [UInt8](repeating: 0, count: 9)
    header += le(4, 2) + le(62, 2) + le(1, 4) + le(0, 8) + le(64, 8) + le(0, 8) + le(0, 4) + le(64, 2) + le(56, 2)
    header += le(UInt64(segments.count), 2) + le(0, 6)
    var offset: UInt64 = 0x4000
    var data: [UInt8] = []
    for segment in segments {
        let fileOffset = segment.data == nil ? 0x4900_0000_2000 : offset
        header += le(1, 4) + le(7, 4) + le(fileOffset, 8) + le(segment.virtual, 8) + le(segment.physical, 8)
        header += le(segment.size, 8) + le(segment.size, 8) + le(4096, 8)
        if let bytes = segment.data {
            data += bytes
            offset += UInt64(bytes.count)
        }
    }
    return header + [UInt8](repeating: 0, count: 0x4000 - header.count) + data
}

struct AcquisitionTests {
    let directory: TemporaryDirectory

    init() throws {
        directory = try TemporaryDirectory()
    }
    static let memory = CaptureTests.memory(0x40_0000, seed: 21)
    static let ram: [Range<UInt64>] = [0x1000..<0x9f000, 0x10_0000..<0x30_0000]

    static let iomem =
        "00000000-00000fff : Reserved\n00001000-0009efff : System RAM\n000a0000-000fffff : PCI Bus\n00100000-002fffff : System RAM\n  00200000-0020ffff : Kernel code\n"

    /// A capture of the test's System RAM from the given device files (nil: missing), planned from /proc/iomem's stand-in.
    func acquisition(
        crash: String?, kcore: String?, mem: String?, destination: MemoryCapture.Destination? = nil
    ) -> MemoryCapture {
        let iomem = directory.write("iomem", Array(Self.iomem.utf8))
        var capture = MemoryCapture(
            destination: destination ?? .file(directory["image.lime"]), compressed: false, threads: 2,
            manifestPath: directory["image.lime.json"])
        capture.liveIOMemPath = iomem
        capture.devicePaths = [
            .crash: crash ?? directory["no-crash"], .kcore: kcore ?? directory["no-kcore"], .mem: mem ?? directory["no-mem"],
        ]
        return capture
    }

    /// The LiME image of System RAM, built independently of the pipeline.
    func expectedLiME() -> [UInt8] {
        joined(
            Self.ram.flatMap { range in
                [
                    RecordHeader(compressed: false, start: range.lowerBound, end: range.upperBound - 1).bytes,
                    Array(Self.memory[Int(range.lowerBound)..<Int(range.upperBound)]),
                ]
            })
    }

    @Test func fallsBackFromCrashToKCore() throws {
        let kcore = directory.write("kcore", kcoreImage(Self.ram, memory: Self.memory))
        let mem = directory.write("mem", Self.memory)
        let result = try acquisition(crash: nil, kcore: kcore, mem: mem).run()
        #expect(result.source == .device(.kcore))
        #expect(result.earlierFailures.count == 1 && result.earlierFailures[0].hasPrefix("/dev/crash"))
        #expect(result.plan.ranges == Self.ram && result.capturedRanges == Self.ram)
        #expect(same(directory.read("image.lime"), expectedLiME()))
    }

    @Test func crashComesFirstAndCapturesPartialPages() throws {
        let crash = directory.write("crash", Self.memory)
        let result = try acquisition(crash: crash, kcore: nil, mem: nil).run()
        #expect(result.source == .device(.crash))
        #expect(same(directory.read("image.lime"), expectedLiME()))
    }

    @Test func aLockedDownKCoreFallsBackToMem() throws {
        let kcore = directory.write("kcore", [])
        let mem = directory.write("mem", Self.memory)
        let result = try acquisition(crash: nil, kcore: kcore, mem: mem).run()
        #expect(result.source == .device(.mem))
        #expect(result.earlierFailures.count == 2)
        #expect(result.earlierFailures[1].contains("locked down or unavailable"))
        #expect(same(directory.read("image.lime"), expectedLiME()))
    }

    @Test func aSourceThatFailsMidwayIsTruncatedBeforeTheNext() throws {
        // crash is too short: it fails after writing the first range; kcore then starts over.
        let crash = directory.write("crash", Array(Self.memory.prefix(0x20_0000)))
        let kcore = directory.write("kcore", kcoreImage(Self.ram, memory: Self.memory))
        let result = try acquisition(crash: crash, kcore: kcore, mem: nil).run()
        #expect(result.source == .device(.kcore))
        #expect(same(directory.read("image.lime"), expectedLiME()))
    }

    @Test func whenEverySourceFailsEachErrorIsKeptInOrder() throws {
        let error = captureError { _ = try acquisition(crash: nil, kcore: nil, mem: nil).run() }
        let all = try #require(error?.cause as? AllSourcesFailed)
        #expect(error?.side == "source")
        #expect(all.failures.map(\.source) == [.device(.crash), .device(.kcore), .device(.mem)])
        #expect(all.description.contains("no-crash") && all.description.contains("no-mem"))
        #expect(!directory.exists("image.lime"))
        // The manifest records the failure, each source's error included.
        let manifest = try Manifest.read(from: directory["image.lime.json"])
        #expect(manifest.exitStatus == 1 && manifest.sourceFailures.count == 3 && manifest.sha256 == nil)
    }

    @Test func streamsProbeKCoreFirstAndNeverRestart() throws {
        let crash = directory.write("crash", Self.memory)
        let kcore = directory.write("kcore", kcoreImage(Self.ram, memory: Self.memory))
        let sink = MemorySink()
        let result = try acquisition(crash: crash, kcore: kcore, mem: nil, destination: .stream(name: "test") { _ in sink }).run()
        #expect(result.source == .device(.kcore))
        #expect(same(sink.bytes, expectedLiME()))
        #expect(sink.finished && !sink.aborted)
    }

    @Test func aStreamThatFailsIsAbortedAndBlamedOnTheDestination() throws {
        let kcore = directory.write("kcore", kcoreImage(Self.ram, memory: Self.memory))
        let sink = MemorySink()
        sink.failAfter = 0x10_0000
        let error = captureError {
            _ = try acquisition(crash: nil, kcore: kcore, mem: nil, destination: .stream(name: "test") { _ in sink }).run()
        }
        #expect(error?.side == "destination" && error?.cause is OutputError)
        #expect(sink.aborted && !sink.finished)
    }

    @Test func diskUsageIsCheckedBeforeAnythingIsWritten() {
        var limited = acquisition(crash: directory.write("crash", Self.memory), kcore: nil, mem: nil)
        limited.diskUsage = DiskUsageLimit(maxMiB: 1)
        let error = captureError { _ = try limited.run() }
        #expect(error?.side == "refused" && error?.cause is SourceError)
        #expect(!directory.exists("image.lime"))
    }

    @Test func aSavedMapIsCutDownToTheLiveSystemRAM() throws {
        // The device ends at 3 MiB: a read of the saved map's 3-4 MiB would fail the capture.
        let crash = directory.write("crash", Array(Self.memory.prefix(0x30_0000)))
        // The saved map calls the PCI hole (0xa0000-0xfffff) and 0x300000-0x3fffff RAM; the live map does not.
        let saved = directory.write(
            "saved-iomem",
            Array("00001000-0009efff : System RAM\n000a0000-000fffff : System RAM\n00100000-003fffff : System RAM\n".utf8))
        var capture = acquisition(crash: crash, kcore: nil, mem: nil)
        capture.iomemPath = saved
        var warnings: [String] = []
        let result = try capture.run(warn: { warnings.append($0) })
        #expect(result.plan.ranges == Self.ram)
        #expect(result.plan.dropped == [0xa_0000..<0x10_0000, 0x30_0000..<0x40_0000])
        #expect(warnings.contains { $0.contains("2 ranges") && $0.contains("not System RAM on this host") })
        #expect(same(directory.read("image.lime"), expectedLiME()))
        let manifest = try Manifest.read(from: directory["image.lime.json"])
        #expect(manifest.ranges.dropped == [.init(0xa_0000..<0x10_0000), .init(0x30_0000..<0x40_0000)])
    }

    @Test func aManifestThatNamesTheImageIsRefusedBeforeAnythingHappens() throws {
        let crash = directory.write("crash", Self.memory)
        directory.write("old.lime", [1, 2, 3])
        link(directory["old.lime"], directory["other-name.lime"])
        for (image, manifest) in [
            ("image.lime", "image.lime"),  // the same path
            ("image.lime", "./image.lime"),  // another spelling
            ("image.lime", "sub/../image.lime"),  // through a directory
            ("old.lime", "other-name.lime"),  // a hard link
        ] {
            mkdir(directory["sub"], 0o700)
            var capture = acquisition(crash: crash, kcore: nil, mem: nil, destination: .file(directory[image]))
            capture.manifestPath = manifest.hasPrefix("./") ? directory.path + "/" + manifest : directory[manifest]
            let error = captureError { _ = try capture.run() }
            #expect(error?.side == "refused" && error?.cause is EvidenceRefusal, "\(image) / \(manifest)")
        }
        #expect(!directory.exists("image.lime"))
        #expect(directory.read("old.lime") == [1, 2, 3])
    }

    @Test func aManifestPathHoldingAnImageIsNeverTruncated() throws {
        let crash = directory.write("crash", Self.memory)
        let evidence = expectedLiME()
        directory.write("evidence.lime", evidence)
        var capture = acquisition(crash: crash, kcore: nil, mem: nil)
        capture.manifestPath = directory["evidence.lime"]
        let error = captureError { _ = try capture.run() }
        #expect(error?.side == "refused")
        #expect(same(directory.read("evidence.lime"), evidence))
        #expect(!directory.exists("image.lime"))
    }

    /// The symbol-table fixtures of KernelSymbolsTests: pahole's BTF of a small C file, its kallsyms and banner.
    static let symbolFixtures: SymbolSources = {
        let tests = String(#filePath).split(separator: "/").dropLast(2).joined(separator: "/")
        let fixtures = "/\(tests)/KernelSymbolsTests/Fixtures/"
        return SymbolSources(btf: fixtures + "layout.btf", kallsyms: fixtures + "kallsyms", banner: fixtures + "version")
    }()

    @Test func theSymbolTableIsWrittenBeforeMemoryIsRead() throws {
        // No source works, so the capture fails after the table was taken: it describes the kernel at the start.
        var capture = acquisition(crash: nil, kcore: nil, mem: nil)
        capture.symbolsPath = directory["image.lime.isf.json.gz"]
        capture.symbolSources = Self.symbolFixtures
        #expect(captureError { _ = try capture.run() }?.side == "source")
        let table = try #require(directory.read("image.lime.isf.json.gz"))
        #expect(table.starts(with: [0x1f, 0x8b]))
        let entry = try #require(try Manifest.read(from: directory["image.lime.json"]).symbols)
        #expect(entry.path == directory["image.lime.isf.json.gz"] && entry.size == UInt64(table.count))
        #expect(entry.sha256 == SHA256.hash(data: table).description)
        #expect(entry.banner?.hasPrefix("Linux version 6.1.0-57-amd64") == true && entry.missing == nil)
    }

    @Test func noSymbolTableNeverFailsTheCaptureAndSaysWhy() throws {
        var capture = acquisition(crash: directory.write("crash", Self.memory), kcore: nil, mem: nil)
        capture.symbolsPath = directory["image.lime.isf.json.gz"]
        capture.symbolSources = SymbolSources(btf: directory["no-btf"], kallsyms: nil, banner: directory["no-version"])
        var warnings: [String] = []
        _ = try capture.run(warn: { warnings.append($0) })
        #expect(same(directory.read("image.lime"), expectedLiME()))
        #expect(!directory.exists("image.lime.isf.json.gz"))
        #expect(warnings.contains { $0.hasPrefix("no symbol table for this kernel") })
        let entry = try #require(try Manifest.read(from: directory["image.lime.json"]).symbols)
        #expect(entry.missing == true && entry.reason?.isEmpty == false && entry.path == nil)
    }

    /// Over an existing file the table is whole before the file is touched: one that fails leaves an earlier table be.
    @Test func aTableThatFailsLeavesTheFileItWouldReplace() throws {
        let earlier = directory.write("earlier.isf.json.gz", Array("an earlier table".utf8))
        let sources = SymbolSources(btf: directory["no-btf"], kallsyms: nil, banner: directory["no-version"])
        do {
            _ = try makeSymbolTable(from: sources, at: earlier)
            Issue.record("a table was made from missing files")
        } catch {
            guard case .source(_ as SymbolTableError) = error else { throw error }
        }
        #expect(directory.read("earlier.isf.json.gz") == Array("an earlier table".utf8))
    }

    /// A new file is written as the table is made; over an existing one the table is held
    /// until whole: the same table either way.
    @Test func aTableIsTheSameWrittenNewOrOverAnEarlierFile() throws {
        let new = try makeSymbolTable(from: Self.symbolFixtures, at: directory["new.isf.json.gz"])
        let earlier = directory.write("earlier.isf.json.gz", Array("an earlier table".utf8))
        let replaced = try makeSymbolTable(from: Self.symbolFixtures, at: earlier)
        let bytes = try #require(directory.read("new.isf.json.gz"))
        #expect(new == replaced && bytes.count == new.size && bytes.starts(with: [0x1f, 0x8b]))
        #expect(directory.read("earlier.isf.json.gz") == bytes)
    }

    @Test func aSymbolTablePathThatNamesTheImageOrTheManifestIsRefused() throws {
        for name in ["image.lime", "image.lime.json"] {
            var capture = acquisition(crash: directory.write("crash", Self.memory), kcore: nil, mem: nil)
            capture.symbolsPath = directory[name]
            capture.symbolSources = Self.symbolFixtures
            let error = captureError { _ = try capture.run() }
            #expect(error?.side == "refused" && error?.cause is EvidenceRefusal, "\(name)")
            #expect(!directory.exists("image.lime") && !directory.exists("image.lime.json"))
        }
    }

    @Test func symbolTablesGoBesideTheImageOrBesideAStreamsManifest() {
        #expect(MemoryCapture.defaultSymbolsPath(image: "/x/mem.lime", manifest: "/x/mem.lime.json") == "/x/mem.lime.isf.json.gz")
        #expect(MemoryCapture.defaultSymbolsPath(image: "-", manifest: "avml-h-T.json") == "avml-h-T.isf.json.gz")
        #expect(MemoryCapture.defaultSymbolsPath(image: "/dev/stdout", manifest: "m.json") == "m.isf.json.gz")
    }

    @Test func aRawFileSourceCoversTheWholeFileWithoutIOMem() throws {
        let raw = directory.write("snapshot.raw", Array(Self.memory.prefix(0x10_0000)))
        var acquisition = MemoryCapture(
            destination: .file(directory["out.avml"]), compressed: true, source: .rawFile(raw), threads: 2,
            manifestPath: directory["out.avml.json"])
        acquisition.devicePaths = [:]
        let result = try acquisition.run()
        #expect(result.plan.ranges == [0..<0x10_0000])
        _ = try Conversion(
            source: directory["out.avml"], sourceFormat: .limeCompressed, destination: directory["out.raw"], format: .raw,
            threads: 1
        ).run()
        #expect(same(directory.read("out.raw"), Array(Self.memory.prefix(0x10_0000))))
    }

    /// Compressed captures cut records every 1 MiB (so the blocks held for joining stay small
    /// on the examined host), LiME captures every 16 MiB as AVML; the manifest says which.
    @Test func compressedCapturesCutRecordsEveryMebibyte() throws {
        var memory = CaptureTests.memory(0x58_0000, seed: 5)
        memory.replaceSubrange(0x20_0000..<0x30_0000, with: [UInt8](repeating: 0, count: 0x10_0000))
        let raw = directory.write("cut.raw", memory)
        for compressed in [true, false] {
            let image = directory[compressed ? "cut.avml" : "cut.lime"]
            var acquisition = MemoryCapture(
                destination: .file(image), compressed: compressed, source: .rawFile(raw), threads: 2,
                manifestPath: image + ".json")
            acquisition.devicePaths = [:]
            acquisition.symbolsPath = nil
            _ = try acquisition.run()
            let manifest = try Manifest.read(from: image + ".json")
            let headers = try decodedRecords(image).map(\.0)
            if compressed {
                // Six blocks from 0, the third all zeros and skipped.
                #expect(headers.map(\.start) == [0, 0x10_0000, 0x30_0000, 0x40_0000, 0x50_0000])
                #expect(headers.last?.end == 0x57_ffff)
                #expect(manifest.recordBlockBytes == 1 << 20 && manifest.zeroBlocksSkipped == 1)
            } else {
                #expect(headers.map(\.start) == [0] && headers.first?.end == 0x57_ffff)
                #expect(manifest.recordBlockBytes == 16 << 20 && manifest.zeroBlocksSkipped == 0)
            }
        }
    }

    @Test func sourceArgumentsResolveToDevices() {
        #expect(SourceSpecification(argument: "/dev/crash") == .device(.crash))
        #expect(SourceSpecification(argument: "/proc/kcore") == .device(.kcore))
        #expect(SourceSpecification(argument: "/dev/mem") == .device(.mem))
        #expect(SourceSpecification(argument: "memory.raw") == .rawFile("memory.raw"))
    }
}
