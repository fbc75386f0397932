// Times the Swift Snappy codec the way scripts/bench.py times Google's: every
// 64 KiB chunk of a file compressed into one reused buffer, then decompressed,
// several rounds, reporting the best round as JSON on stdout.
//
//   avml-bench FILE [ROUNDS]
import Glibc
import ImageFormats

func now() -> Double {
    var time = timespec()
    clock_gettime(CLOCK_MONOTONIC, &time)
    return Double(time.tv_sec) + Double(time.tv_nsec) / 1e9
}

func fail(_ message: String) -> Never {
    var text = "avml-bench: " + message + "\n"
    text.withUTF8 { _ = write(2, $0.baseAddress, $0.count) }
    exit(1)
}

func readFile(_ path: String) -> [UInt8]? {
    guard let file = fopen(path, "rb") else { return nil }
    defer { fclose(file) }
    fseek(file, 0, SEEK_END)
    let size = ftell(file)
    fseek(file, 0, SEEK_SET)
    guard size >= 0 else { return nil }
    return [UInt8](unsafeUninitializedCapacity: size) { buffer, count in
        count = fread(buffer.baseAddress, 1, size, file)
    }
}

let arguments = CommandLine.arguments
guard arguments.count >= 2, let input = readFile(arguments[1]) else {
    fail("usage: avml-bench FILE [ROUNDS]")
}
let rounds = arguments.count > 2 ? Int(arguments[2]) ?? 3 : 3
let chunk = 1 << 16
let chunks = (input.count + chunk - 1) / chunk
let compressor = SnappyCompressor()
let slot = Snappy.maxCompressedLength(chunk)
let compressed = UnsafeMutableRawBufferPointer.allocate(byteCount: chunks * slot, alignment: 64)
let restored = UnsafeMutableRawBufferPointer.allocate(byteCount: input.count + chunk, alignment: 64)
var sizes = [Int](repeating: 0, count: chunks)
var bestCompress = Double.infinity
var bestDecompress = Double.infinity

input.withUnsafeBytes { source in
    for _ in 0..<rounds {
        let start = now()
        for index in 0..<chunks {
            let piece = UnsafeRawBufferPointer(rebasing: source[index * chunk..<min(source.count, (index + 1) * chunk)])
            sizes[index] = compressor.compress(
                piece, into: UnsafeMutableRawBufferPointer(rebasing: compressed[index * slot..<(index + 1) * slot]))
        }
        bestCompress = min(bestCompress, now() - start)
        let decodeStart = now()
        for index in 0..<chunks {
            let block = UnsafeRawBufferPointer(rebasing: compressed[index * slot..<index * slot + sizes[index]])
            let target = UnsafeMutableRawBufferPointer(rebasing: restored[index * chunk..<(index + 1) * chunk])
            guard (try? Snappy.decompress(block, into: target)) != nil else { fail("chunk \(index) does not decode") }
        }
        bestDecompress = min(bestDecompress, now() - decodeStart)
    }
    guard
        let restoredBase = restored.baseAddress, let sourceBase = source.baseAddress,
        memcmp(restoredBase, sourceBase, source.count) == 0
    else { fail("round trip differs") }
}
let total = sizes.reduce(0, +)
let megabytes = Double(input.count) / 1e6
print(
    """
    {"codec": "swift-avml", "input_bytes": \(input.count), "compressed_bytes": \(total), \
    "ratio": \(Double(total) / Double(input.count)), "compress_MBps": \(megabytes / bestCompress), \
    "decompress_MBps": \(megabytes / bestDecompress)}
    """)
