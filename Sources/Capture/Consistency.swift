import Dispatch
import ImageFormats
import MemorySources
import RecordEngine
import Synchronization

// How much memory changed while it was captured.
//
// A live capture reads memory in address order over seconds to minutes while the host
// keeps running, so an image is not a snapshot: a pointer read early may lead to a page
// rewritten before it was read. To say how much, the capture keeps a CRC-32C of a fixed
// sample of pages as they went into the image (every page of the kernel's own data, and
// one page in 64 of the rest), re-reads exactly those pages from the same source right
// after the last record, and counts the ones that differ. The image is not touched: its
// bytes stay those of the first read.

/// The pages a capture fingerprints: every page of the kernel's data and bss (`Kernel data`
/// and `Kernel bss` in /proc/iomem), and every `stride`-th 4 KiB page of the captured
/// ranges counted in address order from the first, outside the kernel's data. The stride
/// is 64, or larger so that at most 65,536 such pages are kept on a large host.
struct PageSample: Sendable, Equatable {
    /// Where a sampled page lies.
    enum Region: Int, CaseIterable, Sendable {
        case kernelData = 0
        case other = 1

        var name: String { self == .kernelData ? "kernel data" : "other memory" }
    }

    static let pageSize: UInt64 = 4096
    static let minimumStride: UInt64 = 64
    static let maximumOtherPages: UInt64 = 1 << 16

    /// Page addresses, ascending.
    let pages: [UInt64]
    /// Each page's region, by index.
    let regions: [Region]
    let stride: UInt64

    /// - Parameters:
    ///   - ranges: the captured ranges, sorted.
    ///   - kernelData: the kernel's data and bss; their pages inside `ranges` are all sampled.
    init(ranges: [Range<UInt64>], kernelData: [Range<UInt64>]) {
        let size = Self.pageSize
        let whole = ranges.compactMap { range -> Range<UInt64>? in
            let start = (range.lowerBound + size - 1) / size * size
            let end = range.upperBound / size * size
            return start < end ? start..<end : nil
        }
        let data = IOMem.intersect(
            IOMem.merge(kernelData.map { $0.lowerBound / size * size..<($0.upperBound + size - 1) / size * size }), with: whole)
        let total = whole.reduce(UInt64(0)) { $0 + UInt64($1.count) / size }
        stride = max(Self.minimumStride, (total + Self.maximumOtherPages - 1) / Self.maximumOtherPages)
        var sampled: [(address: UInt64, region: Region)] = []
        for range in data {
            for address in Swift.stride(from: range.lowerBound, to: range.upperBound, by: Int(size)) {
                sampled.append((address, .kernelData))
            }
        }
        var dataIndex = 0
        var counted: UInt64 = 0  // pages of `whole` below the current range
        for range in whole {
            let count = UInt64(range.count) / size
            var index = (counted + stride - 1) / stride * stride
            while index < counted + count {
                let address = range.lowerBound + (index - counted) * size
                while dataIndex < data.count && data[dataIndex].upperBound <= address { dataIndex += 1 }
                if dataIndex == data.count || !data[dataIndex].contains(address) { sampled.append((address, .other)) }
                index += stride
            }
            counted += count
        }
        sampled.sort { $0.address < $1.address }
        pages = sampled.map(\.address)
        regions = sampled.map(\.region)
    }

    /// The index of the first sampled page at or above `address`.
    func firstIndex(atOrAbove address: UInt64) -> Int {
        var low = 0
        var high = pages.count
        while low < high {
            let middle = (low + high) / 2
            if pages[middle] < address { low = middle + 1 } else { high = middle }
        }
        return low
    }
}

/// What changed while a capture read memory: for the manifest, the summary and `avml info`.
public struct ConsistencyReport: Codable, Sendable, Equatable {
    public struct Region: Codable, Sendable, Equatable {
        public var name: String
        /// Pages fingerprinted as they went into the image.
        public var pagesSampled: Int
        /// Of those, pages whose re-read content differs.
        public var pagesChanged: Int
        /// Of those, pages that could not be read again (counted apart, not as changed).
        public var pagesUnreadable: Int

        enum CodingKeys: String, CodingKey {
            case name
            case pagesSampled = "pages_sampled"
            case pagesChanged = "pages_changed"
            case pagesUnreadable = "pages_unreadable"
        }
    }

