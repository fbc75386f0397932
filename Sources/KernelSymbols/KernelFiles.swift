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

extension KernelSymbols {
    /// `path` opened to read, or why not (the errno).
    static func openForReading(_ path: String) throws(SymbolTableError) -> FileDescriptor {
        do {
            return try FileDescriptor.open(FilePath(path), .readOnly, options: .closeOnExec)
        } catch {
            throw SymbolTableError(.unreadable(path: path, errno: error as? Errno ?? .ioError))
        }
    }

    /// kallsyms or a System.map, parsed as it is read, 256 KiB at a time: its text (megabytes)
    /// is never whole in memory, since on the examined host every page filled overwrites evidence.
    ///
    /// - Returns: the symbols and the SHA-256 of the file as read.
    /// - Throws: `SymbolTableError`: `.unreadable`, `.tooLarge`, or `.badSymbolFile` naming the line.
    static func readSymbolFile(_ path: String, limit: Int) throws(SymbolTableError) -> (list: SymbolList, sha256: String) {
        let descriptor = try openForReading(path)
        defer { try? descriptor.close() }
        var hash = SHA256()
        var list = SymbolList()
        var chunk = [UInt8](repeating: 0, count: 256 << 10)
        var pending: [UInt8] = []
        var lineNumber = 0
        var total = 0
        while true {
            let count: Int
            do {
                count = try chunk.withUnsafeMutableBytes { try descriptor.read(into: $0, retryOnInterrupt: true) }
            } catch {
                throw SymbolTableError(.unreadable(path: path, errno: error as? Errno ?? .ioError))
            }
            total += count
            guard total <= limit else { throw SymbolTableError(.tooLarge(path: path, limit: limit)) }
            chunk.withUnsafeBytes { hash.update(bufferPointer: UnsafeRawBufferPointer(rebasing: $0[..<count])) }
            pending += chunk[..<count]
            do {
                let used = try list.parseLines(pending[...], path: path, lineNumber: &lineNumber, final: count == 0)
                pending.removeSubrange(..<used)
            } catch {
                throw SymbolTableError(.badSymbolFile(error))
            }
            if count == 0 { break }
        }
        list.indexNames()
        return (list, hash.finalize().description)
    }
}

/// Lower-case hex SHA-256.
func sha256Hex(_ bytes: [UInt8]) -> String {
    SHA256.hash(data: bytes).description
}
