import ArgumentParser
import Capture
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
        let destination = MemoryCapture.Destination.stream(name: self.destination) { _ in
            try TCPSink(address: self.destination)
        }
        let report = try runCapture(
            "stream", capture.memoryCapture(to: destination, manifestFor: "-"), quiet: capture.pipeline.quiet)
        if !capture.pipeline.quiet {
            FileHandleStandardError.write(
                "avml: streamed \(report.pipeline.statistics.bytesWritten) bytes to \(escapedForLog(self.destination))\n")
        }
    }
}
