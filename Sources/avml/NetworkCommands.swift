import AVMLCommands
import ArgumentParser
import Capture
import ImageFormats
import NetworkSinks

/// Azure Block Blob options, with AVML's names.
struct BlobOptions: ParsableArguments {
    @Option(help: "Smallest Azure block, in MiB (5-4000; larger images get larger blocks, up to 50,000 of them).")
    var sasBlockSize: UInt64?

    @Option(help: "Azure blocks uploaded at once (default 10; fewer when blocks are large: 500 MiB in flight at most).")
    var sasBlockConcurrency: Int = BlockPlan.defaultConcurrency

    func validate() throws {
        if let sasBlockSize, !(1...4000).contains(sasBlockSize) {
            throw ValidationError("--sas-block-size must be between 1 and 4000 (MiB)")
        }
        guard (1...1000).contains(sasBlockConcurrency) else {
            throw ValidationError("--sas-block-concurrency must be between 1 and 1000")
        }
    }
}

/// `acquire`'s upload options, with AVML's names.
struct UploadOptions: AcquireUpload {
    @Option(help: "After acquiring, upload the image with one HTTP PUT to this URL (S3 or GCS presigned, Azure SAS).")
    var url: String?

    @Option(help: "After acquiring, upload the image as an Azure Block Blob to this SAS URL.")
    var sasUrl: String?

    @Flag(help: "Delete the local image once the upload is confirmed (a failed upload keeps it).")
    var delete = false

    @OptionGroup var blob: BlobOptions

    func validate() throws {
        if url != nil && sasUrl != nil { throw ValidationError("--url and --sas-url cannot be used together") }
        if delete && destination == nil { throw ValidationError("--delete needs --url or --sas-url") }
    }

    var isRequested: Bool { destination != nil }

    var destination: UploadDestination? {
        if let url { return .put(url: url) }
        if let sasUrl {
            return .blob(sasURL: sasUrl, blockSizeMiB: blob.sasBlockSize, concurrency: blob.sasBlockConcurrency)
        }
        return nil
    }

    /// A LiME image's size is known from the plan: one PUT that cannot take it is
    /// refused before any memory is read. A compressed image is usually far smaller
    /// than its worst case, so that case only warns; the upload checks again.
    func checkBeforeReading(_ plan: CapturePlan, compressed: Bool) throws {
        guard let destination else { return }
        do {
            try destination.checkCapacity(imageSizeAtMost: plan.maximumImageSize(compressed: compressed))
        } catch {
            guard compressed else { throw error }
            warn("the compressed image may be too large for this upload if memory does not compress: \(error)")
        }
    }

    /// Uploads `file` as asked, reporting progress and retries; on failure the file is kept.
    func uploadIfRequested(file: String, quiet: Bool) throws(CommandFailure) {
        guard let destination else { return }
        try uploadFile(file, to: destination, delete: delete, quiet: quiet)
    }
}

/// Uploads `file`, printing progress and retries on standard error.
/// - Throws: `CommandFailure` when the upload fails.
func uploadFile(_ file: String, to destination: UploadDestination, delete: Bool, quiet: Bool) throws(CommandFailure) {
    let progress = ProgressLine("upload", quiet: quiet)
    let settings = TransferSettings.fromProcessEnvironment(onRetry: retryReporter(progress))
    do {
        let receipt = try FileUpload.run(
            file: file, to: destination, deleteAfterUpload: delete, settings: settings, progress: progress.callback)
        progress.finish()
        var text = "avml: uploaded \(receipt.bytes) bytes to \(receipt.url)"
        if let blocks = receipt.blocks { text += " as \(blocks) blocks" }
        if receipt.deletedLocalFile { text += "; deleted \(escapedForLog(file))" }
        if !quiet || receipt.deletedLocalFile { FileHandleStandardError.write(text + "\n") }
    } catch {
        progress.finish()
        if delete { FileHandleStandardError.write("note: \(escapedForLog(file)) was kept\n") }
        throw CommandFailure(error)
    }
}

/// Prints each retried request on standard error, clearing the progress line first.
func retryReporter(_ progress: ProgressLine) -> @Sendable (String) -> Void {
    { message in
        progress.finish()
        warn(message)
    }
}

extension AVML {
    struct Upload: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Upload a finished image: one HTTP PUT, or an Azure Block Blob.",
            subcommands: [Put.self, Blob.self])

        struct Put: ParsableCommand {
            static let configuration = CommandConfiguration(
                abstract: "Upload FILE with one HTTP PUT (S3 or GCS presigned URL, Azure SAS URL).")

            @Argument(help: "Image to upload.")
            var file: String

            @Argument(help: "Destination URL (its query string is never printed).")
            var url: String

            @OptionGroup var reporting: QuietOption
            var quiet: Bool { reporting.quiet }

            func run() throws {
                try uploadFile(file, to: .put(url: url), delete: false, quiet: quiet)
            }
        }

        struct Blob: ParsableCommand {
            static let configuration = CommandConfiguration(
                abstract: "Upload FILE as an Azure Block Blob (Put Block, Put Block List).", aliases: ["upload-blob"])

            @OptionGroup var blob: BlobOptions

            @Argument(help: "Image to upload.")
            var file: String

            @Argument(help: "The blob's SAS URL (its query string is never printed).")
            var sasUrl: String

            @OptionGroup var reporting: QuietOption
            var quiet: Bool { reporting.quiet }

            func run() throws {
                let destination = UploadDestination.blob(
                    sasURL: sasUrl, blockSizeMiB: blob.sasBlockSize, concurrency: blob.sasBlockConcurrency)
                try uploadFile(file, to: destination, delete: false, quiet: quiet)
            }
        }
    }

    struct StreamBlob: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "blob", abstract: "Capture memory into an Azure Block Blob.")

        @OptionGroup var capture: CaptureOptions

        @OptionGroup var blob: BlobOptions

        @Argument(help: "The blob's SAS URL (its query string is never printed).")
        var sasUrl: String

        func run() throws {
            let settings = TransferSettings.fromProcessEnvironment(onRetry: { warn($0) })
            var sink: AzureBlockBlobSink?
            let destination = MemoryCapture.Destination.stream(name: Redaction.redactedURL(sasUrl)) { plan in
                let opened = try AzureBlockBlobSink(
                    sasURL: sasUrl, estimatedSize: BlockPlan.streamEstimate(memoryBytes: plan.memoryBytes),
                    blockSizeMiB: blob.sasBlockSize, concurrency: blob.sasBlockConcurrency, settings: settings)
                sink = opened
                return opened
            }
            _ = try runCapture("stream", capture.memoryCapture(to: destination, manifestFor: "-"), quiet: capture.pipeline.quiet)
            if let receipt = sink?.receipt, !capture.pipeline.quiet {
                FileHandleStandardError.write(
                    "avml: streamed \(receipt.bytes) bytes to \(receipt.url) as \(receipt.blocks ?? 0) blocks\n")
            }
        }
    }
}
