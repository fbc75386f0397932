import ImageFormats
import KernelSymbols
import MemorySources
import SystemPackage
import TestSupport
import Testing

@testable import Capture
@testable import RecordEngine

/// `avml check` (issue 25): what a capture would find, found without writing, and
/// agreeing with what the capture then does.
struct PreflightTests {
    let tests: AcquisitionTests

    init() throws {
        tests = try AcquisitionTests()
    }

    /// Runs `avml check`'s preflight, then the capture itself with the same settings.
    func checkThenCapture(_ capture: MemoryCapture) -> (PreflightReport, CaptureReport?, String?) {
        let report = capture.preflight()
        #expect(!tests.directory.exists("image.lime") && !tests.directory.exists("image.lime.json"), "preflight wrote")
        do {
            return (report, try capture.run(), nil)
        } catch {
            return (report, nil, "\(error)")
        }
    }

    @Test func aWorkingKCoreIsWhatTheCaptureThenReads() throws {
        let kcore = tests.directory.write("kcore", kcoreImage(AcquisitionTests.ram, memory: AcquisitionTests.memory))
        var capture = tests.acquisition(crash: nil, kcore: kcore, mem: nil)
        capture.symbolsPath = tests.directory["image.lime.isf.json.gz"]
        capture.symbolSources = AcquisitionTests.symbolFixtures
        let (report, captured, _) = checkThenCapture(capture)
        #expect(report.source == .device(.kcore) && captured?.source == report.source)
        let lines = Dictionary(uniqueKeysWithValues: report.findings.map { ($0.subject, $0) })
        #expect(lines["/dev/crash"]?.works == false)
        #expect(lines["/dev/crash"]?.detail.contains("No such file or directory") == true)
        #expect(
            lines["/proc/kcore"]?.works == true
                && lines["/proc/kcore"]?.detail == "readable: gives 2.62 MiB of the 2.62 MiB of System RAM", "\(report.findings)")
        #expect(lines["/dev/mem"]?.works == false)
        #expect(
            lines["symbol table"]?.works == true && lines["symbol table"]?.detail.contains("addresses from") == true,
            "\(lines["symbol table"]?.detail ?? "")")
        let disk = try #require(lines["disk"])
        #expect(
            disk.works && disk.detail.hasPrefix("\(tests.directory.path) has ") && disk.detail.hasSuffix("needs up to 2.81 MiB"))
    }

    @Test func aKCoreWithoutMemoryIsPassedOverAsTheCaptureDoes() {
        // kcore opens but maps none of System RAM: both pass on to /dev/mem.
        let kcore = tests.directory.write("kcore", kcoreImage(AcquisitionTests.unmarkedSegments))
        let capture = tests.acquisition(crash: nil, kcore: kcore, mem: tests.directory.write("mem", AcquisitionTests.memory))
        let (report, captured, _) = checkThenCapture(capture)
        #expect(report.source == .device(.mem) && captured?.source == .device(.mem))
        #expect(report.findings.first { $0.subject == "/proc/kcore" }?.detail == "\(kcore) maps no memory at address 0x1000")
    }

    @Test func aSourceThatEndsBeforeSystemRAMFailsLikeTheCapture() {
        // /dev/mem's stand-in ends at 1 MiB, where a capture's first refused read would be.
        let mem = tests.directory.write("mem", Array(AcquisitionTests.memory[..<0x10_0000]))
        var capture = tests.acquisition(crash: nil, kcore: nil, mem: mem)
        capture.source = .device(.mem)
        let (report, captured, error) = checkThenCapture(capture)
        #expect(report.source == nil && captured == nil && error != nil)
        #expect(report.findings.map(\.subject) == ["/dev/mem", "disk"])
        #expect(report.findings[0].detail == "\(mem) ended before 8 bytes at address 0x100000 could be read")
    }

    @Test func noSourceAtAllNamesWhatCouldStillCaptureTheHost() throws {
        let capture = tests.acquisition(crash: nil, kcore: nil, mem: nil)
        let (report, _, error) = checkThenCapture(capture)
        #expect(report.source == nil && report.findings.filter(\.works).map(\.subject) == ["disk"])
        let text = try #require(error)
        #expect(text.hasSuffix(AllSourcesFailed.otherWays) && text.contains("signed"))
        let manifest = try Manifest.read(from: tests.directory["image.lime.json"])
        #expect(manifest.error == text)
    }

    @Test func aRefusalToOpenIsExplainedByTheHostsState() {
        // Root cannot be refused by file permissions here, so the refusal is given as the kernel gives it.
        let opener = SourceOpener(
            devicePaths: [:], hostAccess: { HostAccess(effectiveUID: 0, rawIO: true, lockdown: .integrity) })
        let refused = SourceError(.open(.notPermitted), path: "/dev/mem")
        #expect(
            opener.explained(refused, .device(.mem)).description
                == "cannot open /dev/mem: Operation not permitted (\(DenialCause.lockdown(.integrity)))")
        // Integrity leaves kcore open: the same refusal there has no cause the host explains.
        #expect(
            opener.explained(SourceError(.open(.notPermitted), path: "/proc/kcore"), .device(.kcore)).reason
                == .open(.notPermitted))
        let capture = HostAccess(effectiveUID: 0, rawIO: false, lockdown: HostAccess.Lockdown.none)
        let container = SourceOpener(devicePaths: [:], hostAccess: { capture })
        #expect(
            container.explained(SourceError(.open(.notPermitted), path: "/proc/kcore"), .device(.kcore)).reason
                == .open(.notPermitted, cause: .noRawIO))
    }

    @Test func aDiskUsageLimitTheImageWouldPassIsReported() throws {
        var capture = tests.acquisition(crash: nil, kcore: nil, mem: tests.directory.write("mem", AcquisitionTests.memory))
        capture.diskUsage = DiskUsageLimit(maxMiB: 1)
        let (report, _, error) = checkThenCapture(capture)
        let disk = try #require(report.findings.last)
        #expect(disk.subject == "disk" && !disk.works && disk.detail.contains("--max-disk-usage 1"))
        #expect(error == disk.detail)
    }
}
