import FoundationEssentials
import Glibc
import Hashing
import ImageFormats
import MemorySources
import SystemPackage

/// One record of an image, with the bytes it takes in the file.
public struct RecordSummary: Sendable, Equatable {
    public var header: RecordHeader
    /// Byte offset of its header.
    public var offset: UInt64
    /// Header, body and (compressed) trailer.
    public var storedBytes: UInt64

    /// The framed stream's length, for compressed records.
    public var streamLength: UInt64? {
        header.compressed ? storedBytes - UInt64(RecordHeader.size) - 8 : nil
    }

    /// Volatility 3's AVML layer reads only `end - start` bytes of a record's stream
    /// and loops forever when the stream is longer (memory that does not compress).
    public var volatilityCanRead: Bool {
        guard let streamLength else { return true }
        return streamLength <= header.end - header.start
    }
}

/// What `avml info` reports, and what `avml verify` checks first.
public struct ImageSummary: Sendable {
    public var path: String
    public var fileSize: UInt64
    public var records: [RecordSummary]

    /// "lime", "lime_compressed", or "mixed".
    public var format: String {
        let compressed = records.filter(\.header.compressed).count
        if compressed == 0 { return ImageFormat.lime.rawValue }
        return compressed == records.count ? ImageFormat.limeCompressed.rawValue : "mixed"
    }

    public var memoryBytes: UInt64 { records.reduce(0) { $0 + $1.header.length } }

    /// Memory covered, adjacent records joined.
    public var ranges: [Range<UInt64>] {
        IOMem.merge(records.map { $0.header.start..<$0.header.end + 1 })
    }

    /// Address ranges between the covered ones.
    public var gaps: [Range<UInt64>] {
        zip(ranges, ranges.dropFirst()).map { $0.upperBound..<$1.lowerBound }
    }

    /// File bytes per byte of memory.
    public var ratio: Double { memoryBytes == 0 ? 0 : Double(fileSize) / Double(memoryBytes) }

    /// Compressed records Volatility 3 cannot open.
    public var volatilityUnreadable: [RecordSummary] { records.filter { !$0.volatilityCanRead } }

    /// Walks every record, decoding compressed ones so their CRCs and trailers are checked.
    ///
    /// - Parameters:
    ///   - path: the image.
    ///   - progress: file bytes read so far, and the file's size.
    /// - Returns: the records found.
    /// - Throws: `ImageError` naming the first bad record.
    public static func read(path: String, progress: ((UInt64, UInt64) -> Void)? = nil) throws(ImageError) -> ImageSummary {
        let reader = try ImageReader(path: path)
        var records: [RecordSummary] = []
        while let record = try reader.nextRecord() {
            try reader.skipBody()
            records.append(
                RecordSummary(header: record.header, offset: record.offset, storedBytes: reader.position - record.offset))
            progress?(reader.position, reader.fileSize)
        }
        return ImageSummary(path: path, fileSize: reader.fileSize, records: records)
    }
}

/// Why `avml verify` rejects an image that is well-formed record by record.
public enum VerificationError: Error, CustomStringConvertible {
    case hashMismatch(image: String, manifest: String, recorded: String, actual: String)
    case sizeMismatch(image: String, manifest: String, recorded: UInt64, actual: UInt64)
    case manifestWithoutHash(String)
    case unreadableManifest(String, Error)
    case unreadableImage(String, Errno)

    public var description: String {
        switch self {
        case .hashMismatch(let image, let manifest, let recorded, let actual):
            return
                "\(escapedForLog(image)): SHA-256 is \(actual), but \(escapedForLog(manifest)) records \(recorded): the image was changed or damaged after capture"
        case .sizeMismatch(let image, let manifest, let recorded, let actual):
            return
                "\(escapedForLog(image)) is \(actual) bytes, but \(escapedForLog(manifest)) records \(recorded): the image was truncated or extended after capture"
        case .manifestWithoutHash(let manifest):
            return "\(escapedForLog(manifest)) records no SHA-256 of 64 hex digits (did the capture it describes fail?)"
        case .unreadableManifest(let manifest, let error):
            return "cannot read the manifest \(escapedForLog(manifest)): \(error)"
        case .unreadableImage(let image, let errno):
            return "cannot read \(escapedForLog(image)): \(errno)"
        }
    }
}

