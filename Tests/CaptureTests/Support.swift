import Glibc
import ImageFormats
import MemorySources
import Synchronization
import SystemPackage
import TestSupport
import Testing

@testable import Capture
@testable import RecordEngine

let block = RecordPipeline.blockSize

/// Memory-like bytes: zero, text, pointer and random pages, different for each seed.
/// Built page by page from small pools, so tens of MiB take little time in debug builds.
func memory(_ count: Int, seed: UInt64) -> [UInt8] {
    var state = seed &* 0x9E37_79B9_7F4A_7C15 | 1
    func next() -> UInt64 {
        state ^= state << 13
        state ^= state >> 7
        state ^= state << 17
        return state
    }
    let page = 4096
    let pools: [[UInt8]] = (0..<24).map { index in
        (0..<page).map { offset in
            switch index % 3 {
            case 0: return UInt8(truncatingIfNeeded: 0x61 + (offset * 7 + index) % 26)
            case 1: return offset % 8 < 5 ? UInt8(truncatingIfNeeded: (offset + index * 8) >> 3) : 0xff
            default: return UInt8(truncatingIfNeeded: next() >> 24)
            }
        }
    }
    return [UInt8](unsafeUninitializedCapacity: count) { buffer, initialized in
        var offset = 0
        while offset < count {
            let length = min(page, count - offset)
            let choice = Int(next() % 32)
            let target = UnsafeMutableRawBufferPointer(rebasing: UnsafeMutableRawBufferPointer(buffer)[offset..<offset + length])
            if choice >= pools.count {
                target.initializeMemory(as: UInt8.self, repeating: 0)
            } else {
                pools[choice].withUnsafeBytes { target.copyMemory(from: UnsafeRawBufferPointer(rebasing: $0[..<length])) }
                // Make every page distinct, as real memory mostly is.
                target.storeBytes(of: next(), toByteOffset: 0, as: UInt64.self)
            }
            offset += length
        }
        initialized = count
    }
}

/// AVML's blocks of a raw file: 16 MiB from offset 0, all-zero blocks left out.
func avmlBlocks(_ raw: [UInt8]) -> [(start: Int, bytes: [UInt8])] {
    stride(from: 0, to: raw.count, by: block).compactMap { start in
        let slice = raw.withUnsafeBytes { Array(UnsafeRawBufferPointer(rebasing: $0[start..<min(raw.count, start + block)])) }
        return slice.withUnsafeBytes(isAllZero) ? nil : (start, slice)
    }
}

/// AVML's LiME output for a raw file, built independently of the pipeline.
func referenceLiME(_ raw: [UInt8]) -> [UInt8] {
    joined(
        avmlBlocks(raw).flatMap { start, bytes in
            [RecordHeader(compressed: false, start: UInt64(start), end: UInt64(start + bytes.count - 1)).bytes, bytes]
        })
}

/// A memory reader over an array that fails with `errno` at chosen pages.
final class FaultyMemory: MemoryReader {
    let bytes: [UInt8]
    let failing: Set<UInt64>
    let errno: Errno
    private let log = Mutex<[(UInt64, Int)]>([])
    let path = "faulty-memory"

    /// Every read asked for, as (address, count).
    var reads: [(UInt64, Int)] { log.withLock { $0 } }

    init(_ bytes: [UInt8], failingPages: Set<UInt64>, errno: Errno = .ioError) {
        self.bytes = bytes
        self.failing = failingPages
        self.errno = errno
    }

    func read(into buffer: UnsafeMutableRawBufferPointer, at address: UInt64) throws(SourceError) {
        log.withLock { $0.append((address, buffer.count)) }
        let first = address / 4096
        let last = (address + UInt64(buffer.count) - 1) / 4096
        if (first...last).contains(where: failing.contains) {
            throw SourceError(.read(errno, address: address, count: buffer.count), path: path)
        }
        bytes.withUnsafeBytes { raw in
            buffer.copyMemory(from: UnsafeRawBufferPointer(rebasing: raw[Int(address)..<Int(address) + buffer.count]))
        }
    }
}

