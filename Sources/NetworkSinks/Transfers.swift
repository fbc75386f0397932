import Capture
import Glibc
import SystemPackage

/// Where `acquire --url/--sas-url` and `avml upload` send a finished image.
public enum UploadDestination: Sendable, Equatable {
    /// One HTTP PUT (`--url`, `upload put`).
    case put(url: String)
    /// An Azure Block Blob (`--sas-url`, `upload blob`).
    case blob(sasURL: String, blockSizeMiB: UInt64?, concurrency: Int?)
}

extension UploadDestination {
    /// Refuses, before any memory is read, a destination that cannot take an image of
    /// up to `size` bytes, so that `acquire --url` fails at once instead of after the
    /// capture: one PUT beyond the store's limit (S3 5 GiB, Azure Put Blob 5000 MiB,
    /// GCS 5 TiB; none for other servers), or a Block Blob beyond 50,000 blocks of
    /// 4000 MiB. The URL is checked too.
    ///
    /// - Parameter size: the largest the image can be. For a LiME image that is known
    ///   from the plan: the memory to capture plus a 32-byte header for every record
    ///   (each range cut into 16 MiB records).
    /// - Throws: `UploadError.singlePutLimit` (with no path), `.blobTooLarge`,
    ///   `.invalidURL` or `.notABlobURL`.
    public func checkCapacity(imageSizeAtMost size: UInt64) throws(UploadError) {
        switch self {
        case .put(let url):
            let store = try UploadURL(url).store
            if let limit = store.exceededSinglePutLimit(size) {
                throw .singlePutLimit(path: nil, size: size, store: store, limit: limit)
            }
        case .blob(let sasURL, let blockSizeMiB, let concurrency):
            guard try UploadURL(sasURL).namesBlob else { throw .notABlobURL(Redaction.redactedURL(sasURL)) }
            _ = try BlockPlan(size: size, blockSizeMiB: blockSizeMiB, concurrency: concurrency)
        }
    }
}

/// Uploading a finished image file, from synchronous code.
public enum FileUpload {
    /// Uploads `path` and, if asked, deletes it once the destination confirmed the
    /// upload (2xx; for a blob, the committed block list).
    ///
    /// - Parameters:
    ///   - path: the image file.
    ///   - destination: a PUT URL or an Azure SAS URL with block options.
    ///   - deleteAfterUpload: `--delete`; the file is kept if anything fails.
    ///   - settings: retries, time-outs, proxy and CA bundle.
    ///   - progress: bytes sent so far and the file's size.
    /// - Returns: what the destination confirmed.
    /// - Throws: `UploadError`; the local file is then untouched.
    public static func run(
        file path: String, to destination: UploadDestination, deleteAfterUpload: Bool = false,
        settings: TransferSettings, progress: (@Sendable (UInt64, UInt64) -> Void)? = nil
    ) throws -> UploadReceipt {
        var receipt = try Blocking.run { () async throws(UploadError) -> UploadReceipt in
            switch destination {
            case .put(let url):
                return try await HTTPPutUpload.upload(file: path, to: url, settings: settings, progress: progress)
            case .blob(let url, let blockSizeMiB, let concurrency):
                return try await AzureBlockBlobUpload.upload(
                    file: path, to: url, blockSizeMiB: blockSizeMiB, concurrency: concurrency, settings: settings,
                    progress: progress)
            }
        }
        if deleteAfterUpload {
            guard unlink(path) == 0 else { throw UploadError.deleteFailed(path: path, errno: Errno(rawValue: errno)) }
            receipt.deletedLocalFile = true
        }
        return receipt
    }
}
