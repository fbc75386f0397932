import ImageFormats
import KernelSymbols
import MemorySources

/// One finding of `avml check`: a memory source, the symbol table, the disk.
public struct PreflightFinding: Sendable, Equatable {
    /// What was checked: "/proc/kcore", "symbol table", "disk".
    public var subject: String
    public var works: Bool
    /// What was found, or why it would not work (the same words `acquire` would use).
    public var detail: String
}

/// What `avml check` found, and the source a capture would read.
public struct PreflightReport: Sendable {
    public var findings: [PreflightFinding]
    /// The source `run` would capture from: the first that works in AVML's order (or `--source`).
    public var source: SourceSpecification?
}

extension MemoryCapture {
    /// What `run` would find on this host, found without writing anything and with as
    /// little reading as can tell: each source opened (kcore's headers read) and one word
    /// of memory read where a capture's reads are first refused (/dev/mem above 1 MiB under
    /// STRICT_DEVMEM); a few bytes of each symbol-table file; the destination's free space.
    public func preflight() -> PreflightReport {
        var findings: [PreflightFinding] = []
        let plan: CapturePlan
        do {
            plan = try makePlan()
        } catch {
            findings.append(PreflightFinding(subject: "System RAM", works: false, detail: "\(error)"))
            return PreflightReport(findings: findings, source: nil)
        }
        let opener = SourceOpener(devicePaths: devicePaths, hostAccess: hostAccess)
        var chosen: SourceSpecification?
        for candidate in source.map({ [$0] }) ?? MemoryDevice.allCases.map({ .device($0) }) {
            let finding = Self.probe(candidate, plan: plan, opener: opener)
            findings.append(finding)
            if finding.works && chosen == nil { chosen = candidate }
        }
        if symbolsPath != nil, case .device = source ?? .device(.kcore) {
            switch symbolSources.readiness() {
            case .success(let found): findings.append(PreflightFinding(subject: "symbol table", works: true, detail: found))
            case .failure(let error): findings.append(PreflightFinding(subject: "symbol table", works: false, detail: "\(error)"))
            }
        }
        if case .file(let path) = destination, !ImageFile.isStandardOutputPath(path) {
            findings.append(diskFinding(plan, path: path))
        }
        return PreflightReport(findings: findings, source: chosen)
    }

    /// Whether `specification` opens and gives memory, as `run` would find it.
    static func probe(_ specification: SourceSpecification, plan: CapturePlan, opener: SourceOpener) -> PreflightFinding {
        let reader: MemoryReader
        let ranges: [Range<UInt64>]
        do {
            (reader, ranges) = try opener.open(specification, planned: plan.ranges)
        } catch {
            return PreflightFinding(subject: specification.path, works: false, detail: "\(error)")
        }
        let mapped = ranges.reduce(UInt64(0)) { $0 + UInt64($1.count) }
        let address = ranges.first { $0.upperBound > 0x10_0000 }.map { max($0.lowerBound, 0x10_0000) } ?? ranges[0].lowerBound
        var word = [UInt8](repeating: 0, count: 8)
        do {
            try word.withUnsafeMutableBytes { try reader.read(into: $0, at: address) }
        } catch let error as SourceError where !error.isUnreadablePage {
            return PreflightFinding(subject: specification.path, works: false, detail: "\(error)")
        } catch {
            // An unreadable page is zero-filled by a capture, which goes on.
        }
        return PreflightFinding(
            subject: specification.path, works: true,
            detail: "readable: gives \(formatBytes(mapped)) of the \(formatBytes(plan.memoryBytes)) of System RAM")
    }

    /// Whether the image fits where it would be written, within the disk-usage limits.
    func diskFinding(_ plan: CapturePlan, path: String) -> PreflightFinding {
        let estimate = DiskUsageLimit.estimate(plan.ranges)
        let directory = DiskUsageLimit.directory(of: path)
        do {
            let usage = try DiskUsageLimit.usage(of: directory)
            try diskUsage.check(estimate: estimate, destination: path)
            let free = usage.total - usage.used
            let fits = free >= estimate
            return PreflightFinding(
                subject: "disk", works: fits,
                detail: "\(escapedForLog(directory)) has \(formatBytes(free)) free; the image needs up to "
                    + "\(formatBytes(estimate))" + (compressed ? " (less once compressed)" : "")
                    + (fits ? "" : ": too little space"))
        } catch {
            return PreflightFinding(subject: "disk", works: false, detail: "\(error)")
        }
    }
}
