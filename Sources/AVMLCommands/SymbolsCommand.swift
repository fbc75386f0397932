import ArgumentParser
import Capture
import ImageFormats
import KernelSymbols

/// `avml symbols`, in both binaries.
public struct Symbols: ParsableCommand {
    public static let configuration = CommandConfiguration(
        abstract:
            "Write a Volatility 3 symbol table (ISF, .json.gz) for the running kernel, or from files copied off a host.",
        discussion: """
            Live (no file options): the types from /sys/kernel/btf/vmlinux (CONFIG_DEBUG_INFO_BTF), the \
            addresses from /proc/kallsyms (as root; /boot/System.map-RELEASE when kallsyms hides them or \
            lists functions only), the banner from /proc/version. Default OUTPUT: HOSTNAME-RELEASE.isf.json.gz.

            Offline: --btf, --banner, and --kallsyms and/or --system-map. Default OUTPUT: RELEASE.isf.json.gz.

            Analysis: put the file in a directory DIR, then: vol -s DIR -f IMAGE linux.pslist
            """)

    @Option(help: "BTF file (a copy of /sys/kernel/btf/vmlinux).")
    var btf: String?

    @Option(help: "kallsyms file (a copy of /proc/kallsyms read as root).")
    var kallsyms: String?

    @Option(help: "System.map of the same kernel build.")
    var systemMap: String?

    @Option(help: "Banner file (a copy of /proc/version).")
    var banner: String?

    @OptionGroup var reporting: QuietOption
    var quiet: Bool { reporting.quiet }

    @Argument(help: "Where to write the table (created mode 0600; a symlink here is refused).")
    var output: String?

    var isOffline: Bool { btf != nil || kallsyms != nil || systemMap != nil || banner != nil }

    public init() {}

    public func validate() throws {
        guard isOffline else { return }
        guard btf != nil, banner != nil, kallsyms != nil || systemMap != nil else {
            throw ValidationError("offline tables need --btf, --banner, and --kallsyms or --system-map")
        }
    }

    public func run() throws {
        let sources =
            isOffline
            ? SymbolSources(btf: btf ?? "", kallsyms: kallsyms, systemMap: systemMap, banner: banner ?? "")
            : SymbolSources.live
        let destination: String
        do {
            destination = try output ?? defaultOutput(banner: KernelSymbols.banner(of: sources))
        } catch {
            throw CommandFailure(error)
        }
        let table: SymbolTable
        do {
            table = try makeSymbolTable(from: sources, at: destination)
        } catch {
            if case .source(let cause as SymbolTableError) = error { throw CommandFailure(cause) }
            throw CommandFailure(error)
        }
        for note in table.notes { warn(note) }
        guard !quiet else { return }
        let offset = table.kaslrOffset.map { "\(hex($0)) (\(table.kaslrOffsetSource))" } ?? table.kaslrOffsetSource
        FileHandleStandardError.write(
            "avml: wrote \(escapedForLog(destination)): \(table.typeCount) types, \(table.symbolCount) symbols "
                + "(\(table.typedSymbolCount) with types), \(table.size) bytes, sha256 \(table.sha256); "
                + "KASLR offset \(offset); banner \(escapedForLog(table.banner))\n")
    }

    /// HOSTNAME-RELEASE.isf.json.gz live, RELEASE.isf.json.gz offline, with anything
    /// that could leave the current directory replaced.
    func defaultOutput(banner: String) -> String {
        let release = banner.split(separator: " ").dropFirst(2).first.map(String.init) ?? "kernel"
        let host = Manifest.currentHost().hostname
        let stem = isOffline || host.isEmpty ? release : "\(host)-\(release)"
        let safe = String(stem.unicodeScalars.map { $0 == "/" || $0.value < 0x20 || $0.value == 0x7f ? "_" : Character($0) })
        return (safe.hasPrefix(".") ? "_" + safe.dropFirst() : safe) + ".isf.json.gz"
    }
}
