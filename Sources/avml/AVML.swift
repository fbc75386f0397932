import AVMLCommands
import ArgumentParser
import Capture

/// The full avml: everything `avml-minimal` does, plus uploads (`upload`, `stream
/// blob`, and `acquire --url/--sas-url/--delete`) over HTTP and TLS.
@main
struct AVML: AVMLRootCommand {
    static let configuration = CommandConfiguration(
        commandName: "avml",
        abstract: "Acquire volatile memory for Linux: capture, convert and verify physical memory images.",
        version: Manifest.toolVersion,
        subcommands: [
            Acquire<UploadOptions>.self, Check.self, Convert.self, Verify.self, Info.self, Upload.self, Stream.self,
            Symbols.self,
        ],
        defaultSubcommand: Acquire<UploadOptions>.self
    )

    struct Stream: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Capture memory straight to the network, with no local file.",
            subcommands: [StreamBlob.self, StreamTCP.self])
    }
}
