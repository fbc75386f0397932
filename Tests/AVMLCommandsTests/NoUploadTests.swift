import ArgumentParser
import Testing

@testable import AVMLCommands

/// The acquire-only build refuses what it cannot do, before any memory is read.
struct NoUploadTests {
    @Test(arguments: [
        // AVML's own runbook lines
        ["--url", "https://bucket.s3.amazonaws.com/k?X-Amz-Signature=secret", "image.lime"],
        ["--sas-url", "https://a.blob.core.windows.net/c/b?sig=secret", "--delete", "image.lime"],
        ["--compress", "--sas-block-size", "8", "image.avml"],
    ])
    func uploadOptionsFailValidationWithAdvice(arguments: [String]) {
        #expect {
            _ = try Acquire<NoUpload>.parse(arguments)
        } throws: { error in
            let message = Acquire<NoUpload>.message(for: error)
            return message.contains("avml-minimal") && message.contains("full avml") && message.contains("Nothing was captured")
                && !message.contains("secret")
        }
    }

    @Test func plainAcquireParsesAndAsksForNoUpload() throws {
        let command = try Acquire<NoUpload>.parse(["--compress", "--source", "/proc/kcore", "image.avml"])
        #expect(command.filename == "image.avml" && command.capture.compress)
        #expect(!command.upload.isRequested)
    }

    @Test func theRefusedOptionsStayOutOfTheHelp() {
        let help = Acquire<NoUpload>.helpMessage()
        #expect(!help.contains("--url") && !help.contains("--sas-url") && !help.contains("--delete"))
        #expect(help.contains("--compress") && help.contains("--source"))
    }

    @Test(arguments: [
        (UploadUnavailable.self as any ParsableCommand.Type, ["put", "image.lime", "https://h/k?sig=secret"]),
        (StreamBlobUnavailable.self, ["--sas-block-size", "8", "https://a.blob.core.windows.net/c/b?sig=secret"]),
    ])
    func uploadCommandsAreRefusedWithTheSameAdvice(command: any ParsableCommand.Type, arguments: [String]) {
        #expect {
            _ = try command.parseAsRoot(arguments)
        } throws: { error in
            let message = command.message(for: error)
            return message.contains("full avml") && !message.contains("secret")
        }
    }
}
