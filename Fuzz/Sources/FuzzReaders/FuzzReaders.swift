import Glibc
import ImageFormats
import KernelSymbols
import MemorySources

// One libFuzzer entry point over every reader of untrusted bytes: raw Snappy
// blocks, framed streams, record headers, whole images (through a file, as
// `avml convert` reads them), /proc/iomem text and kcore ELF headers, and for
// symbol tables: BTF (read, then written out as ISF types), kallsyms or System.map
// text, and the VMCOREINFO note of an ELF core.
// Any crash, overflow trap or sanitizer report is a bug; thrown errors are fine.

private let imagePath = "/dev/shm/avml-fuzz-\(getpid()).img"

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = Array(UnsafeBufferPointer(start: data, count: size))
    guard let selector = bytes.first else { return 0 }
    let input = Array(bytes.dropFirst())
    switch selector % 9 {
    case 0:
        _ = try? Snappy.decompress(input, limit: 1 << 20)
    case 1:
        _ = try? SnappyFraming.decode(input, limit: 1 << 20)
    case 2:
        if input.count >= RecordHeader.size { _ = try? RecordHeader.decode(input) }
    case 3:
        readImage(input)
    case 4:
        _ = try? IOMem.systemRAM(String(decoding: input, as: UTF8.self), path: "fuzz")
    case 5:
        _ = try? KCore.segments(path: "fuzz") { (offset, count) throws(SourceError) in
            guard offset < UInt64(input.count) else { return [] }
            return Array(input[Int(offset)..<min(input.count, Int(offset) + min(count, 1 << 20))])
        }
    case 6:
        if let btf = try? BTF(bytes: input) { _ = try? btf.isfTypes() }
    case 7:
        _ = try? SymbolList(parsing: input, path: "fuzz")
    default:
        _ = try? VMCoreInfo.text { offset, count in
            guard offset < UInt64(input.count) else { return [] }
            return Array(input[Int(offset)..<min(input.count, Int(offset) + min(count, 1 << 20))])
        }
    }
    return 0
}

private func readImage(_ input: [UInt8]) {
    let fd = open(imagePath, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
    guard fd >= 0 else { return }
    input.withUnsafeBytes { _ = write(fd, $0.baseAddress, $0.count) }
    close(fd)
    guard let reader = try? ImageReader(path: imagePath) else { return }
    let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 1 << 16, alignment: 16)
    defer { buffer.deallocate() }
    var records = 0
    while records < 64, (try? reader.nextRecord()) != nil {
        records += 1
        var total = 0
        // Bounded: a hostile header may declare 2^63 bytes.
        while total < 1 << 22, let count = try? reader.readBody(into: buffer), count > 0 {
            total += count
        }
    }
}
