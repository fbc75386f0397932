import ImageFormats
import SystemPackage

extension SymbolSources {
    /// Whether the running kernel's table can be made, judged for `avml check` from a few
    /// bytes of each file (the banner, the BTF's magic, kallsyms' first line, and the names of
    /// kallsyms read through in 64 KiB pieces) instead of building it: a fleet-wide check
    /// must not fill memory on every host.
    ///
    /// - Returns: what was found, or why no table can be made.
    public func readiness() -> Result<String, SymbolTableError> {
        do throws(SymbolTableError) {
            let banner = try Banner(KernelSymbols.readFile(banner, limit: KernelSymbols.maximumBannerBytes), path: banner)
            let magic = try Self.prefix(of: btf, count: 4)
            guard magic.count == 4, magic[0] == 0x9f, magic[1] == 0xeb else {
                throw SymbolTableError(.badBTF(path: btf, BTFError(.header, offset: 0, "no BTF magic (0xeb9f)")))
            }
            var hidden = false
            // What kallsyms lacks of the required symbols, as making the table will find.
            var missing: [String] = []
            if let kallsyms {
                do throws(SymbolTableError) {
                    // Hidden, every address is 0; shown, the per-CPU offsets at the top already are not.
                    let head = try Self.prefix(of: kallsyms, count: 4096).split(separator: 0x0a).dropLast()
                    if head.contains(where: { $0.prefix { $0 != 0x20 }.contains { $0 != 0x30 } }) {
                        let listed = try Self.requiredSymbolsListed(in: kallsyms)
                        missing = KernelSymbols.missingSymbols(listed: listed.contains)
                        if missing.isEmpty {
                            return .success("BTF \(btf), addresses from \(kallsyms)")
                        }
                    } else {
                        hidden = true
                    }
                } catch  where kallsyms.hasPrefix("/proc/") {
                    // No kallsyms (CONFIG_KALLSYMS off): a System.map may stand in.
                }
            }
            guard let map = systemMap ?? systemMapDirectory.map({ "\($0)/System.map-\(banner.release)" }) else {
                throw SymbolTableError(.noSymbolSource)
            }
            do throws(SymbolTableError) {
                _ = try Self.prefix(of: map, count: 1)
            } catch {
                let problem = "\(error)"
                guard let kallsyms else { throw error }
                if !missing.isEmpty {
                    throw SymbolTableError(
                        .missingSymbols(
                            names: missing, source: kallsyms, functionsOnly: KernelSymbols.functionsOnly(missing: missing),
                            systemMap: problem))
                }
                throw SymbolTableError(
                    hidden
                        ? .addressesHidden(kallsyms: kallsyms, systemMap: problem)
                        : .noKallsyms(path: kallsyms, systemMap: problem))
            }
            let why = hidden ? "hides them" : missing.isEmpty ? "is missing" : "lacks \(missing.joined(separator: ", "))"
            return .success("BTF \(btf), addresses from \(map) (\(kallsyms.map { "\($0) \(why)" } ?? "no kallsyms"))")
        } catch {
            if case .unreadable(let path, .noSuchFileOrDirectory) = error.reason, path == btf, btf.hasPrefix("/sys/kernel/btf/") {
                return .failure(SymbolTableError(.noBTF(path: btf)))
            }
            return .failure(error)
        }
    }

    /// The required symbols (`requiredSymbols`, `pageTableSymbols`) kallsyms lists for the
    /// kernel itself, read through in 64 KiB pieces: they come after the functions, megabytes
    /// in (reading all of a Debian 6.1 host's takes about 60 ms).
    static func requiredSymbolsListed(in path: String) throws(SymbolTableError) -> Set<String> {
        let descriptor = try KernelSymbols.openForReading(path)
        defer { try? descriptor.close() }
        var scanner = SymbolNameScanner(wanted: KernelSymbols.requiredSymbols + KernelSymbols.pageTableSymbols)
        var read = 0
        do {
            try withUnsafeTemporaryAllocation(byteCount: 1 << 16, alignment: 1) { buffer in
                while read <= KernelSymbols.maximumSymbolFileBytes {
                    let count = try descriptor.read(into: buffer)
                    guard count > 0 else { return }
                    read += count
                    scanner.scan(UnsafeRawBufferPointer(rebasing: buffer[..<count]))
                }
            }
        } catch {
            throw SymbolTableError(.unreadable(path: path, errno: error as? Errno ?? .ioError))
        }
        return Set(scanner.found.map { String(decoding: $0, as: UTF8.self) })
    }

    /// The first `count` bytes of a file (fewer if it is shorter).
    static func prefix(of path: String, count: Int) throws(SymbolTableError) -> [UInt8] {
        do {
            return try FileDescriptor.readFile(path, limit: count)
        } catch {
            throw SymbolTableError(.unreadable(path: path, errno: error))
        }
    }
}

/// Finds the `wanted` names in kallsyms text (`ADDRESS TYPE NAME`, a module's lines ending
/// in `\t[module]`, which are not the kernel's) fed in pieces of any size.
struct SymbolNameScanner {
    private let wanted: Set<[UInt8]>
    /// Longer names are not kept: most lines then cost no hashing.
    private let longest: Int
    private(set) var found: Set<[UInt8]> = []
    /// Spaces seen on this line: the name follows the second.
    private var spaces = 0
    private var name: [UInt8] = []
    private var inModule = false

    init(wanted: [String]) {
        self.wanted = Set(wanted.map { Array($0.utf8) })
        longest = wanted.map(\.utf8.count).max() ?? 0
        name.reserveCapacity(longest + 1)
    }

    mutating func scan(_ bytes: UnsafeRawBufferPointer) {
        for byte in bytes {
            switch byte {
            case 0x0a:
                if !inModule && name.count <= longest && wanted.contains(name) { found.insert(name) }
                spaces = 0
                name.removeAll(keepingCapacity: true)
                inModule = false
            case 0x09:
                inModule = true
            case 0x20 where spaces < 2:
                spaces += 1
            default:
                if spaces == 2 && name.count <= longest { name.append(byte) }
            }
        }
    }
}
