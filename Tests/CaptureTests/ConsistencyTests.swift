import ImageFormats
import MemorySources
import Synchronization
import TestSupport
import Testing

@testable import Capture
@testable import RecordEngine

/// Memory that a test can change between reads, as a live host's memory changes during a capture.
final class ChangingMemory: MemoryReader {
    let path = "changing-memory"
    private let bytes: Mutex<[UInt8]>
    /// Pages that fail from the next read on.
    private let failing = Mutex<Set<UInt64>>([])

    init(_ bytes: [UInt8]) {
        self.bytes = Mutex(bytes)
    }

    /// Writes `value` into the first byte of the page at `address`.
    func change(page address: UInt64, to value: UInt8) {
        bytes.withLock { $0[Int(address)] = value }
    }

    func breakPage(_ address: UInt64) {
        _ = failing.withLock { $0.insert(address) }
    }

    func read(into buffer: UnsafeMutableRawBufferPointer, at address: UInt64) throws(SourceError) {
        let broken = failing.withLock { set in set.contains { $0 >= address && $0 < address + UInt64(buffer.count) } }
        if broken { throw SourceError(.read(.ioError, address: address, count: buffer.count), path: path) }
        bytes.withLock { bytes in
            bytes.withUnsafeBytes { raw in
                buffer.copyMemory(from: UnsafeRawBufferPointer(rebasing: raw[Int(address)..<Int(address) + buffer.count]))
            }
        }
    }
}

struct ConsistencyTests {
    @Test func theSampleTakesEveryKernelDataPageAndOnePageIn64OfTheRest() {
        let page = PageSample.pageSize
        // Two ranges of 100 and 60 pages; the kernel's data is 5 pages of the first range,
        // one of them (page 64) also a sampling point, so it is counted once, as kernel data.
        let ranges = [0x1000..<0x1000 + 100 * page, 0x100000..<0x100000 + 60 * page]
        let data = [0x1000 + 62 * page..<0x1000 + 66 * page + 10]
        let sample = PageSample(ranges: ranges, kernelData: data)
        #expect(sample.stride == 64)
        let other = zip(sample.pages, sample.regions).filter { $0.1 == .other }.map(\.0)
        let kernel = zip(sample.pages, sample.regions).filter { $0.1 == .kernelData }.map(\.0)
        // Page indices 0, 128 (the second range's 28th page); 64 lies in the kernel's data.
        #expect(other == [0x1000, 0x100000 + 28 * page])
        #expect(kernel == (62...66).map { 0x1000 + $0 * page })
        #expect(sample.pages == sample.pages.sorted())
    }

    @Test func aLargeHostKeepsAtMost65536SampledPages() {
        let sixtyFourGiB: UInt64 = 64 << 30
        let sample = PageSample(ranges: [0..<sixtyFourGiB], kernelData: [])
        #expect(sample.stride == 256)
        #expect(sample.pages.count == 65_536)
        #expect(sample.pages[1] == 256 * PageSample.pageSize)
    }

    @Test func rangesThatAreNotWholePagesAreSampledOnlyInsideWholePages() {
        let sample = PageSample(ranges: [0x800..<0x3000], kernelData: [0x0..<0x800])
        #expect(sample.pages == [0x1000])
        #expect(sample.regions == [.other])
    }

