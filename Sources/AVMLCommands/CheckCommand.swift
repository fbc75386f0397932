import ArgumentParser
import Capture
import ImageFormats
import MemorySources

/// `avml check`, in both binaries: what `acquire` with the same options would find on
/// this host, before anything is written, so a fleet can be checked ahead of an incident.
public struct Check: ParsableCommand {
    public static let configuration = CommandConfiguration(
        abstract: "Say, without writing anything, whether `avml acquire` with these options would work on this host.",
        discussion: """
            One line per memory source (/dev/crash, /proc/kcore, /dev/mem, or --source), each opened and one word of \
            memory read, with the reason when it would not work (not root, a missing CAP_SYS_RAWIO, kernel lockdown, \
            STRICT_DEVMEM, a security module); whether a symbol table can be made; the free space where FILENAME \
            would be written. Exits 0 when some source works, 1 when none does.
            """)

    @OptionGroup var capture: CaptureOptions

    @Option(help: "As for acquire: the image could not exceed this many MiB.")
    var maxDiskUsage: UInt64?

    @Option(help: "As for acquire: the filesystem could not pass this percentage full (0.01-100).")
    var maxDiskUsagePercentage: Double?

    @Argument(help: "The image acquire would write (nothing is written): its directory's free space is checked.")
    var filename = "memory.lime"

    public init() {}

    public func run() throws {
        var memoryCapture = capture.memoryCapture(to: .file(filename), manifestFor: filename)
        memoryCapture.diskUsage = DiskUsageLimit(maxMiB: maxDiskUsage, maxPercentage: maxDiskUsagePercentage)
        let report = memoryCapture.preflight()
        var text = ""
        for finding in report.findings {
            text += "\(finding.subject): \(finding.works ? "yes" : "no"): \(finding.detail)\n"
        }
        if let source = report.source {
            text += "avml check: acquire would read \(source)\n"
        } else {
            text += "avml check: no memory source can be read on this host as it runs now. \(AllSourcesFailed.otherWays)\n"
        }
        print(text, terminator: "")
        if report.source == nil { throw ExitCode.failure }
    }
}
