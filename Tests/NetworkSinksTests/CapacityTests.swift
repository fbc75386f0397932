import Testing

@testable import NetworkSinks

/// `UploadDestination.checkCapacity`: refusing before the capture what cannot be uploaded after it.
struct CapacityTests {
    static let s3 = "https://bucket.s3.eu-west-1.amazonaws.com/host1.lime?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Signature=ab12"
    static let gcs = "https://storage.googleapis.com/b/host1.lime?X-Goog-Algorithm=GOOG4-RSA-SHA256&X-Goog-Signature=ab12"
    static let azure = "https://acct.blob.core.windows.net/c/host1.lime?sv=2021-08-06&sp=cw&sig=ab12"

    /// (URL, image size, accepted)
    static let singlePutCases: [(String, UInt64, Bool)] = [
        // S3: 5 GiB in one PUT, and not a byte more
        (s3, 5 << 30, true),
        (s3, (5 << 30) + 1, false),
        // Azure Put Blob: 5000 MiB
        (azure, 5000 << 20, true),
        (azure, (5000 << 20) + 1, false),
        // GCS: 5 TiB
        (gcs, 5 << 40, true),
        (gcs, (5 << 40) + 1, false),
        // a server whose limit we do not know: not refused
        ("http://collector.local/upload/host1.lime", .max, true),
    ]

    @Test(arguments: singlePutCases)
    func singlePut(url: String, size: UInt64, accepted: Bool) {
        do {
            try UploadDestination.put(url: url).checkCapacity(imageSizeAtMost: size)
            #expect(accepted)
        } catch {
            #expect(!accepted)
            guard case .singlePutLimit(nil, size, _, _) = error else {
                Issue.record("unexpected \(error)")
                return
            }
            let text = String(describing: error)
            #expect(text.contains("can be up to \(size) bytes") && text.contains("no memory was read"))
            #expect(!text.contains("ab12"))
        }
    }

    @Test func aLiMEImageOfSixGiBOfMemoryIsRefusedForS3ButNotForABlob() throws {
        // 6 GiB of memory in one range: 384 records of 16 MiB, a 32-byte header each.
        let lime = (UInt64(6) << 30) + 384 * 32
        #expect(throws: UploadError.self) { try UploadDestination.put(url: Self.s3).checkCapacity(imageSizeAtMost: lime) }
        try UploadDestination.blob(sasURL: Self.azure, blockSizeMiB: nil, concurrency: nil).checkCapacity(
            imageSizeAtMost: lime)
    }

    @Test func aBlobBeyondFiftyThousandBlocksOf4000MiBIsRefused() {
        let blob = UploadDestination.blob(sasURL: Self.azure, blockSizeMiB: nil, concurrency: nil)
        #expect(throws: Never.self) { try blob.checkCapacity(imageSizeAtMost: BlockPlan.maximumBlobSize) }
        #expect {
            try blob.checkCapacity(imageSizeAtMost: BlockPlan.maximumBlobSize + 1)
        } throws: { error in
            guard case .blobTooLarge = error as? UploadError else { return false }
            return true
        }
    }

    @Test func badURLsAreRefusedBeforeTheCaptureToo() {
        #expect(throws: UploadError.self) { try UploadDestination.put(url: "ftp://h/x").checkCapacity(imageSizeAtMost: 1) }
        #expect {
            try UploadDestination.blob(
                sasURL: "https://acct.blob.core.windows.net/only-a-container?sig=x", blockSizeMiB: nil, concurrency: nil
            )
            .checkCapacity(imageSizeAtMost: 1)
        } throws: { error in
            guard case .notABlobURL = error as? UploadError else { return false }
            return true
        }
    }
}