    @Test func aCaptureCountsThePagesThatChangedWhileItRanAndLeavesTheImageAsFirstRead() throws {
        let size = 4 * block
        let raw = memory(size, seed: 23)
        let source = ChangingMemory(raw)
        let ranges = [0..<UInt64(size)]
        let data = [UInt64(block)..<UInt64(block) + 256 * PageSample.pageSize]
        let watch = ConsistencyWatch(source: source, ranges: ranges, kernelData: data)
        let sink = MemorySink()
        let pipeline = RecordPipeline(compressed: false, threads: 2, memoryBudget: RecordPipeline.defaultMemoryBudget)
        _ = try pipeline.run(MemoryBlockProducer(reader: watch, ranges: ranges), to: sink)
        #expect(sink.bytes == referenceLiME(raw))

        // After the last record: 3 kernel-data pages and 2 sampled pages elsewhere change,
        // one more of each becomes unreadable, and an unsampled page changes unseen.
        for index in [0, 100, 255] {
            source.change(page: UInt64(block) + UInt64(index) * PageSample.pageSize, to: ~raw[block + index * 4096])
        }
        source.change(page: 0, to: ~raw[0])
        source.change(page: 64 * PageSample.pageSize, to: ~raw[64 * 4096])
        source.breakPage(128 * PageSample.pageSize)
        source.breakPage(UInt64(block) + 50 * PageSample.pageSize)  // inside a run of kernel data, read page by page then
        source.change(page: 5 * PageSample.pageSize, to: ~raw[5 * 4096])
        let report = watch.reread(threads: 2)

        let kernel = try #require(report.regions.first { $0.name == "kernel data" })
        let other = try #require(report.regions.first { $0.name == "other memory" })
        #expect(kernel == .init(name: "kernel data", pagesSampled: 256, pagesChanged: 3, pagesUnreadable: 1))
        // 4 blocks of 4096 pages, one in 64 sampled, minus those in the kernel's data (4).
        #expect(other == .init(name: "other memory", pagesSampled: 256 - 4, pagesChanged: 2, pagesUnreadable: 1))
        #expect(report.sampleStride == 64)
        #expect(report.ranges.count == 1 && report.ranges[0].start == "0x0" && report.ranges[0].end == hex(UInt64(size) - 1))
        #expect(report.ranges[0].firstRead <= report.ranges[0].lastRead && report.ranges[0].lastRead <= report.rereadAt)
        #expect(
            report.summary.hasPrefix("1.0% of sampled pages changed while memory was read (kernel data 3 of 256, 1 unreadable; "))
    }

    @Test func nothingChangedGivesZero() throws {
        let size = block
        let source = ChangingMemory(memory(size, seed: 5))
        let watch = ConsistencyWatch(source: source, ranges: [0..<UInt64(size)], kernelData: [])
        let pipeline = RecordPipeline(compressed: true, threads: 2, memoryBudget: RecordPipeline.defaultMemoryBudget)
        _ = try pipeline.run(MemoryBlockProducer(reader: watch, ranges: [0..<UInt64(size)]), to: MemorySink())
        let report = watch.reread(threads: 2)
        #expect(report.pagesSampled == 64 && report.pagesChanged == 0)
        #expect(report.regions.map(\.pagesSampled) == [0, 64])
    }

    @Test func pagesThatFailedAtTheFirstReadAreNotSampled() throws {
        let size = block
        let raw = memory(size, seed: 9)
        let source = ChangingMemory(raw)
        source.breakPage(0)
        let watch = ConsistencyWatch(source: source, ranges: [0..<UInt64(size)], kernelData: [])
        let result = try RecordPipeline(compressed: false, threads: 1, memoryBudget: RecordPipeline.defaultMemoryBudget)
            .run(MemoryBlockProducer(reader: watch, ranges: [0..<UInt64(size)]), to: MemorySink())
        #expect(result.unreadable == [0..<4096])
        let report = watch.reread(threads: 2)
        #expect(report.pagesSampled == 63 && report.pagesChanged == 0)
    }

    @Test func kernelDataComesFromIOMem() throws {
        let text = """
            00001000-0009fbff : System RAM
            00100000-1ffdffff : System RAM
              0c000000-0ce00f16 : Kernel code
              0d000000-0d58cfff : Kernel rodata
              0d600000-0d9a72ff : Kernel data
              0ddc3000-0defffff : Kernel bss
            fee00000-fee00fff : Local APIC
            """
        #expect(try IOMem.kernelData(text) == [0x0d60_0000..<0x0d9a_7300, 0x0ddc_3000..<0x0df0_0000])
    }
}

/// The manifest's peak memory comes from VmHWM, in kB, as /proc/PID/status gives it.
struct PeakResidentTests {
    @Test func vmHWMIsReadInBytes() throws {
        let directory = try TemporaryDirectory()
        let status = directory.write(
            "status", Array("Name:\tavml\nVmPeak:\t  200000 kB\nVmHWM:\t    1968 kB\nVmRSS:\t 1000 kB\n".utf8))
        #expect(Manifest.peakResidentBytes(status: status) == 1968 * 1024)
        let odd = directory.write("odd", Array("VmHWM:\t12 MB\n".utf8))
        #expect(Manifest.peakResidentBytes(status: odd) == nil)
        #expect((Manifest.peakResidentBytes() ?? 0) > 1 << 20)
    }
}
