import Hashing
import ImageFormats
import SystemPackage

/// A Volatility 3 symbol table for the kernel whose files were read, and what went into it.
public struct SymbolTable: Sendable, Equatable {
    /// Bytes of the gzip-compressed ISF JSON written (`IMAGE.isf.json.gz`).
    public var size: Int
    /// SHA-256 of those bytes, lower-case hex.
    public var sha256: String
    /// The kernel's banner (/proc/version) without its newline; the table's `linux_banner`.
    public var banner: String
    /// Running address minus link-time address of the kernel image; nil when unknown
    /// (Volatility finds the shift itself by scanning the image, so the table works either way).
    public var kaslrOffset: UInt64?
    /// How `kaslrOffset` was found, in words.
    public var kaslrOffsetSource: String
    public var btfPath: String
    public var btfSHA256: String
    /// kallsyms as read, when it was read (also when System.map then gave the addresses).
    public var kallsymsPath: String?
    public var kallsymsSHA256: String?
    /// The System.map that was used: for the addresses when kallsyms could not give them,
    /// else to check kallsyms and find the KASLR offset.
    public var systemMapPath: String?
    public var systemMapSHA256: String?
    /// Types written: base types, structs and unions, enums.
    public var typeCount: Int
    public var symbolCount: Int
    /// Symbols written with a type (BTF variables and functions, and the ones Volatility reads typed).
    public var typedSymbolCount: Int
    /// What the analyst should know, e.g. an assumed KASLR offset, or typed symbols this kernel lacks.
    public var notes: [String]
}

/// Where the kernel's BTF, symbols and banner are read from.
public struct SymbolSources: Sendable, Equatable {
    public var btf: String
    public var kallsyms: String?
    /// A System.map to use when kallsyms cannot give the addresses (or to check and offset them).
    public var systemMap: String?
    /// Where to look for `System.map-RELEASE` when `systemMap` is nil.
    public var systemMapDirectory: String?
    public var banner: String
    /// An ELF core with a VMCOREINFO note (the KASLR offset), normally /proc/kcore.
    public var kcore: String?

    public init(
        btf: String, kallsyms: String?, systemMap: String? = nil, systemMapDirectory: String? = nil, banner: String,
        kcore: String? = nil
    ) {
        self.btf = btf
        self.kallsyms = kallsyms
        self.systemMap = systemMap
        self.systemMapDirectory = systemMapDirectory
        self.banner = banner
        self.kcore = kcore
    }

    /// The running kernel's files.
    public static let live = SymbolSources(
        btf: "/sys/kernel/btf/vmlinux", kallsyms: "/proc/kallsyms", systemMapDirectory: "/boot", banner: "/proc/version",
        kcore: "/proc/kcore")
}

/// Why no symbol table could be made, and what the analyst needs instead.
public struct SymbolTableError: Error, Sendable, Equatable, CustomStringConvertible {
    public enum Reason: Sendable, Equatable {
        /// The BTF file does not exist: the kernel lacks CONFIG_DEBUG_INFO_BTF.
        case noBTF(path: String)
        case unreadable(path: String, errno: Errno)
        case tooLarge(path: String, limit: Int)
        case badBTF(path: String, BTFError)
        case badSymbolFile(SymbolFileError)
        case badBanner(path: String, detail: String)
        /// Every kallsyms address is zero (kptr_restrict); `systemMap` says why no System.map could stand in.
        case addressesHidden(kallsyms: String, systemMap: String)
        /// Symbols Volatility needs to find the kernel are not in kallsyms (`functionsOnly`: it
        /// lists no data symbols at all, as without CONFIG_KALLSYMS_ALL), and no System.map could stand in.
        case missingSymbols(names: [String], source: String, functionsOnly: Bool, systemMap: String)
        /// kallsyms does not exist (CONFIG_KALLSYMS off) and no System.map could stand in.
        case noKallsyms(path: String, systemMap: String)
        /// The only symbol source, a System.map, cannot serve.
        case badSystemMap(String)
        case noSymbolSource
        case missingTypes(names: [String], btf: String)
        case compression(GzipError)
        /// The table's destination failed (a full disk, say); the description of why.
        case unwritable(String)
    }

    public var reason: Reason

    public init(_ reason: Reason) {
        self.reason = reason
    }

    static let dwarf2jsonAdvice =
        "make the table on an analysis machine instead, from the distribution's debug kernel for this release "
        + "(Debian: linux-image-RELEASE-dbg; Ubuntu: linux-image-RELEASE-dbgsym; RHEL, Fedora: kernel-debuginfo) with "
        + "`dwarf2json linux --elf vmlinux --system-map System.map`"

