import Glibc
import SystemPackage

/// What this host and process allow, read when a memory source refuses to open, so
/// that the refusal names its real cause: a root process told to "run as root" goes
/// hunting for sudo problems while the kernel's lockdown, or a container's missing
/// capability, is what closed the door.
public struct HostAccess: Sendable, Equatable {
    /// The kernel lockdown mode (`lockdown=` or Secure Boot): integrity closes /dev/mem
    /// to every process, confidentiality closes /proc/kcore as well.
    public enum Lockdown: String, Sendable, Equatable {
        case none, integrity, confidentiality
    }

    public var effectiveUID: UInt32
    /// Whether CAP_SYS_RAWIO is in the effective set (`CapEff` of /proc/self/status):
    /// /proc/kcore and /dev/mem refuse to open without it, root or not. Nil when unreadable.
    public var rawIO: Bool?
    /// The lockdown mode, nil when it cannot be read (`lockdownUnknown` says why).
    public var lockdown: Lockdown?
    public var lockdownUnknown: String?
    /// Active security modules that can deny root (`selinux`, `apparmor`), from /sys/kernel/security/lsm.
    public var securityModules: [String]

    public init(
        effectiveUID: UInt32, rawIO: Bool?, lockdown: Lockdown?, lockdownUnknown: String? = nil, securityModules: [String] = []
    ) {
        self.effectiveUID = effectiveUID
        self.rawIO = rawIO
        self.lockdown = lockdown
        self.lockdownUnknown = lockdownUnknown
        self.securityModules = securityModules
    }

    /// CAP_SYS_RAWIO's bit in the capability sets (linux/capability.h).
    static let rawIOBit = 17

    /// The state of this process and host: small files only, read when needed.
    ///
    /// - Parameters:
    ///   - status: /proc/self/status, for `CapEff`.
    ///   - security: where securityfs is mounted (its `lockdown` and `lsm` files).
    /// - Returns: what could be read; each unknown is nil, and `lockdownUnknown` says why.
    public static func current(status: String = "/proc/self/status", security: String = "/sys/kernel/security") -> HostAccess {
        var access = HostAccess(effectiveUID: geteuid(), rawIO: nil, lockdown: nil)
        if let text = try? readSmallFile(status) { access.rawIO = rawIO(inStatus: text) }
        let modules = try? readSmallFile(security + "/lsm")
        do {
            let text = try readSmallFile(security + "/lockdown")
            access.lockdown = lockdown(from: text)
            if access.lockdown == nil { access.lockdownUnknown = "\(security)/lockdown says \(text.prefix(80))" }
        } catch {
            // No lsm file either: securityfs is not mounted there, so nothing under it can be read.
            access.lockdownUnknown =
                modules != nil
                ? "\(security)/lockdown cannot be read (\(error)): the kernel may lack the lockdown module"
                : "securityfs is not mounted at \(security) (mount -t securityfs securityfs \(security) to read lockdown)"
        }
        if let text = modules {
            access.securityModules = text.split(whereSeparator: { $0 == "," || $0 == "\n" }).map(String.init)
                .filter { ["selinux", "apparmor", "smack", "tomoyo"].contains($0) }
        }
        return access
    }

    /// Whether `CapEff:` in /proc/PID/status holds CAP_SYS_RAWIO; nil without a readable line.
    static func rawIO(inStatus text: String) -> Bool? {
        for line in text.split(separator: "\n") where line.hasPrefix("CapEff:") {
            let hex = String(line.dropFirst("CapEff:".count).filter { !$0.isWhitespace })
            guard let mask = UInt64(hex, radix: 16) else { return nil }
            return mask & (1 << rawIOBit) != 0
        }
        return nil
    }

    /// The mode in brackets of /sys/kernel/security/lockdown ("none [integrity] confidentiality").
    static func lockdown(from text: String) -> Lockdown? {
        guard let open = text.firstIndex(of: "["), let close = text[open...].firstIndex(of: "]") else { return nil }
        return Lockdown(rawValue: String(text[text.index(after: open)..<close]))
    }

    /// Why opening a memory source failed with `errno`.
    ///
    /// - Parameters:
    ///   - errno: what the open returned; only EPERM and EACCES are refusals.
    ///   - closedFrom: the lockdown mode from which the kernel closes this source (integrity
    ///     for /dev/mem, confidentiality for /proc/kcore); nil for sources lockdown leaves alone.
    /// - Returns: the cause, lockdown first (it closes the source even to root with every
    ///   capability); nil when nothing here explains the refusal.
    public func cause(of errno: Errno, closedFrom: Lockdown?) -> DenialCause? {
        guard errno == .notPermitted || errno == .permissionDenied else { return nil }
        if let closedFrom, let lockdown, lockdown != .none, lockdown.level >= closedFrom.level {
            return .lockdown(lockdown)
        }
        if effectiveUID != 0 { return .notRoot(uid: effectiveUID) }
        if rawIO == false { return .noRawIO }
        if errno == .notPermitted, closedFrom != nil, lockdown == nil {
            return .maybeLockdown(lockdownUnknown ?? "the lockdown mode cannot be read")
        }
        if errno == .permissionDenied { return .securityModule(securityModules) }
        return nil
    }
}

extension HostAccess.Lockdown {
    var level: Int {
        switch self {
        case .none: 0
        case .integrity: 1
        case .confidentiality: 2
        }
    }
}

/// The cause of a memory source's refusal to open, in the words a responder acts on.
public enum DenialCause: Sendable, Equatable, CustomStringConvertible {
    /// The kernel is locked down at a level that closes this source to every process.
    case lockdown(HostAccess.Lockdown)
    case notRoot(uid: UInt32)
    /// Root, but without CAP_SYS_RAWIO: a container or a service with reduced capabilities.
    case noRawIO
    /// Root with CAP_SYS_RAWIO was refused and the lockdown mode cannot be read.
    case maybeLockdown(String)
    /// Root with CAP_SYS_RAWIO was refused with EACCES: a security module's policy.
    case securityModule([String])

    public var description: String {
        switch self {
        case .lockdown(let mode):
            let closes = mode == .confidentiality ? "/proc/kcore and /dev/mem" : "/dev/mem (not /proc/kcore)"
            return "the kernel is locked down (lockdown=\(mode.rawValue) in /sys/kernel/security/lockdown, as Secure "
                + "Boot or a boot option sets it): it closes \(closes) to every process, root included"
        case .notRoot(let uid):
            return "this process runs as user \(uid), not root: run as root (sudo)"
        case .noRawIO:
            return "this process is root but lacks CAP_SYS_RAWIO (CapEff in /proc/self/status), as in a container or a "
                + "service with reduced capabilities: run on the host, in a privileged container (docker run --privileged), "
                + "or with the capability added (--cap-add SYS_RAWIO)"
        case .maybeLockdown(let why):
            return "root with CAP_SYS_RAWIO was refused, so the cause may be kernel lockdown, which is not known here: \(why)"
        case .securityModule(let modules):
            let names = modules.isEmpty ? "a security module (SELinux, AppArmor)" : modules.joined(separator: " or ")
            return "root with CAP_SYS_RAWIO was denied access: \(names) policy forbids it; the audit log names the rule "
                + "(ausearch -m avc, or dmesg | grep -i denied)"
        }
    }
}

/// A small text file read whole (/proc and securityfs files report no size).
func readSmallFile(_ path: String) throws(Errno) -> String {
    String(decoding: try FileDescriptor.readFile(path, limit: 1 << 16), as: UTF8.self)
}
