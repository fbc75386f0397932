import Glibc
import ImagePipeline
import SystemPackage

/// Where `acquire --url/--sas-url` and `avml upload` send a finished image.
public enum UploadDestination: Sendable, Equatable {
    /// One HTTP PUT (`--url`, `upload put`).
    case put(url: String)
    /// An Azure Block Blob (`--sas-url`, `upload blob`).
    case blob(sasURL: String, blockSizeMiB: UInt64?, concurrency: Int?)
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