    /// Where a System.map goes for each command (`avml acquire` has no option for it).
    static let systemMapAdvice =
        "Give the build's System.map (`avml symbols --system-map FILE`; `avml acquire` reads /boot/System.map-RELEASE), "
        + "or \(dwarf2jsonAdvice)"

    public var description: String {
        switch reason {
        case .noBTF(let path):
            return "no BTF at \(escapedForLog(path)): this kernel was built without CONFIG_DEBUG_INFO_BTF (or is older "
                + "than 5.2); \(Self.dwarf2jsonAdvice)"
        case .unreadable(let path, let errno):
            return "cannot read \(escapedForLog(path)): \(errno)"
                + (errno == .permissionDenied || errno == .notPermitted ? " (run as root)" : "")
        case .tooLarge(let path, let limit):
            return "\(escapedForLog(path)) is larger than \(limit >> 20) MiB; refusing to read it whole"
        case .badBTF(let path, let error):
            return "\(escapedForLog(path)): \(error); \(Self.dwarf2jsonAdvice)"
        case .badSymbolFile(let error):
            return "\(error)"
        case .badBanner(let path, let detail):
            return "\(escapedForLog(path)) is not a kernel banner: \(detail)"
        case .addressesHidden(let kallsyms, let systemMap):
            return "every address in \(escapedForLog(kallsyms)) is 0: kernel.kptr_restrict hides them (read it as root "
                + "with kptr_restrict 0 or 1: sysctl kernel.kptr_restrict=1), and no System.map could stand in: \(systemMap)"
        case .missingSymbols(let names, let source, let functionsOnly, let systemMap):
            var text =
                "\(escapedForLog(source)) lacks \(names.joined(separator: ", ")), which Volatility needs to find the kernel"
            if functionsOnly {
                text += " (CONFIG_KALLSYMS_ALL is off, so it lists functions only)"
            }
            return text + "; no System.map could stand in: \(systemMap). \(Self.systemMapAdvice)"
        case .noKallsyms(let path, let systemMap):
            return "\(escapedForLog(path)) does not exist" + (path.hasPrefix("/proc/") ? " (CONFIG_KALLSYMS is off)" : "")
                + ", and no System.map could stand in: \(systemMap). \(Self.systemMapAdvice)"
        case .badSystemMap(let problem):
            return problem
        case .noSymbolSource:
            return "no symbol addresses: give kallsyms or a System.map"
        case .missingTypes(let names, let btf):
            return "\(escapedForLog(btf)) has no \(names.joined(separator: ", ")): it is not the BTF of a Linux kernel "
                + "(a module's BTF holds only its own types)"
        case .compression(let error):
            return "cannot compress the table: \(error)"
        case .unwritable(let detail):
            return "cannot write the table: \(detail)"
        }
    }
}

public enum KernelSymbols {
    /// Symbols Volatility 3's Linux stacker (automagic/linux.py) reads to find the kernel in an image.
    static let requiredSymbols = ["init_task", "init_mm", "init_files", "linux_banner"]
    /// One of these gives the kernel's page tables.
    static let pageTableSymbols = ["init_top_pgt", "init_level4_pgt", "swapper_pg_dir"]
    /// Where the x86-64 kernel is linked unless CONFIG_PHYSICAL_START is changed
    /// (__START_KERNEL_map + 16 MiB); KASLR moves it in 2 MiB steps above this.
    static let x8664LinkAddress: UInt64 = 0xffff_ffff_8100_0000
    static let x8664KernelMap: ClosedRange<UInt64> = 0xffff_ffff_8000_0000...0xffff_ffff_bfff_ffff

    static let maximumBTFBytes = 256 << 20
    static let maximumSymbolFileBytes = 256 << 20
    static let maximumBannerBytes = 64 << 10

    /// The kernel banner the table would be made for: what names a table by its release.
    /// - Throws: `SymbolTableError` when the banner file cannot be read or is not a banner.
    public static func banner(of sources: SymbolSources) throws(SymbolTableError) -> String {
        try Banner(readFile(sources.banner, limit: maximumBannerBytes), path: sources.banner).text
    }

