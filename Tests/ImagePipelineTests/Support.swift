import Glibc
import ImageFormats
import MemorySources
import SystemPackage
import TestSupport
import Testing

@testable import ImagePipeline

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

/// AVML's LiME output for a raw file, built independently of the pipeline:
/// 16 MiB blocks from offset 0, all-zero blocks left out.
func referenceLiME(_ raw: [UInt8]) -> [UInt8] {
    var parts: [[UInt8]] = []
    var start = 0
    while start < raw.count {
        let end = min(raw.count, start + block)
        let slice = raw.withUnsafeBytes { Array(UnsafeRawBufferPointer(rebasing: $0[start..<end])) }
        if !slice.withUnsafeBytes(isAllZero) {
            parts += [RecordHeader(compressed: false, start: UInt64(start), end: UInt64(end - 1)).bytes, slice]
        }
        start = end
    }
    return joined(parts)
}

/// A memory reader over an array that fails with `errno` at chosen pages.
final class FaultyMemory: MemoryReader {
    let bytes: [UInt8]
    let failing: Set<UInt64>
    let errno: Errno
    var reads: [(UInt64, Int)] = []
    let path = "faulty-memory"

    init(_ bytes: [UInt8], failingPages: Set<UInt64>, errno: Errno = .ioError) {
        self.bytes = bytes
        self.failing = failingPages
        self.errno = errno
    }

    func read(into buffer: UnsafeMutableRawBufferPointer, at address: UInt64) throws(SourceError) {
        reads.append((address, buffer.count))
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

/// A sink that keeps everything in memory.
final class MemorySink: ImageSink {
    private var parts: [[UInt8]] = []
    private var count = 0
    var failAfter: Int?

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
