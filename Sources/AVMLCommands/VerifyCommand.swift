import ArgumentParser
import Capture
import FoundationEssentials
import ImageFormats
import KernelSymbols

public struct Verify: ParsableCommand {
    public static let configuration = CommandConfiguration(
        abstract: "Check every record of an image and, with a manifest, its size and SHA-256.",
        discussion: "Exits 0 only when every check holds. IMAGE.json is used as the manifest when it exists.")

    @Option(help: "The manifest to check against (default: IMAGE.json, if present).")
    var manifest: String?

    @OptionGroup var reporting: QuietOption
    var quiet: Bool { reporting.quiet }

    @Argument(help: "The LiME or compressed image.")
    var image: String

    public init() {}

    public func run() throws {
        let progress = ProgressLine("verify", quiet: quiet)
        let result: VerificationResult
        do {
            result = try verifyImage(path: image, manifestPath: manifest, progress: progress.callback)
        } catch {
            progress.finish()
            throw CommandFailure(error)
        }
        progress.finish()
        let summary = result.summary
        var text = "\(escapedForLog(image)): \(summary.records.count) records (\(summary.format)), "
        text += "\(formatBytes(summary.memoryBytes)) of memory; every header, CRC and trailer checked"
        if let manifest = result.manifest, let sha256 = result.sha256 {
            text += "; size and sha256 \(sha256) match \(escapedForLog(manifest))"
        } else {
            text += "; no manifest, so the SHA-256 was not checked"
        }
        print(text)
        if let advice = volatilityAdvice(summary) { warn(advice) }
    }
}

public struct Info: ParsableCommand {
    public static let configuration = CommandConfiguration(
        abstract: "Describe an image: format, records, memory ranges, compression ratio and gaps.")

    @Flag(help: "Print JSON instead of text.")
    var json = false

    @Argument(help: "The LiME or compressed image.")
    var image: String

    public init() {}

    public func run() throws {
        let summary: ImageSummary
        do {
            summary = try ImageSummary.read(path: image)
        } catch {
            throw CommandFailure(error)
        }
        // The manifest beside the image says whether a symbol table was taken.
        let manifest = try? Manifest.read(from: image + ".json")
        print(json ? infoJSON(summary, manifest: manifest) : infoText(summary, manifest: manifest))
    }
}

func infoText(_ summary: ImageSummary, manifest: Manifest?) -> String {
    var lines = [
        "image:    \(escapedForLog(summary.path))",
        "format:   \(summary.format)",
        "records:  \(summary.records.count)",
        "memory:   \(summary.memoryBytes) bytes (\(formatBytes(summary.memoryBytes)))",
        "file:     \(summary.fileSize) bytes (\(formatBytes(summary.fileSize))), \(formatDecimal(summary.ratio, places: 3)) of the memory",
        "ranges:",
    ]
    let line = { (range: Range<UInt64>) in
        "    \(hex(range.lowerBound))-\(hex(range.upperBound - 1))  \(formatBytes(UInt64(range.count)))"
    }
    lines += summary.ranges.map(line)
    lines.append("gaps:     \(summary.gaps.count)")
    lines += summary.gaps.map(line)
    if let advice = volatilityAdvice(summary) { lines.append("volatility: \(advice)") }
    lines.append("symbols:  " + symbolsText(manifest?.symbols))
    if let reading = manifest?.readingSeconds {
        let table = manifest?.symbols?.seconds.map { ", after \(formatDecimal($0, places: 1)) s making the symbol table" } ?? ""
        lines.append("reading:  \(formatDecimal(reading, places: 1)) s\(table)")
    }
    lines.append("consistency: " + (manifest?.consistency?.summary ?? "not in a manifest (IMAGE.json) beside the image"))
    return lines.joined(separator: "\n")
}

/// The manifest's symbol table, for `avml info`.
func symbolsText(_ symbols: SymbolsManifestEntry?) -> String {
    guard let symbols else { return "no manifest (IMAGE.json) says whether a symbol table was taken" }
    if let path = symbols.path {
        let offset = symbols.kaslrOffset.map { ", KASLR offset \($0)" } ?? ""
        return "\(escapedForLog(path)) (\(symbols.types ?? 0) types, \(symbols.symbols ?? 0) symbols\(offset)); "
            + "banner \(escapedForLog(symbols.banner ?? ""))"
    }
    return "none: \(escapedForLog(symbols.reason ?? "not recorded"))"
}

/// What to tell an analyst about compressed records Volatility 3 cannot open, and the command that fixes them.
func volatilityAdvice(_ summary: ImageSummary) -> String? {
    let unreadable = summary.volatilityUnreadable
    guard let first = unreadable.first else { return nil }
    return
        "\(unreadable.count) compressed record(s) hold a stream longer than their memory (first: "
        + "\(hex(first.header.start))-\(hex(first.header.end))), on which Volatility 3's AVML layer loops forever. "
        + "Re-cut them (memory unchanged): avml convert --source-format lime_compressed --format lime_compressed "
        + "\(escapedForLog(summary.path)) FIXED.avml"
}

func infoJSON(_ summary: ImageSummary, manifest: Manifest?) -> String {
    struct Range: Encodable {
        var start: String
        var end: String
        var bytes: UInt64
    }
    struct Record: Encodable {
        var start: String
        var end: String
        var offset: UInt64
        var storedBytes: UInt64
        var compressed: Bool
        var volatilityReadable: Bool
    }
    struct Info: Encodable {
        var image: String
        var format: String
        var fileSize: UInt64
        var memoryBytes: UInt64
        var ratio: Double
        var ranges: [Range]
        var gaps: [Range]
        var records: [Record]
        var symbols: SymbolsManifestEntry?
        var consistency: ConsistencyReport?
        var readingSeconds: Double?
    }
    let ranges = { (list: [Swift.Range<UInt64>]) in
        list.map { Range(start: hex($0.lowerBound), end: hex($0.upperBound - 1), bytes: UInt64($0.count)) }
    }
    let info = Info(
        image: summary.path, format: summary.format, fileSize: summary.fileSize, memoryBytes: summary.memoryBytes,
        ratio: summary.ratio, ranges: ranges(summary.ranges), gaps: ranges(summary.gaps),
        records: summary.records.map {
            Record(
                start: hex($0.header.start), end: hex($0.header.end), offset: $0.offset, storedBytes: $0.storedBytes,
                compressed: $0.header.compressed, volatilityReadable: $0.volatilityCanRead)
        }, symbols: manifest?.symbols, consistency: manifest?.consistency, readingSeconds: manifest?.readingSeconds)
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
    encoder.keyEncodingStrategy = .convertToSnakeCase
    return (try? encoder.encode(info)).map { String(decoding: $0, as: UTF8.self) } ?? "{}"
}