    /// The table from files (copied off a host, or the live ones).
    ///
    /// Addresses come from kallsyms when it shows them all and lists the symbols
    /// Volatility needs; otherwise from the System.map (`systemMap`, or
    /// `systemMapDirectory/System.map-RELEASE` with RELEASE from the banner), which
    /// must hold those symbols and agree with what the running kernel shows: the same
    /// distance from `_text` for every global function kallsyms lists, or, when
    /// kallsyms hides its addresses, the per-CPU variable offsets in the BTF.
    ///
    /// The gzip file goes to `write` as it is made, never whole in memory.
    ///
    /// - Parameters:
    ///   - sources: the kernel's files.
    ///   - producerVersion: avml's version, recorded as the table's producer.
    ///   - write: takes the gzip file's bytes, in order, as they are made, mostly on a thread of
    ///     the table's own, one call at a time and never after `make` returns; once it throws,
    ///     it is not called again and the table fails with `.unwritable`.
    /// - Returns: what went into the table, its size and SHA-256.
    /// - Throws: `SymbolTableError`.
    public static func make(
        from sources: SymbolSources, producerVersion: String,
        writingTo write: @escaping (UnsafeRawBufferPointer) throws -> Void
    ) throws(SymbolTableError) -> SymbolTable {
        let bannerBytes = try readFile(sources.banner, limit: maximumBannerBytes)
        let banner = try Banner(bannerBytes, path: sources.banner)
        let (btf, btfSHA256) = try readBTF(sources.btf)
        var notes: [String] = []
        let addresses = try chooseAddresses(sources, banner: banner, btf: btf, notes: &notes)
        if let path = addresses.isKallsyms ? addresses.kallsymsPath : addresses.systemMapPath {
            notes += duplicateNotes(addresses.list, path: path)
        }
        let offset = kaslrOffset(sources, addresses: addresses, banner: banner, notes: &notes)
        let writer: ISFWriter
        do {
            writer = try ISFWriter(btf: btf, kernel: banner.version)
        } catch {
            throw SymbolTableError(.badBTF(path: sources.btf, error))
        }
        let missingTypes = ["task_struct", "list_head"].filter { name in
            !btf.types.contains { $0.kind == .structure && $0.name == name }
        }
        guard missingTypes.isEmpty else { throw SymbolTableError(.missingTypes(names: missingTypes, btf: sources.btf)) }

        let list = addresses.list
        let linkTime = LinkTime(fromKallsyms: addresses.isKallsyms, offset: offset.value, list: list)
        /// The lowest link-time address above `address`, for arrays that run up to the next symbol.
        func next(after address: UInt64) -> UInt64? {
            var nearest: UInt64?
            for index in list.indices {
                let other = linkTime.address(list.address(at: index))
                if other > address && other < nearest ?? .max { nearest = other }
            }
            return nearest
        }
        let btfSymbols: [UInt32]
        do {
            btfSymbols = try writer.btfSymbolIDs()
        } catch {
            throw SymbolTableError(.badBTF(path: sources.btf, error))
        }
        /// The types Volatility reads symbols with, where BTF has none or another.
        /// By the symbol's index in `list`.
        var declared: [Int: [UInt8]] = [:]
        var unresolved: [String] = []
        do {
            let index = writer.typeIndex()
            for entry in volatilityTypedSymbols {
                guard let symbol = list.index(named: entry.name) else { continue }
                let address = linkTime.address(list.address(at: symbol))
                if let resolved = writer.resolve(
                    entry.type, in: index, address: address, nextAddress: { next(after: address) }, kernel: banner.version)
                {
                    declared[symbol] = resolved.json
                } else {
                    unresolved.append(entry.name)
                }
            }
        }
        if !unresolved.isEmpty {
            notes.append(
                "no type in this kernel's BTF for \(unresolved.joined(separator: ", ")): Volatility code reading them with their type fails"
            )
        }
        var origins: [ISFSource] = []
        if addresses.isKallsyms, let path = addresses.kallsymsPath, let sha = addresses.kallsymsSHA256 {
            origins.append(ISFSource(name: path, sha256: sha))
        }
        if !addresses.isKallsyms, let path = addresses.systemMapPath, let sha = addresses.systemMapSHA256 {
            origins.append(ISFSource(name: path, sha256: sha))
        }
        // Compressed as it is written: the JSON (tens of MB) is never whole in memory, and
        // the symbols go from the list straight into it, one per name, in name order. zlib's
        // fastest level: at its default (6) compressing was 40% of the table's time, for a
        // file a sixth smaller (6.12: 2.5 MB against 3.0 MB), where the image is hundreds of MB.
        // On a thread of its own, which also hashes and writes the file (`write` runs there, and
        // for the last pieces on this thread, never both at once).
        let output = TableOutput(write)
        let deflater: Gzip.BackgroundDeflater
        do {
            deflater = try Gzip.BackgroundDeflater(level: 1, emit: output.take)
        } catch {
            throw SymbolTableError(.compression(error))
        }
        // However the table ends, `write` is not running when this returns.
        defer { deflater.waitUntilIdle() }
        var json = JSONWriter(compressingInto: deflater)
        var counts: ISFWriter.Counts
        do {
            counts = try writer.writeStart(into: &json, producerVersion: producerVersion, sources: origins)
        } catch {
            throw SymbolTableError(.badBTF(path: sources.btf, error))
        }
        var typedSymbolCount = 0
        var nextBTF = 0
        let bannerIndex = list.index(named: "linux_banner")
        for (position, index) in list.byName.enumerated() {
            let symbol = Int(index)
            // Names as bytes, never a String each: there are up to 250,000.
            let name = list.nameBytes(at: symbol)
            // Both are in name order: the BTF names before this one have no symbol.
            while nextBTF < btfSymbols.count && writer.btf.types.compareName(Int(btfSymbols[nextBTF]), with: name) < 0 {
                nextBTF += 1
            }
            var type = ISFWriter.SymbolType.none
            if let descriptor = declared[symbol] {
                type = .declared(descriptor)
            } else if nextBTF < btfSymbols.count, writer.btf.types.compareName(Int(btfSymbols[nextBTF]), with: name) == 0 {
                type = .btf(btfSymbols[nextBTF])
            }
            if case .none = type {} else { typedSymbolCount += 1 }
            do {
                try writer.writeSymbol(
                    name: name, address: linkTime.address(list.address(at: symbol)), type: type,
                    constantData: symbol == bannerIndex ? banner.constantData : nil, first: position == 0, into: &json)
            } catch {
                throw SymbolTableError(.badBTF(path: sources.btf, error))
            }
        }
        ISFWriter.writeEnd(into: &json)
        counts.symbols = list.byName.count
        do {
            try json.finishCompressed()
        } catch {
            throw SymbolTableError(.compression(error))
        }
        if let failure = output.failure { throw SymbolTableError(.unwritable(String(describing: failure))) }
        return SymbolTable(
            size: output.size, sha256: output.hash.finalize().description, banner: banner.text, kaslrOffset: offset.value,
            kaslrOffsetSource: offset.source, btfPath: sources.btf, btfSHA256: btfSHA256,
            kallsymsPath: addresses.kallsymsPath, kallsymsSHA256: addresses.kallsymsSHA256,
            systemMapPath: addresses.systemMapPath, systemMapSHA256: addresses.systemMapSHA256,
            typeCount: counts.baseTypes + counts.userTypes + counts.enums, symbolCount: counts.symbols,
            typedSymbolCount: typedSymbolCount, notes: notes)
    }

