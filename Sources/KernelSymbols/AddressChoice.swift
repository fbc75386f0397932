import ImageFormats
import SystemPackage

/// The symbol addresses chosen for the table, and the files behind them.
struct AddressSource {
    var list: SymbolList
    var isKallsyms: Bool
    /// kallsyms with its addresses, when it shows them (for the KASLR offset).
    var visibleKallsyms: SymbolList?
    var kallsymsPath: String?
    var kallsymsSHA256: String?
    var systemMap: SymbolList?
    var systemMapPath: String?
    var systemMapSHA256: String?
}

extension KernelSymbols {
    /// The required symbols `list` lacks.
    static func missingSymbols(in list: SymbolList) -> [String] {
        missingSymbols { list.symbol(named: $0) != nil }
    }

    /// The required symbols not `listed`.
    static func missingSymbols(listed: (String) -> Bool) -> [String] {
        var missing = requiredSymbols.filter { !listed($0) }
        if !pageTableSymbols.contains(where: listed) {
            missing.append(pageTableSymbols.joined(separator: " or "))
        }
        return missing
    }

    /// Whether a symbol list lacking `missing` lists functions only (CONFIG_KALLSYMS_ALL off):
    /// it has none of the required symbols, all data. Not "no data symbol at all": arm64's
    /// 5.10 kallsyms lists `_etext` as data even so.
    static func functionsOnly(missing: [String]) -> Bool {
        requiredSymbols.allSatisfy(missing.contains)
    }

    /// kallsyms when it can serve, else a System.map that agrees with the running kernel.
    static func chooseAddresses(
        _ sources: SymbolSources, banner: Banner, btf: BTF, notes: inout [String]
    ) throws(SymbolTableError) -> AddressSource {
        var result = AddressSource(list: SymbolList(), isKallsyms: false)
        // Why kallsyms cannot serve, when it cannot.
        var kallsymsProblem: KallsymsProblem?
        if let path = sources.kallsyms {
            do throws(SymbolTableError) {
                let (list, sha256) = try readSymbolFile(path, limit: maximumSymbolFileBytes)
                result.kallsymsPath = path
                result.kallsymsSHA256 = sha256
                if list.addressesHidden {
                    kallsymsProblem = .hidden
                } else {
                    result.visibleKallsyms = list.isEmpty ? nil : list
                    let missing = missingSymbols(in: list)
                    if missing.isEmpty {
                        result.list = list
                        result.isKallsyms = true
                    } else {
                        kallsymsProblem = .lacks(missing, functionsOnly: functionsOnly(missing: missing))
                    }
                }
            } catch let error {
                guard case .unreadable(_, .noSuchFileOrDirectory) = error.reason,
                    sources.systemMap != nil || sources.systemMapDirectory != nil
                else { throw error }
                kallsymsProblem = .absent
            }
        }
        let mapPath = sources.systemMap ?? sources.systemMapDirectory.map { "\($0)/System.map-\(banner.release)" }
        var mapProblem: String?
        if let mapPath {
            do {
                let (map, sha) = try loadSystemMap(mapPath, kallsyms: result.visibleKallsyms, btf: btf, notes: &notes)
                result.systemMap = map
                result.systemMapPath = mapPath
                result.systemMapSHA256 = sha
                if !result.isKallsyms { result.list = map }
            } catch let problem {
                mapProblem = problem.detail
            }
        } else {
            mapProblem = "none was given"
        }
        if result.isKallsyms {
            if let mapProblem, sources.systemMap != nil {
                notes.append("System.map not used: \(mapProblem)")
            }
            return result
        }
        guard let mapProblem else {
            if let kallsymsProblem, let path = sources.kallsyms {
                notes.append("addresses from \(escapedForLog(mapPath ?? "")): \(kallsymsProblem.describe(path))")
            }
            return result
        }
        guard let path = sources.kallsyms, let kallsymsProblem else {
            throw SymbolTableError(mapPath == nil ? .noSymbolSource : .badSystemMap(mapProblem))
        }
        switch kallsymsProblem {
        case .hidden: throw SymbolTableError(.addressesHidden(kallsyms: path, systemMap: mapProblem))
        case .lacks(let names, let functionsOnly):
            throw SymbolTableError(
                .missingSymbols(names: names, source: path, functionsOnly: functionsOnly, systemMap: mapProblem))
        case .absent: throw SymbolTableError(.noKallsyms(path: path, systemMap: mapProblem))
        }
    }

