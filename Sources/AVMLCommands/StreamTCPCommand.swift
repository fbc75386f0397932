import ArgumentParser
import ImageFormats
import TCPStreaming

/// `avml stream tcp`: memory over a plain TCP connection, in both binaries.
public struct StreamTCP: ParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "tcp", abstract: "Capture memory over a plain TCP connection (e.g. to `nc -l PORT > image`).")

    @OptionGroup var capture: CaptureOptions

    @Argument(help: "Receiver as HOST:PORT, IPv4:PORT or [IPv6]:PORT.")
    var destination: String

    public init() {}

    public func run() throws {
        var sent: UInt64 = 0
        _ = runCapture(
            "stream", image: destination, compressed: capture.compress, manifest: capture.manifestPath(forImage: "-"),
            quiet: capture.pipeline.quiet
        ) { progress in
            let (result, bytes) = try TCPCapture.run(
                capture.acquisition(destination: destination), address: destination, progress: progress)
            sent = bytes
            return result
        }
        if !capture.pipeline.quiet {
            FileHandleStandardError.write("avml: streamed \(sent) bytes to \(escapedForLog(destination))\n")
        }
    }
}
