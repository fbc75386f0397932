import Glibc
import SystemPackage
import TestSupport
import Testing

@testable import MemorySources

/// Why a memory source refused to open, from the host's state (issue 25): lockdown, a
/// missing CAP_SYS_RAWIO, not root, a security module. A root process is never told to
/// run as root.
struct HostAccessTests {
    /// CapEff of root on the host (every capability), and of root in a container without CAP_SYS_RAWIO (bit 17).
    static let allCapabilities = "000001ffffffffff"
    static let withoutRawIO = "000001fffffdffff"

    static func status(capEff: String) -> [UInt8] {
        Array(
            "Name:\tavml\nUmask:\t0022\nState:\tR (running)\nCapInh:\t0000000000000000\nCapPrm:\t\(capEff)\nCapEff:\t\(capEff)\n"
                .utf8)
    }

    @Test(arguments: [
        (allCapabilities, "none integrity [confidentiality]\n", HostAccess.Lockdown.confidentiality, true),
        (withoutRawIO, "none [integrity] confidentiality\n", .integrity, false),
        (allCapabilities, "[none] integrity confidentiality\n", HostAccess.Lockdown.none, true),
    ])
    func readsCapabilitiesLockdownAndSecurityModules(capEff: String, lockdown: String, mode: HostAccess.Lockdown, rawIO: Bool)
        throws
    {
        let directory = try TemporaryDirectory()
        directory.write("status", Self.status(capEff: capEff))
        #expect(mkdir(directory["security"], 0o755) == 0)
        directory.write("security/lockdown", Array(lockdown.utf8))
        directory.write("security/lsm", Array("lockdown,capability,landlock,yama,apparmor,bpf".utf8))
        let access = HostAccess.current(status: directory["status"], security: directory["security"])
        #expect(access.rawIO == rawIO && access.lockdown == mode && access.lockdownUnknown == nil)
        #expect(access.securityModules == ["apparmor"])
    }

    @Test func withoutSecurityFSTheLockdownModeIsUnknownAndSaysWhy() throws {
        let directory = try TemporaryDirectory()
        directory.write("status", Self.status(capEff: Self.allCapabilities))
        let access = HostAccess.current(status: directory["status"], security: directory["no-securityfs"])
        #expect(access.lockdown == nil && access.securityModules.isEmpty)
        #expect(access.lockdownUnknown?.hasPrefix("securityfs is not mounted at \(directory["no-securityfs"])") == true)
        let cause = try #require(access.cause(of: .notPermitted, closedFrom: .confidentiality))
        #expect(cause == .maybeLockdown(try #require(access.lockdownUnknown)))
        #expect("\(cause)".contains("may be kernel lockdown") && "\(cause)".contains("mount -t securityfs"))
    }

    @Test func aStatusWithoutCapEffLeavesTheCapabilityUnknown() {
        #expect(HostAccess.rawIO(inStatus: "Name:\tavml\n") == nil)
        #expect(HostAccess.rawIO(inStatus: "CapEff:\tnot hex\n") == nil)
        #expect(HostAccess.rawIO(inStatus: "CapEff:\t0000000000020000\n") == true)
    }

    static let root = HostAccess(effectiveUID: 0, rawIO: true, lockdown: HostAccess.Lockdown.none)

    @Test(
        arguments: [
            // Confidentiality closes kcore and /dev/mem to everyone, root or not; integrity only /dev/mem.
            (
                HostAccess(effectiveUID: 0, rawIO: true, lockdown: .confidentiality), Errno.notPermitted,
                HostAccess.Lockdown?.some(.confidentiality), DenialCause?.some(.lockdown(.confidentiality))
            ),
            (
                HostAccess(effectiveUID: 0, rawIO: true, lockdown: .confidentiality), .notPermitted, .integrity,
                .lockdown(.confidentiality)
            ),
            (HostAccess(effectiveUID: 0, rawIO: true, lockdown: .integrity), .notPermitted, .integrity, .lockdown(.integrity)),
            (
                HostAccess(effectiveUID: 1000, rawIO: false, lockdown: .confidentiality), .permissionDenied, .confidentiality,
                .lockdown(.confidentiality)
            ),
            // Integrity leaves kcore open: its refusal has another cause.
            (HostAccess(effectiveUID: 0, rawIO: false, lockdown: .integrity), .notPermitted, .confidentiality, .noRawIO),
            (HostAccess(effectiveUID: 0, rawIO: true, lockdown: .integrity), .notPermitted, .confidentiality, nil),
            (
                HostAccess(effectiveUID: 1000, rawIO: false, lockdown: HostAccess.Lockdown.none), .permissionDenied,
                .confidentiality, .notRoot(uid: 1000)
            ),
            (HostAccess(effectiveUID: 0, rawIO: false, lockdown: HostAccess.Lockdown.none), .notPermitted, .integrity, .noRawIO),
            (
                HostAccess(effectiveUID: 0, rawIO: true, lockdown: HostAccess.Lockdown.none, securityModules: ["selinux"]),
                .permissionDenied, .confidentiality, .securityModule(["selinux"])
            ),
            // A source lockdown leaves alone (/dev/crash, a file), and errors that are not refusals.
            (HostAccess(effectiveUID: 0, rawIO: true, lockdown: .confidentiality), .notPermitted, nil, nil),
            (HostAccess(effectiveUID: 1000, rawIO: true, lockdown: .confidentiality), .noSuchFileOrDirectory, .integrity, nil),
        ] as [(HostAccess, Errno, HostAccess.Lockdown?, DenialCause?)])
    func namesTheCauseOfARefusal(access: HostAccess, errno: Errno, closedFrom: HostAccess.Lockdown?, expected: DenialCause?) {
        #expect(access.cause(of: errno, closedFrom: closedFrom) == expected)
    }

    @Test func onlyAProcessThatIsNotRootIsToldToRunAsRoot() {
        let causes: [DenialCause] = [
            .lockdown(.confidentiality), .lockdown(.integrity), .noRawIO, .maybeLockdown("securityfs is not mounted"),
            .securityModule(["apparmor"]), .securityModule([]),
        ]
        for cause in causes {
            #expect(!"\(cause)".contains("run as root"), "\(cause)")
        }
        #expect("\(DenialCause.notRoot(uid: 1000))".contains("run as root"))
        #expect("\(DenialCause.lockdown(.confidentiality))".contains("/proc/kcore and /dev/mem to every process, root included"))
        #expect("\(DenialCause.lockdown(.integrity))".contains("closes /dev/mem (not /proc/kcore)"))
        #expect("\(DenialCause.noRawIO)".contains("CAP_SYS_RAWIO") && "\(DenialCause.noRawIO)".contains("--cap-add SYS_RAWIO"))
        let error = SourceError(.open(.notPermitted, cause: .noRawIO), path: "/proc/kcore")
        #expect(error.description == "cannot open /proc/kcore: Operation not permitted (\(DenialCause.noRawIO))")
        #expect(
            SourceError(.open(.notPermitted), path: "/dev/mem").description == "cannot open /dev/mem: Operation not permitted")
    }
}
