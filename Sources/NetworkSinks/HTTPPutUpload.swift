import NIOHTTP1

/// What an upload sent and how the destination confirmed it.
public struct UploadReceipt: Sendable, Equatable {
    /// The destination, redacted.
    public var url: String
    public var bytes: UInt64
    /// Blocks committed (Azure Block Blob), nil for a single PUT.
    public var blocks: Int?
    /// The block size used (Azure Block Blob).
    public var blockSize: UInt64?
    /// True when Get Block List showed exactly the committed blocks; false when the
    /// SAS token may not read the block list (the commit's 2xx is then the confirmation).
    public var blockListVerified: Bool?
    /// The local image was deleted after the confirmation (`--delete`).
    public var deletedLocalFile = false
}

/// `avml upload put` and `acquire --url`: one HTTP PUT of a whole file.
///
/// The body is streamed from the file (1 MiB reads) with `Content-Length` and
/// `x-ms-blob-type: BlockBlob`, so the same request works for an S3 or GCS
/// presigned URL and for an Azure SAS URL (Put Blob). A file larger than the
/// store takes in one PUT (S3: 5 GiB; Azure Put Blob: 5000 MiB) fails before
/// anything is sent. Each attempt re-reads the file from its start. No
/// `Content-Type` is sent: S3's and GCS's older (V2) signatures cover it, and a
/// presigned URL is usually made without one.
public enum HTTPPutUpload {
    /// Uploads `path` to `url`.
    ///
    /// - Parameters:
    ///   - path: a finished image file.
    ///   - url: a presigned PUT URL (S3, GCS), an Azure SAS URL, or any URL that takes PUT.
    ///   - settings: retries, time-outs, proxy and CA bundle.
    ///   - progress: bytes handed to the network so far, and the file's size.
    /// - Returns: what was sent, once the server answered 2xx.
    /// - Throws: `UploadError` naming the redacted URL, the status and the server's text.
    public static func upload(
        file path: String, to url: String, settings: TransferSettings,
        progress: (@Sendable (UInt64, UInt64) -> Void)? = nil
    ) async throws(UploadError) -> UploadReceipt {
        let destination = try UploadURL(url)
        let source = try UploadSource(path: path)
        if let limit = destination.store.exceededSinglePutLimit(source.size) {
            throw .singlePutLimit(path: path, size: source.size, store: destination.store, limit: limit)
        }
        let counter = progress.map { TransferCounter(total: source.size, report: $0) }
        let transport = try HTTPTransport(url: destination, settings: settings)
        _ = try await transport.send(
            RequestLabel(method: "PUT", url: destination, purpose: "\(source.size) bytes"),
            HTTPRequest(
                method: .PUT, target: destination.requestTarget(), headers: ["x-ms-blob-type": "BlockBlob"],
                body: .file(source, 0..<source.size)),
            counter: counter)
        if let now = source.currentSize(), now != source.size {
            throw .fileChanged(path: path, expected: source.size, actual: now)
        }
        return UploadReceipt(url: destination.description, bytes: source.size)
    }
}
