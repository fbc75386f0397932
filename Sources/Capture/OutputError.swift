import ImageFormats
import SystemPackage

/// A failure writing an image, naming the destination and what was being done.
public struct OutputError: Error, Sendable, CustomStringConvertible {
    public enum Operation: String, Sendable {
        case create = "cannot create"
        case write = "cannot write"
        case sync = "cannot flush"
        case remove = "cannot remove the incomplete image"
    }

    public var operation: Operation
    public var path: String
    public var errno: Errno
    /// Bytes already written when the failure happened.
    public var offset: UInt64?

    public init(_ operation: Operation, path: String, errno: Errno, offset: UInt64? = nil) {
        self.operation = operation
        self.path = path
        self.errno = errno
        self.offset = offset
    }

    public var description: String {
        var text = "\(operation.rawValue) \(escapedForLog(path))"
        if let offset { text += " at byte offset \(hex(offset))" }
        text += ": \(errno)"
        switch errno {
        case .tooManySymbolicLinkLevels:
            text += " (the destination is a symbolic link; refusing to follow it)"
        case .fileExists:
            text += " (it holds a memory image; a manifest or symbol table never replaces evidence)"
        case .tooManyLinks:
            text += " (the destination has other hard links; refusing to overwrite a file that exists under another name)"
        case .noSpace:
            text += " (the disk is full; choose a destination with more room, or stream the image)"
        case .permissionDenied, .notPermitted:
            text += " (choose a writable directory)"
        default:
            break
        }
        return text
    }
}