    /// The BTF at `path`, checked, and the file's SHA-256. Its types are read from the file's
    /// bytes as they are used: the smallest form that holds them.
    static func readBTF(_ path: String) throws(SymbolTableError) -> (BTF, sha256: String) {
        let bytes: [UInt8]
        do {
            bytes = try readFile(path, limit: maximumBTFBytes)
        } catch let error {
            // Only the kernel's own file missing means the kernel has no BTF; a copy missing is just that.
            if case .unreadable(_, .noSuchFileOrDirectory) = error.reason, path.hasPrefix("/sys/kernel/btf/") {
                throw SymbolTableError(.noBTF(path: path))
            }
            throw error
        }
        do {
            return (try BTF(bytes: bytes), sha256Hex(bytes))
        } catch {
            throw SymbolTableError(.badBTF(path: path, error))
        }
    }
}

/// Where a table's gzip bytes go: the destination, hashed and counted on the way.
private final class TableOutput {
    private let write: (UnsafeRawBufferPointer) throws -> Void
    private(set) var hash = SHA256()
    private(set) var size = 0
    /// The destination's first error; nothing more is written after it.
    private(set) var failure: (any Error)?

    init(_ write: @escaping (UnsafeRawBufferPointer) throws -> Void) {
        self.write = write
    }

    func take(_ bytes: UnsafeRawBufferPointer) {
        guard failure == nil else { return }
        do {
            try write(bytes)
            hash.update(bufferPointer: bytes)
            size += bytes.count
        } catch {
            failure = error
        }
    }
}
