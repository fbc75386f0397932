import ImageFormats
import SystemPackage

extension SymbolSources {
    /// Whether the running kernel's table can be made, judged for `avml check` from a few
    /// bytes of each file (the banner, the BTF's magic, kallsyms' first line) instead of
    /// building it: a fleet-wide check must not read megabytes or fill memory on every host.
    /// A kallsyms without data symbols (CONFIG_KALLSYMS_ALL off) shows only when the table is made.
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
            if let kallsyms {
                do throws(SymbolTableError) {
                    // Hidden, every address is 0; shown, the per-CPU offsets at the top already are not.
                    let head = try Self.prefix(of: kallsyms, count: 4096).split(separator: 0x0a).dropLast()
                    if head.contains(where: { $0.prefix { $0 != 0x20 }.contains { $0 != 0x30 } }) {
                        return .success("BTF \(btf), addresses from \(kallsyms)")
                    }
                    hidden = true
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
                throw SymbolTableError(
                    hidden
                        ? .addressesHidden(kallsyms: kallsyms, systemMap: problem)
                        : .noKallsyms(path: kallsyms, systemMap: problem))
            }
            return .success(
                "BTF \(btf), addresses from \(map) (\(kallsyms.map { "\($0) " + (hidden ? "hides them" : "is missing") } ?? "no kallsyms"))"
            )
        } catch {
            if case .unreadable(let path, .noSuchFileOrDirectory) = error.reason, path == btf, btf.hasPrefix("/sys/kernel/btf/") {
                return .failure(SymbolTableError(.noBTF(path: btf)))
            }
            return .failure(error)
        }
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