    /// When a captured range was read, in seconds after reading began.
    public struct RangeTiming: Codable, Sendable, Equatable {
        public var start: String
        public var end: String
        public var firstRead: Double
        public var lastRead: Double

        enum CodingKeys: String, CodingKey {
            case start, end
            case firstRead = "first_read"
            case lastRead = "last_read"
        }
    }

    public var method: String
    /// One page in this many of the memory outside the kernel's data is sampled.
    public var sampleStride: UInt64
    public var regions: [Region]
    /// Seconds after reading began when the re-read began, and how long it took.
    public var rereadAt: Double
    public var rereadSeconds: Double
    public var ranges: [RangeTiming]

    enum CodingKeys: String, CodingKey {
        case method, regions, ranges
        case sampleStride = "sample_stride_pages"
        case rereadAt = "reread_at"
        case rereadSeconds = "reread_seconds"
    }

    static let method =
        "CRC-32C of each sampled 4 KiB page as it went into the image, against the same page re-read from the same "
        + "source right after the last record; times in seconds after reading began"

    public var pagesSampled: Int { regions.reduce(0) { $0 + $1.pagesSampled } }
    public var pagesChanged: Int { regions.reduce(0) { $0 + $1.pagesChanged } }

    /// One line for the end-of-capture summary and `avml info`.
    public var summary: String {
        let share = pagesSampled == 0 ? 0 : Double(pagesChanged) / Double(pagesSampled) * 100
        let parts = regions.map { region in
            var text = "\(region.name) \(region.pagesChanged) of \(region.pagesSampled)"
            if region.pagesUnreadable > 0 { text += ", \(region.pagesUnreadable) unreadable" }
            return text
        }
        return "\(formatDecimal(share, places: 1))% of sampled pages changed while memory was read ("
            + parts.joined(separator: "; ") + "), re-read \(formatDecimal(rereadAt, places: 1)) s after reading began"
    }
}

/// A memory source that fingerprints the sampled pages as they are read, and notes when
/// each captured range was read; `reread()` then counts the pages that changed since.
final class ConsistencyWatch: MemoryReader {
    private struct State {
        var fingerprints: [UInt32]
        var fingerprinted: [Bool]
        var firstRead: [Double]
        var lastRead: [Double]
    }

    let source: MemoryReader
    let sample: PageSample
    let ranges: [Range<UInt64>]
    private let began = monotonicSeconds()
    private let state: Mutex<State>

    var path: String { source.path }

    init(source: MemoryReader, ranges: [Range<UInt64>], kernelData: [Range<UInt64>]) {
        self.source = source
        self.ranges = ranges
        sample = PageSample(ranges: ranges, kernelData: kernelData)
        state = Mutex(
            State(
                fingerprints: Array(repeating: 0, count: sample.pages.count),
                fingerprinted: Array(repeating: false, count: sample.pages.count),
                firstRead: Array(repeating: .infinity, count: ranges.count),
                lastRead: Array(repeating: 0, count: ranges.count)))
    }

    /// Reads through to the source, then fingerprints the sampled pages the read holds whole.
    /// A read that fails records nothing: its pages are read again one by one, or zero-filled.
    func read(into buffer: UnsafeMutableRawBufferPointer, at address: UInt64) throws(SourceError) {
        try source.read(into: buffer, at: address)
        let end = address + UInt64(buffer.count)
        let now = monotonicSeconds() - began
        let first = sample.firstIndex(atOrAbove: address)
        let rangeIndex = ranges.lastIndex { $0.lowerBound <= address }
        // Fingerprinted outside the lock, so that the workers' reads do not wait on each other.
        var fingerprints: [UInt32] = []
        var index = first
        while index < sample.pages.count && sample.pages[index] + PageSample.pageSize <= end {
            let offset = Int(sample.pages[index] - address)
            fingerprints.append(
                CRC32C.checksum(UnsafeRawBufferPointer(rebasing: buffer[offset..<offset + Int(PageSample.pageSize)])))
            index += 1
        }
        state.withLock { state in
            if let rangeIndex {
                state.firstRead[rangeIndex] = min(state.firstRead[rangeIndex], now)
                state.lastRead[rangeIndex] = max(state.lastRead[rangeIndex], now)
            }
            for (position, fingerprint) in fingerprints.enumerated() {
                state.fingerprints[first + position] = fingerprint
                state.fingerprinted[first + position] = true
            }
        }
    }

