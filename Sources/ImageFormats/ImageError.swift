import SystemPackage

/// A problem with an image file, located precisely enough to act on: which
/// file, which byte offset, and which record.
public struct ImageError: Error, Sendable, CustomStringConvertible {
    public enum Reason: Sendable, Equatable {
        case open(Errno)
        case read(Errno)
        case empty
        case truncated(String)
        case header(RecordHeaderError)
        case outOfOrder(previousEnd: UInt64)
        case snappy(SnappyError)
        case chunkTooLarge(Int)
        case decodedTooMuch(declared: UInt64)
        case trailerMismatch(stored: UInt64, actual: UInt64)
    }

    public var reason: Reason
    public var path: String
    /// Byte offset in the file where the problem was found.
    public var offset: UInt64?
    /// The record being read, when there is one.
    public var record: RecordHeader?

    public init(_ reason: Reason, path: String, offset: UInt64? = nil, record: RecordHeader? = nil) {
        self.reason = reason
        self.path = path
        self.offset = offset
        self.record = record
    }

    public var description: String {
        var text = "\(escapedForLog(path)): "
        switch reason {
        case .open(let errno): text += "cannot open: \(errno)"
        case .read(let errno): text += "cannot read: \(errno)"
        case .empty: text += "file is empty, it holds no image"
        case .truncated(let what): text += "file ends in the middle of \(what)"
        case .header(let error): text += "invalid record header: \(error)"
        case .outOfOrder(let previousEnd):
            text += "records overlap or go backwards (previous record ended at \(hex(previousEnd)))"
        case .snappy(let error): text += "corrupt compressed data: \(error)"
        case .chunkTooLarge(let length): text += "compressed chunk of \(length) bytes is larger than any valid chunk"
        case .decodedTooMuch(let declared):
            text += "compressed data decodes to more than the record's \(declared) bytes"
        case .trailerMismatch(let stored, let actual):
            text += "compressed-size trailer says \(stored) bytes, but the stream is \(actual) bytes"
        }
        if let record {
            text += " (record \(hex(record.start))-\(hex(record.end))"
            if let offset { text += ", at byte offset \(hex(offset))" }
            text += ")"
        } else if let offset {
            text += " (at byte offset \(hex(offset)))"
        }
        return text
    }
}