/// What `avml verify` established.
public struct VerificationResult: Sendable {
    public var summary: ImageSummary
    /// The manifest whose size and SHA-256 matched, if one was checked.
    public var manifest: String?
    public var sha256: String?

    public init(summary: ImageSummary, manifest: String? = nil, sha256: String? = nil) {
        self.summary = summary
        self.manifest = manifest
        self.sha256 = sha256
    }
}

/// `avml verify`: every record well-formed (headers, order, CRCs, trailers) and,
/// when a manifest exists, the file's size and SHA-256 equal to what it recorded.
///
/// - Parameters:
///   - path: the image.
///   - manifestPath: the manifest; nil uses `IMAGE.json` when it exists.
///   - progress: bytes checked so far, and the total (twice the file size with a manifest).
/// - Returns: the summary and what was matched.
/// - Throws: `ImageError` for the first bad record, `VerificationError` for a hash or size mismatch.
public func verifyImage(
    path: String, manifestPath: String?, progress: ((UInt64, UInt64) -> Void)? = nil
) throws -> VerificationResult {
    var manifestToCheck = manifestPath
    if manifestToCheck == nil, access(path + ".json", F_OK) == 0 {
        manifestToCheck = path + ".json"
    }
    let passes: UInt64 = manifestToCheck == nil ? 1 : 2
    let summary = try ImageSummary.read(path: path) { done, total in progress?(done, total * passes) }
    guard let manifestToCheck else { return VerificationResult(summary: summary) }
    let manifest: Manifest
    do {
        manifest = try Manifest.read(from: manifestToCheck)
    } catch {
        throw VerificationError.unreadableManifest(manifestToCheck, error)
    }
    // The manifest is outside data: a "hash" that is not 64 hex digits is not one.
    guard let recorded = manifest.sha256, let recordedSize = manifest.size,
        recorded.utf8.count == 64,
        recorded.utf8.allSatisfy({ ($0 >= 0x30 && $0 <= 0x39) || ($0 | 0x20 >= 0x61 && $0 | 0x20 <= 0x66) })
    else {
        throw VerificationError.manifestWithoutHash(manifestToCheck)
    }
    guard recordedSize == summary.fileSize else {
        throw VerificationError.sizeMismatch(
            image: path, manifest: manifestToCheck, recorded: recordedSize, actual: summary.fileSize)
    }
    let actual = try sha256(ofFile: path) { done in progress?(summary.fileSize + done, summary.fileSize * 2) }
    guard actual == recorded.lowercased() else {
        throw VerificationError.hashMismatch(image: path, manifest: manifestToCheck, recorded: recorded, actual: actual)
    }
    return VerificationResult(summary: summary, manifest: manifestToCheck, sha256: actual)
}

/// SHA-256 of a whole file, read in 4 MiB steps.
func sha256(ofFile path: String, progress: (UInt64) -> Void) throws -> String {
    let descriptor: FileDescriptor
    do {
        descriptor = try FileDescriptor.open(FilePath(path), .readOnly, options: [.closeOnExec])
    } catch {
        throw VerificationError.unreadableImage(path, error as? Errno ?? .ioError)
    }
    defer { try? descriptor.close() }
    var hasher = SHA256()
    let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 4 << 20, alignment: 4096)
    defer { buffer.deallocate() }
    var done: UInt64 = 0
    while true {
        let count: Int
        do {
            count = try descriptor.read(into: buffer, retryOnInterrupt: true)
        } catch {
            throw VerificationError.unreadableImage(path, error as? Errno ?? .ioError)
        }
        if count == 0 { break }
        hasher.update(bufferPointer: UnsafeRawBufferPointer(rebasing: buffer[..<count]))
        done += UInt64(count)
        progress(done)
    }
    return hasher.finalize().description
}