    /// Reads every fingerprinted page again and counts those that differ, on `threads`
    /// threads: runs of adjacent pages (the kernel's data) up to 256 KiB per read, since each
    /// read of /proc/kcore costs far more than its bytes. Never throws: a run that fails is
    /// read again page by page, and a page that cannot be read again is counted as such.
    func reread(threads: Int) -> ConsistencyReport {
        let at = monotonicSeconds() - began
        let (fingerprints, fingerprinted, firstRead, lastRead) = state.withLock {
            ($0.fingerprints, $0.fingerprinted, $0.firstRead, $0.lastRead)
        }
        let pages = sample.pages
        let runs = Self.runs(of: pages, where: fingerprinted)
        let empty = PageSample.Region.allCases.map {
            ConsistencyReport.Region(name: $0.name, pagesSampled: 0, pagesChanged: 0, pagesUnreadable: 0)
        }
        let total = Mutex(empty)
        let workers = max(1, min(threads, runs.count))
        DispatchQueue.concurrentPerform(iterations: workers) { worker in
            var regions = empty
            let pageSize = Int(PageSample.pageSize)
            withUnsafeTemporaryAllocation(byteCount: Self.rereadPages * pageSize, alignment: 4096) { buffer in
                for run in Swift.stride(from: worker, to: runs.count, by: workers).map({ runs[$0] }) {
                    let bytes = UnsafeMutableRawBufferPointer(rebasing: buffer[..<(run.count * pageSize)])
                    let wholeRun = (try? source.read(into: bytes, at: pages[run.lowerBound])) != nil
                    for page in run {
                        let region = sample.regions[page].rawValue
                        regions[region].pagesSampled += 1
                        let offset = (page - run.lowerBound) * pageSize
                        let copy = UnsafeMutableRawBufferPointer(rebasing: bytes[offset..<offset + pageSize])
                        if !wholeRun && (try? source.read(into: copy, at: pages[page])) == nil {
                            regions[region].pagesUnreadable += 1
                        } else if CRC32C.checksum(UnsafeRawBufferPointer(copy)) != fingerprints[page] {
                            regions[region].pagesChanged += 1
                        }
                    }
                }
            }
            total.withLock { total in
                for region in total.indices {
                    total[region].pagesSampled += regions[region].pagesSampled
                    total[region].pagesChanged += regions[region].pagesChanged
                    total[region].pagesUnreadable += regions[region].pagesUnreadable
                }
            }
        }
        let timings = ranges.indices.map { index in
            ConsistencyReport.RangeTiming(
                start: hex(ranges[index].lowerBound), end: hex(ranges[index].upperBound - 1),
                firstRead: milliseconds(firstRead[index].isFinite ? firstRead[index] : 0), lastRead: milliseconds(lastRead[index])
            )
        }
        return ConsistencyReport(
            method: ConsistencyReport.method, sampleStride: sample.stride, regions: total.withLock { $0 },
            rereadAt: milliseconds(at), rereadSeconds: milliseconds(monotonicSeconds() - began - at), ranges: timings)
    }

    /// Pages re-read at most per read: 256 KiB, each re-reading thread's buffer.
    static let rereadPages = 64

    /// The fingerprinted pages as runs of adjacent ones, each at most `rereadPages` long.
    private static func runs(of pages: [UInt64], where fingerprinted: [Bool]) -> [Range<Int>] {
        var runs: [Range<Int>] = []
        var index = 0
        while index < pages.count {
            guard fingerprinted[index] else {
                index += 1
                continue
            }
            var end = index + 1
            while end < pages.count && end - index < rereadPages && fingerprinted[end]
                && pages[end] == pages[end - 1] + PageSample.pageSize
            {
                end += 1
            }
            runs.append(index..<end)
            index = end
        }
        return runs
    }

}

/// Seconds to the millisecond: enough for the manifest's times, and readable.
func milliseconds(_ seconds: Double) -> Double {
    (seconds * 1000).rounded() / 1000
}