    /// Warnings for names `list` gives several addresses: any listed global more than once
    /// (no linked kernel has that: the file was altered or is not one kernel's), and the names
    /// Volatility reads that are file-local statics at several addresses. Other statics share
    /// names by the hundred in every kernel and no Volatility code reads them: not warned of.
    static func duplicateNotes(_ list: SymbolList, path: String) -> [String] {
        func listing(_ name: String) -> String {
            let addresses = list.addresses(named: name).map { "0x" + String($0, radix: 16) }
            return "\(escapedForLog(name)) at " + addresses.joined(separator: ", ")
        }
        var notes: [String] = []
        if !list.conflicting.isEmpty {
            let shown = list.conflicting.prefix(3).map { listing(list.name(at: Int($0))) }
            notes.append(
                "\(escapedForLog(path)) lists \(list.conflicting.count) name(s) as global at several addresses, which one "
                    + "kernel cannot have (\(shown.joined(separator: "; "))\(list.conflicting.count > 3 ? "; ..." : "")): "
                    + "the table gives each the first; check that the file is the running kernel's, unaltered")
        }
        let read = Set(requiredSymbols + pageTableSymbols + volatilityTypedSymbols.map(\.name))
        for index in list.ambiguous {
            let name = list.name(at: Int(index))
            guard read.contains(name) else { continue }
            notes.append(
                "\(escapedForLog(path)) lists \(listing(name)), none global: the table gives the first, "
                    + "and Volatility reads \(escapedForLog(name)) there")
        }
        return notes
    }

    /// Why kallsyms cannot give the table's addresses.
    enum KallsymsProblem {
        case hidden
        /// `functionsOnly`: no data symbol at all, as without CONFIG_KALLSYMS_ALL.
        case lacks([String], functionsOnly: Bool)
        case absent

        func describe(_ path: String) -> String {
            switch self {
            case .hidden: "\(escapedForLog(path)) hides them (kptr_restrict)"
            case .lacks(let names, let functionsOnly):
                "\(escapedForLog(path)) lacks \(names.joined(separator: ", "))"
                    + (functionsOnly ? " (CONFIG_KALLSYMS_ALL is off, so it lists functions only)" : "")
            case .absent: "\(escapedForLog(path)) does not exist" + (path.hasPrefix("/proc/") ? " (CONFIG_KALLSYMS is off)" : "")
            }
        }
    }

    struct MapProblem: Error {
        var detail: String
    }

