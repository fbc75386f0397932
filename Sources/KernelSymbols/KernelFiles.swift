import Hashing
import ImageFormats
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
        let bytes: [UInt8]
        do {
            bytes = try FileDescriptor.readFile(path, limit: limit + 1)
        } catch {
            throw SymbolTableError(.unreadable(path: path, errno: error))
        }
        guard bytes.count <= limit else { throw SymbolTableError(.tooLarge(path: path, limit: limit)) }
        return bytes
    }
}

/// Lower-case hex SHA-256.
func sha256Hex(_ bytes: [UInt8]) -> String {
    SHA256.hash(data: bytes).description
}
