import ArgumentParser
import Capture

/// `acquire`'s upload options in the acquire-only build (`avml-minimal`), which links
/// no HTTP or TLS stack: they are parsed, hidden from the help, only to be refused at
/// once with advice, so that a runbook line with `--url` stops before any memory is
/// read instead of capturing and then silently not uploading.
public struct NoUpload: AcquireUpload {
    @Option(help: .hidden) var url: String?
    @Option(help: .hidden) var sasUrl: String?
    @Flag(help: .hidden) var delete = false
    @Option(help: .hidden) var sasBlockSize: UInt64?
    @Option(help: .hidden) var sasBlockConcurrency: Int?

    public init() {}

    /// The upload options on the command line, by name.
    var given: [String] {
        [
            url.map { _ in "--url" }, sasUrl.map { _ in "--sas-url" }, delete ? "--delete" : nil,
            sasBlockSize.map { _ in "--sas-block-size" }, sasBlockConcurrency.map { _ in "--sas-block-concurrency" },
        ].compactMap { $0 }
    }

    public func validate() throws {
        guard !given.isEmpty else { return }
        throw Self.refusal(given.joined(separator: ", "))
    }

    /// Why `what` cannot be done here, and what to use instead.
    static func refusal(_ what: String) -> ValidationError {
        ValidationError(
            "\(what): this is avml-minimal, the acquire-only build, which cannot upload. "
                + "Use the full avml binary for uploads, or `avml-minimal stream tcp HOST:PORT` to send the image "
                + "without a local file. Nothing was captured.")
    }

    public var isRequested: Bool { false }

    public func checkBeforeReading(_ plan: CapturePlan, compressed: Bool) {}

    public func uploadIfRequested(file: String, quiet: Bool) throws(CommandFailure) {}
}

/// `avml upload …` in the acquire-only build: hidden, and refused with `NoUpload`'s advice.
public struct UploadUnavailable: ParsableCommand {
    public static let configuration = CommandConfiguration(commandName: "upload", shouldDisplay: false)

    @Argument(parsing: .allUnrecognized) var arguments: [String] = []

    public init() {}

    public func validate() throws { throw NoUpload.refusal("upload") }
}

/// `avml stream blob …` in the acquire-only build: hidden, and refused with `NoUpload`'s advice.
public struct StreamBlobUnavailable: ParsableCommand {
    public static let configuration = CommandConfiguration(commandName: "blob", shouldDisplay: false)

    @Argument(parsing: .allUnrecognized) var arguments: [String] = []

    public init() {}

    public func validate() throws { throw NoUpload.refusal("stream blob") }
}