/// A sink that keeps everything in memory, and records how its lifecycle ended.
final class MemorySink: ImageSink {
    private var parts: [[UInt8]] = []
    private var count = 0
    var failAfter: Int?
    private(set) var finished = false
    private(set) var aborted = false

    func finish() throws { finished = true }
    func abort() throws { aborted = true }

    var bytes: [UInt8] { joined(parts) }

    func write(_ data: UnsafeRawBufferPointer) throws {
        if let failAfter, count + data.count > failAfter {
            throw OutputError(.write, path: "memory-sink", errno: .noSpace, offset: UInt64(count))
        }
        parts.append(
            [UInt8](unsafeUninitializedCapacity: data.count) { buffer, initialized in
                UnsafeMutableRawBufferPointer(buffer).copyMemory(from: data)
                initialized = data.count
            })
        count += data.count
    }
}

/// The `CaptureError` that `body` throws, or nil (recorded as an issue) when it throws nothing or something else.
func captureError(_ body: () throws -> Void, sourceLocation: SourceLocation = #_sourceLocation) -> CaptureError? {
    do {
        try body()
        Issue.record("expected a CaptureError, nothing was thrown", sourceLocation: sourceLocation)
    } catch let error as CaptureError {
        return error
    } catch {
        Issue.record("expected a CaptureError, got \(error)", sourceLocation: sourceLocation)
    }
    return nil
}

extension CaptureError {
    /// Which side failed, for assertions.
    var side: String {
        switch self {
        case .refused: return "refused"
        case .source: return "source"
        case .destination: return "destination"
        case .interrupted: return "interrupted"
        case .resources: return "resources"
        case .incompleteImageLeft: return "incomplete"
        case .manifestNotWritten: return "manifest"
        }
    }

    /// The error inside.
    var cause: (any Error)? {
        switch self {
        case .refused(let error), .source(let error), .destination(let error): return error
        case .interrupted(let error): return error
        case .resources(let failure): return failure
        case .incompleteImageLeft(let cause, _): return cause
        case .manifestNotWritten(_, let cause): return cause
        }
    }
}

/// A compressed image walked with our reader: each record's header and decoded memory.
func decodedRecords(_ path: String) throws -> [(RecordHeader, [UInt8])] {
    let reader = try ImageReader(path: path)
    var records: [(RecordHeader, [UInt8])] = []
    let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 1 << 20, alignment: 16)
    defer { buffer.deallocate() }
    while let record = try reader.nextRecord() {
        var parts: [[UInt8]] = []
        while case let count = try reader.readBody(into: buffer), count > 0 {
            parts.append(Array(UnsafeRawBufferPointer(rebasing: buffer[..<count])))
        }
        records.append((record.header, joined(parts)))
    }
    return records
}

/// Bytes that do not compress (xorshift*), different for each seed.
func noise(_ count: Int, seed: UInt64) -> [UInt8] {
    var state = seed | 1
    var words = [UInt64](repeating: 0, count: (count + 7) / 8)
    for index in words.indices {
        state ^= state << 13
        state ^= state >> 7
        state ^= state << 17
        words[index] = state &* 0x2545_F491_4F6C_DD1D
    }
    return words.withUnsafeBytes { Array($0.prefix(count)) }
}

/// AVML's compressed output for a raw file, built independently of the pipeline:
/// one record per block, each framed whole.
func referenceCompressed(_ raw: [UInt8]) -> [UInt8] {
    joined(
        avmlBlocks(raw).flatMap { start, bytes in
            let framed = SnappyFraming.encode(bytes)
            return [
                RecordHeader(compressed: true, start: UInt64(start), end: UInt64(start + bytes.count - 1)).bytes, framed,
                withUnsafeBytes(of: UInt64(framed.count).littleEndian) { Array($0) },
            ]
        })
}
