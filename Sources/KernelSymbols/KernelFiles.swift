import Hashing
import SystemPackage

extension KernelSymbols {
    static func readVMCoreInfo(_ path: String) throws -> String? {
        let descriptor = try FileDescriptor.open(path, .readOnly, options: .closeOnExec)
        return try descriptor.closeAfter {
            try VMCoreInfo.text { offset, count in
                var buffer = [UInt8](repeating: 0, count: count)
                let got = try buffer.withUnsafeMutableBytes { try descriptor.readFully(into: $0, atOffset: offset) }
                return Array(buffer.prefix(got))
            }
        }
    }

    /// The whole file, read to its end (/proc and sysfs files report no size).
    static func readFile(_ path: String, limit: Int) throws(SymbolTableError) -> [UInt8] {
        let descriptor: FileDescriptor
        do {
            descriptor = try FileDescriptor.open(path, .readOnly, options: .closeOnExec)
        } catch {
            throw SymbolTableError(.unreadable(path: path, errno: error as? Errno ?? .ioError))
        }
        defer { try? descriptor.close() }
        var bytes = [UInt8](repeating: 0, count: 1 << 16)
        var filled = 0
        while true {
            if filled == bytes.count {
                guard filled <= limit else { throw SymbolTableError(.tooLarge(path: path, limit: limit)) }
                bytes.append(contentsOf: repeatElement(0, count: min(bytes.count, limit + 1 - filled + 1)))
            }
            let count: Int
            do {
                count = try bytes.withUnsafeMutableBytes { raw in
                    try descriptor.read(into: UnsafeMutableRawBufferPointer(rebasing: raw[filled...]), retryOnInterrupt: true)
                }
            } catch {
                throw SymbolTableError(.unreadable(path: path, errno: error as? Errno ?? .ioError))
            }
            if count == 0 { break }
            filled += count
        }
        guard filled <= limit else { throw SymbolTableError(.tooLarge(path: path, limit: limit)) }
        bytes.removeSubrange(filled...)
        return bytes
    }
}

/// Lower-case hex SHA-256.
func sha256Hex(_ bytes: [UInt8]) -> String {
    SHA256.hash(data: bytes).description
}
