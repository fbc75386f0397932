import AVMLCommands
import ArgumentParser
import Capture

/// The acquire-only build: acquire, convert, verify, info, stream tcp and symbols, with no
/// HTTP or TLS stack, so that less is copied onto the examined host. `acquire`'s
/// upload options are refused with advice to use the full avml (`NoUpload`).
@main
struct AVMLMinimal: AVMLRootCommand {
    static let configuration = CommandConfiguration(
        commandName: "avml-minimal",
        abstract: "Acquire volatile memory for Linux (acquire-only build: no uploads; the full avml has them).",
        version: Manifest.toolVersion,
        subcommands: [
            Acquire<NoUpload>.self, Check.self, Convert.self, Verify.self, Info.self, Stream.self, Symbols.self,
            UploadUnavailable.self,
        ],
        defaultSubcommand: Acquire<NoUpload>.self
    )

    struct Stream: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Capture memory straight to a TCP receiver, with no local file.",
            subcommands: [StreamTCP.self, StreamBlobUnavailable.self])
    }
}