    /// Reads a System.map and checks it belongs to the kernel described by kallsyms or the BTF.
    static func loadSystemMap(
        _ path: String, kallsyms: SymbolList?, btf: BTF, notes: inout [String]
    ) throws(MapProblem) -> (SymbolList, String) {
        let map: SymbolList
        let sha256: String
        do {
            (map, sha256) = try readSymbolFile(path, limit: maximumSymbolFileBytes)
        } catch {
            guard case .badSymbolFile(let bad) = error.reason else { throw MapProblem(detail: error.description) }
            throw MapProblem(detail: "\(bad) (Debian ships a placeholder; the real map is in linux-image-RELEASE-dbg)")
        }
        let missing = missingSymbols(in: map)
        guard missing.isEmpty else {
            throw MapProblem(detail: "\(escapedForLog(path)) lacks \(missing.joined(separator: ", "))")
        }
        if let kallsyms, let runningText = kallsyms.symbol(named: "_text")?.address,
            let mapText = map.symbol(named: "_text")?.address
        {
            // Same build: every global function sits at the same distance from _text.
            var matched = 0
            var differing: [String] = []
            for symbol in kallsyms where symbol.type == UInt8(ascii: "T") {
                guard let other = map.symbol(named: symbol.name), other.type == UInt8(ascii: "T") else { continue }
                if symbol.address &- runningText == other.address &- mapText {
                    matched += 1
                } else {
                    differing.append(symbol.name)
                }
            }
            guard differing.isEmpty, matched > 0 else {
                throw MapProblem(
                    detail: "\(escapedForLog(path)) is not the running kernel's: of the global functions both list, "
                        + "\(differing.count) of \(matched + differing.count) lie elsewhere relative to _text "
                        + "(first: \(differing.prefix(3).joined(separator: ", ")))")
            }
            return (map, sha256)
        }
        // kallsyms hides its addresses: compare the per-CPU variables' offsets, which the BTF records.
        var matched = 0
        var differing: [String] = []
        if let start = map.symbol(named: "__per_cpu_start")?.address {
            for section in btf.types where section.kind == .dataSection && section.name == ".data..percpu" {
                guard case .sectionVariables(let variables) = section.detail else { continue }
                for variable in variables {
                    let name = btf.types[Int(variable.type)].name
                    guard let symbol = map.symbol(named: name) else { continue }
                    if symbol.address &- start == UInt64(variable.offset) {
                        matched += 1
                    } else {
                        differing.append(name)
                    }
                }
            }
        }
        guard differing.isEmpty else {
            throw MapProblem(
                detail: "\(escapedForLog(path)) is not the running kernel's: \(differing.count) of \(matched + differing.count) "
                    + "per-CPU variables are at other offsets than the BTF says (first: \(differing.prefix(3).joined(separator: ", ")))"
            )
        }
        if matched == 0 {
            notes.append("\(escapedForLog(path)) could be checked against the running kernel by its name only")
        }
        return (map, sha256)
    }

    /// The KASLR offset: VMCOREINFO's KERNELOFFSET, else kallsyms' `_text` against the
    /// System.map's, else against x86-64's default link address.
    static func kaslrOffset(
        _ sources: SymbolSources, addresses: AddressSource, banner: Banner, notes: inout [String]
    ) -> (value: UInt64?, source: String) {
        if let kcore = sources.kcore {
            do {
                let text = try readVMCoreInfo(kcore)
                if let text, let offset = VMCoreInfo.kernelOffset(in: text) {
                    let release = VMCoreInfo.release(in: text)
                    if release == nil || release == banner.release {
                        return (offset, "KERNELOFFSET in \(kcore)'s VMCOREINFO note")
                    }
                    notes.append("\(escapedForLog(kcore))'s VMCOREINFO is for release \(escapedForLog(release ?? "")); ignored")
                }
            } catch {
                notes.append("KASLR offset not read from \(escapedForLog(kcore)): \(error)")
            }
        }
        guard let running = addresses.visibleKallsyms?.symbol(named: "_text")?.address else {
            return (nil, "unknown (no kallsyms addresses)")
        }
        if let linked = addresses.systemMap?.symbol(named: "_text")?.address {
            return (running &- linked, "kallsyms _text minus System.map _text")
        }
        if x8664KernelMap.contains(running) && running >= x8664LinkAddress {
            notes.append(
                "KASLR offset assumes the x86-64 default link address \(hex(x8664LinkAddress)) (CONFIG_PHYSICAL_START unchanged)")
            return (running - x8664LinkAddress, "kallsyms _text minus the x86-64 default link address \(hex(x8664LinkAddress))")
        }
        return (nil, "unknown (no VMCOREINFO or System.map, and not an x86-64 kernel)")
    }

    /// How a symbol's address becomes the link-time one Volatility's tables hold: kallsyms'
    /// addresses in the kernel image (from `_text` on) less the KASLR offset; per-CPU offsets
    /// and other absolute values as they are. System.map's are link-time already.
    struct LinkTime {
        private var text = UInt64.max
        private var offset: UInt64 = 0

        init(fromKallsyms: Bool, offset: UInt64?, list: SymbolList) {
            guard fromKallsyms, let offset, offset != 0, let text = list.symbol(named: "_text")?.address else { return }
            self.text = text
            self.offset = offset
        }

        func address(_ listed: UInt64) -> UInt64 {
            listed >= text ? listed &- offset : listed
        }
    }
}
