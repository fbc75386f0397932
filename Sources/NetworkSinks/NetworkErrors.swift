import ImageFormats
import SystemPackage

/// One HTTP request, as messages name it: method, redacted URL and what it carried.
public struct RequestLabel: Sendable, Equatable, CustomStringConvertible {
    public var method: String
    /// The URL without query string or credentials, escaped.
    public var url: String
    /// What the request was for, e.g. "block 3 of 12, bytes 10485760-15728639".
    public var purpose: String?

    public init(method: String, url: UploadURL, purpose: String? = nil) {
        self.method = method
        self.url = url.description
        self.purpose = purpose
    }

    public var description: String {
        var text = "\(method) \(url)"
        if let purpose { text += " (\(purpose))" }
        return text
    }
}

/// A failed upload, naming the request (URL redacted), the block, the HTTP status and
/// the server's own error text, with advice where there is some.
public enum UploadError: Error, Sendable, CustomStringConvertible {
    /// The URL cannot be used; the URL shown is redacted.
    case invalidURL(String, reason: String)
    /// A Block Blob URL must name a blob in a container.
    case notABlobURL(String)
    /// The server refused the request with a status that retrying cannot change.
    case rejected(RequestLabel, status: Int, reason: String, serverMessage: String)
    /// Every attempt failed with a retryable error; `lastFailure` is the last one.
    case retriesExhausted(RequestLabel, attempts: Int, lastFailure: String)
    /// The request failed in a way retrying cannot fix (TLS certificate, proxy refused).
    case transport(RequestLabel, detail: String)
    /// TLS could not be set up for the URL (the CA bundle cannot be read); nothing was sent.
    case tlsSetup(String, detail: String)
    /// The image is (or, with no path, can be) larger than the store accepts in one PUT;
    /// checked before sending, and by `UploadDestination.checkCapacity` before capturing.
    case singlePutLimit(path: String?, size: UInt64, store: ObjectStore, limit: UInt64)
    /// More than 50,000 blocks of 4000 MiB.
    case blobTooLarge(size: UInt64)
    /// A stream outgrew the block plan made from its estimate.
    case streamLargerThanPlanned(blocks: Int, blockSize: UInt64)
    /// The committed block list does not match what was uploaded.
    case commitMismatch(String, detail: String)
    /// The local image could not be opened, read or checked.
    case localFile(operation: String, path: String, errno: Errno, offset: UInt64?)
    /// The local image is not a regular file.
    case notRegularFile(String)
    /// The local image changed size while it was being uploaded.
    case fileChanged(path: String, expected: UInt64, actual: UInt64)
    /// The upload was confirmed but the local image could not be removed.
    case deleteFailed(path: String, errno: Errno)
    /// The upload was stopped before it finished (another block failed).
    case cancelled

    public var description: String {
        switch self {
        case .invalidURL(let url, let reason):
            return "invalid URL \(url): \(reason)"
        case .notABlobURL(let url):
            return "\(url) does not name a blob: a Block Blob SAS URL looks like "
                + "https://ACCOUNT.blob.core.windows.net/CONTAINER/BLOB?SAS"
        case .rejected(let request, let status, let reason, let message):
            var text = "upload failed: \(request): HTTP \(status)"
            if !reason.isEmpty { text += " \(reason)" }
            if !message.isEmpty { text += ": \(message)" }
            if let advice = Self.advice(status: status) { text += " (\(advice))" }
            return text
        case .retriesExhausted(let request, let attempts, let last):
            return "upload failed: \(request): gave up after \(attempts) attempts; last: \(last)"
        case .transport(let request, let detail):
            return "upload failed: \(request): \(detail)"
        case .tlsSetup(let url, let detail):
            return "cannot set up TLS for \(url): \(detail) (check SSL_CERT_FILE or the system's CA bundle)"
        case .singlePutLimit(let path, let size, let store, let limit):
            let what = path.map { "\(escapedForLog($0)) is \(size) bytes" } ?? "the image can be up to \(size) bytes"
            var text =
                "\(what), more than the \(Self.sizeText(limit)) \(store.rawValue) accepts in one PUT; "
                + (path == nil ? "no memory was read and nothing was sent. " : "nothing was sent. ")
            switch store {
            case .s3:
                text +=
                    "Make it smaller with --compress, split it and upload the parts to several presigned URLs, "
                    + "or upload to Azure Blob Storage with --sas-url (`avml upload blob`), which sends blocks"
            case .azure:
                text += "Use --sas-url (`avml upload blob`), which sends the image as blocks"
            default:
                text += "Make it smaller with --compress, or split it"
            }
            return text
        case .blobTooLarge(let size):
            return "the image is \(size) bytes, more than a Block Blob holds (50,000 blocks of 4000 MiB)"
        case .streamLargerThanPlanned(let blocks, let blockSize):
            return "the stream outgrew its block plan (\(blocks) blocks of \(blockSize) bytes, Azure's 50,000-block "
                + "limit); pass a larger --sas-block-size"
        case .commitMismatch(let url, let detail):
            return "upload not confirmed: \(url): the committed block list \(detail)"
        case .localFile(let operation, let path, let errno, let offset):
            var text = "cannot \(operation) \(escapedForLog(path))"
            if let offset { text += " at byte offset \(hex(offset))" }
            return text + ": \(errno)"
        case .notRegularFile(let path):
            return "\(escapedForLog(path)) is not a regular file; only a finished image file can be uploaded"
        case .fileChanged(let path, let expected, let actual):
            return "\(escapedForLog(path)) changed during the upload: it was \(expected) bytes and is now \(actual)"
        case .deleteFailed(let path, let errno):
            return "the upload is confirmed, but \(escapedForLog(path)) could not be deleted: \(errno)"
        case .cancelled:
            return "upload cancelled"
        }
    }

    /// What a responder can do about a status that is not retried.
    static func advice(status: Int) -> String? {
        switch status {
        case 401, 403:
            return "the URL's signature or SAS token is wrong, expired, or lacks write permission: make a new one"
        case 404:
            return "the bucket or container does not exist"
        case 413:
            return "the server refused the size; for S3 compress or split the image, for Azure use --sas-url"
        case 300...399:
            return "the URL redirects; use the final URL (for S3, the bucket's own region endpoint)"
        default:
            return nil
        }
    }

    static func sizeText(_ bytes: UInt64) -> String {
        if bytes >= 1 << 40 && bytes % (1 << 40) == 0 { return "\(bytes >> 40) TiB" }
        if bytes >= 1 << 30 && bytes % (1 << 30) == 0 { return "\(bytes >> 30) GiB" }
        return "\(bytes >> 20) MiB"
    }
}
