import FoundationEssentials
import Hashing
import ImageFormats
import MemorySources
import TestSupport
import Testing

@testable import Capture
@testable import RecordEngine

struct IntegrityTests {
    let directory: TemporaryDirectory

    init() throws {
        directory = try TemporaryDirectory()
    }

    /// Captures 3 MiB of a raw memory file, the middle MiB zero; returns the report and the manifest it wrote.
    func capture(compressed: Bool = false) throws -> (CaptureReport, Manifest) {
        var bytes = memory(3 << 20, seed: 31)
        bytes.replaceSubrange(1 << 20..<2 << 20, with: [UInt8](repeating: 0, count: 1 << 20))
        let raw = directory.write("memory.raw", bytes)
        let iomem = directory.write(
            "iomem", Array("00000000-000fffff : System RAM\n00100000-001fffff : Reserved\n00200000-002fffff : System RAM\n".utf8))
        var capture = MemoryCapture(
            destination: .file(directory["image"]), compressed: compressed, source: .rawFile(raw), threads: 2,
            manifestPath: directory["image.json"])
        capture.iomemPath = iomem
        let report = try capture.run()
        return (report, try Manifest.read(from: directory["image.json"]))
    }

    @Test func manifestRecordsWhatWasCapturedAndTheImagesHash() throws {
        let (result, manifest) = try capture()
        let image = try #require(directory.read("image"))
        #expect(manifest.size == UInt64(image.count))
        #expect(manifest.sha256 == SHA256.hash(data: image).description)
        #expect(manifest.source == directory["memory.raw"])
        #expect(manifest.format == "lime")
        #expect(manifest.ranges.planned == [.init(0..<0x10_0000), .init(0x20_0000..<0x30_0000)])
        #expect(manifest.ranges.captured == manifest.ranges.planned)
        #expect(manifest.exitStatus == 0 && manifest.error == nil)
        #expect(manifest.tool == .init(name: "avml", version: Manifest.toolVersion))
        #expect(!manifest.host.hostname.isEmpty && !manifest.host.kernelRelease.isEmpty)
        #expect(manifest.startedAt <= manifest.finishedAt && manifest.startedAt.hasSuffix("Z"))
        #expect(result.pipeline.statistics.zeroBlocksSkipped == 0)
    }

    @Test func manifestJSONUsesTheDocumentedNamesAndRoundTrips() throws {
        let (_, manifest) = try capture(compressed: true)
        let text = String(decoding: try #require(directory.read("image.json")), as: UTF8.self)
        for key in [
            "\"tool\"", "\"host\"", "\"boot_id\"", "\"kernel_release\"", "\"source\"", "\"format\"", "\"ranges\"", "\"planned\"",
            "\"captured\"", "\"zero_blocks_skipped\"", "\"unreadable\"", "\"size\"", "\"sha256\"", "\"started_at\"",
            "\"finished_at\"", "\"exit_status\"", "\"timings\"", "\"zero_check\"",
        ] {
            #expect(text.contains(key), "manifest lacks \(key)")
        }
        #expect(same(try manifest.encoded(), Array(text.utf8)))
    }

    @Test func aFailedCaptureIsRecordedWithoutAHash() throws {
        var capture = MemoryCapture(
            destination: .file(directory["x.lime"]), compressed: false, source: .rawFile(directory["missing.raw"]),
            threads: 1, manifestPath: directory["x.lime.json"])
        capture.devicePaths = [:]
        let error = captureError { _ = try capture.run() }
        let manifest = try Manifest.read(from: directory["x.lime.json"])
        #expect(manifest.exitStatus == 1 && manifest.error == error.map(String.init(describing:)))
        #expect(manifest.error?.contains("missing.raw") == true)
        #expect(manifest.size == nil && manifest.sha256 == nil)
        #expect(!directory.exists("x.lime"))
    }

    @Test func verifyAcceptsAnIntactImageAndItsManifest() throws {
        let (_, manifest) = try capture()
        let result = try verifyImage(path: directory["image"], manifestPath: nil)
        #expect(result.manifest == directory["image.json"])
        #expect(result.sha256 == manifest.sha256)
        #expect(result.summary.records.count == 2)
    }

    @Test func aFlippedBitInALiMEBodyIsCaughtByTheManifestHash() throws {
        _ = try capture()
        var image = try #require(directory.read("image"))
        image[40_000] ^= 0x10
        directory.write("image", image)
        #expect(throws: VerificationError.self) {
            try verifyImage(path: directory["image"], manifestPath: directory["image.json"])
        }
    }

    @Test func aFlippedBitInACompressedRecordIsCaughtByItsCRC() throws {
        _ = try capture(compressed: true)
        var image = try #require(directory.read("image"))
        image[32 + 10 + 8 + 500] ^= 0x10
        directory.write("image", image)
        do {
            _ = try verifyImage(path: directory["image"], manifestPath: nil)
            Issue.record("a damaged record must fail verification")
        } catch let error as ImageError {
            guard case .snappy = error.reason else {
                Issue.record("expected a Snappy error, got \(error)")
                return
            }
            #expect(error.record?.start == 0)
        }
    }

    @Test func aTruncatedImageFailsOnItsLastRecord() throws {
        _ = try capture()
        let image = try #require(directory.read("image"))
        directory.write("image", Array(image.dropLast(100)))
        #expect(throws: ImageError.self) { try verifyImage(path: directory["image"], manifestPath: nil) }
    }

    @Test func infoFindsRangesGapsAndRecordsVolatilityCannotOpen() throws {
        // One compressible record and one of noise, 2 MiB apart.
        let text = memory(1 << 20, seed: 32)
        var generator = SystemRandomNumberGenerator()
        let noise = (0..<(1 << 17)).flatMap { _ in withUnsafeBytes(of: generator.next() as UInt64) { Array($0) } }
        var image: [[UInt8]] = []
        for (start, data) in [(UInt64(0), text), (UInt64(3 << 20), noise)] {
            let framed = SnappyFraming.encode(data)
            image += [
                RecordHeader(compressed: true, start: start, end: start + UInt64(data.count) - 1).bytes, framed,
                withUnsafeBytes(of: UInt64(framed.count).littleEndian) { Array($0) },
            ]
        }
        directory.write("mixed.avml", joined(image))
        let summary = try ImageSummary.read(path: directory["mixed.avml"])
        #expect(summary.format == "lime_compressed")
        #expect(summary.ranges == [0..<0x10_0000, 0x30_0000..<0x40_0000])
        #expect(summary.gaps == [0x10_0000..<0x30_0000])
        #expect(summary.volatilityUnreadable.map(\.header.start) == [0x30_0000])
        #expect(summary.records[0].volatilityCanRead)
        #expect(summary.fileSize == UInt64(joined(image).count))
    }
}
