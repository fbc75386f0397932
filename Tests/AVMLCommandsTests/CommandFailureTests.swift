import ArgumentParser
import TestSupport
import Testing

@testable import AVMLCommands

/// Commands return their failures to `main` (issue 22): a refusal can be checked in-process,
/// with the message `main` prints and nothing written.
struct CommandFailureTests {
    struct DidNotFail: Error {}

    /// Runs `arguments` as the binaries would, returning what `main` would print.
    func failure(_ command: ParsableCommand.Type, _ arguments: [String]) throws -> String {
        var parsed = try command.parse(arguments)
        do {
            try parsed.run()
        } catch let failure as CommandFailure {
            return failure.message
        }
        throw DidNotFail()
    }

    @Test func acquireRefusesAnImageOverItsDiskLimitBeforeReading() throws {
        let directory = try TemporaryDirectory()
        let memory = directory.write("memory.raw", [UInt8](repeating: 1, count: 4 << 20))
        let message = try failure(
            Acquire<NoUpload>.self,
            ["--source", memory, "--max-disk-usage", "1", "--no-symbols", "--quiet", directory["image.lime"]])
        #expect(
            message.hasPrefix("error: the image would need about 4 MiB") && message.contains("--max-disk-usage 1"), "\(message)")
        #expect(!directory.exists("image.lime"))
    }

    @Test func convertRefusesToWriteOverItsSource() throws {
        let directory = try TemporaryDirectory()
        let image = directory.write("image.lime", [])
        let message = try failure(Convert.self, ["--quiet", image, image])
        #expect(message.hasPrefix("error: ") && message.contains(image), "\(message)")
    }

    @Test func convertOfAMissingImageNamesItAndWritesNothing() throws {
        let directory = try TemporaryDirectory()
        let message = try failure(Convert.self, ["--quiet", directory["none.lime"], directory["out.raw"]])
        #expect(message.hasPrefix("error: ") && message.contains("none.lime") && message.contains("No such file"), "\(message)")
        #expect(!directory.exists("out.raw"))
    }
}
