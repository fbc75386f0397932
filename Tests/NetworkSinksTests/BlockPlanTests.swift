import FoundationEssentials
import Testing

@testable import NetworkSinks

struct BlockPlanTests {
    static let mib: UInt64 = 1 << 20

    @Test(
        arguments: [
            // small images: Azure's 5 MiB floor
            (UInt64(0), nil, UInt64(5)),
            (1, nil, 5),
            (250_000 * mib, nil, 5),  // exactly 50,000 blocks of 5 MiB
            // one byte more needs larger blocks: rounded up to a whole MiB
            (250_000 * mib + 1, nil, 6),
            // 1 TiB / 50,000 = 20.97 MiB → 21 MiB
            (1 << 40, nil, 21),
            // the user's floor wins when larger
            (1 << 30, 100, 100),
            (1 << 40, 16, 21),
            // floors above 4000 MiB are capped
            (1 << 30, 9000, 4000),
            // the largest blob: 50,000 blocks of 4000 MiB
            (BlockPlan.maximumBlobSize, nil, 4000),
        ] as [(UInt64, UInt64?, UInt64)])
    func blockSize(size: UInt64, floorMiB: UInt64?, expectedMiB: UInt64) throws {
        let plan = try BlockPlan(size: size, blockSizeMiB: floorMiB)
        #expect(plan.blockSize == expectedMiB * Self.mib)
        #expect(UInt64(plan.blockCount(for: size)) <= BlockPlan.maximumBlocks)
    }

    @Test func refusesBlobsBeyondFiftyThousandBlocksOf4000MiB() {
        #expect(throws: UploadError.self) { try BlockPlan(size: BlockPlan.maximumBlobSize + 1) }
    }

    @Test(
        arguments: [
            // default 10 with small blocks
            (UInt64(5), nil, 10),
            (UInt64(5), 3, 3),
            // 100 MiB blocks: 500 / 100 = 5 at most
            (100, 10, 5),
            (100, 2, 2),
            // 300 MiB blocks: 1 in flight
            (300, 10, 1),
            // 4000 MiB blocks: still at least 1
            (4000, 10, 1),
            // 50 MiB blocks: exactly 10 fit in 500 MiB
            (50, 20, 10),
        ] as [(UInt64, Int?, Int)])
    func concurrencyIsCappedAt500MiBInFlight(blockMiB: UInt64, requested: Int?, expected: Int) throws {
        let plan = try BlockPlan(size: 1 << 30, blockSizeMiB: blockMiB, concurrency: requested)
        #expect(plan.concurrency == expected)
        #expect(UInt64(plan.concurrency) * plan.blockSize <= BlockPlan.maximumInFlight || plan.concurrency == 1)
    }

    @Test func streamEstimateAdds100MiB() {
        #expect(BlockPlan.streamEstimate(memoryBytes: 1 << 30) == (1 << 30) + 100 * Self.mib)
        #expect(BlockPlan.streamEstimate(memoryBytes: .max) == .max)
    }

    @Test func rangesCoverTheFileInOrder() throws {
        let plan = try BlockPlan(size: 12 * Self.mib + 7)
        #expect(plan.blockCount(for: 12 * Self.mib + 7) == 3)
        #expect(plan.range(ofBlock: 0, size: 12 * Self.mib + 7) == 0..<5 * Self.mib)
        #expect(plan.range(ofBlock: 2, size: 12 * Self.mib + 7) == 10 * Self.mib..<12 * Self.mib + 7)
        #expect(plan.blockCount(for: 0) == 0)
    }

    @Test func blockIDsAreEqualLengthBase64InCommitOrder() {
        let ids = [0, 1, 9, 10, 49_999, 99_999_999].map(BlockPlan.blockID)
        #expect(ids[0] == "YXZtbDAwMDAwMDAw")  // base64("avml00000000")
        #expect(Set(ids.map(\.count)) == [16])
        #expect(ids.allSatisfy { !$0.contains("+") && !$0.contains("/") && !$0.contains("=") })
        let all = (0..<50_000).map(BlockPlan.blockID)
        #expect(Set(all).count == 50_000)
        // Letters and digits only: they go into the query unencoded.
        #expect(
            all.allSatisfy {
                $0.unicodeScalars.allSatisfy { ("A"..."Z").contains($0) || ("a"..."z").contains($0) || ("0"..."9").contains($0) }
            })
        #expect(Data(base64Encoded: BlockPlan.blockID(49_999)).map { String(decoding: $0, as: UTF8.self) } == "avml00049999")
    }

    @Test func blockListListsEveryBlockAsLatest() {
        let xml = BlockPlan.blockListXML(blockCount: 2)
        #expect(xml.contains("<BlockList>"))
        #expect(xml.contains("<Latest>YXZtbDAwMDAwMDAw</Latest>"))
        #expect(xml.contains("<Latest>\(BlockPlan.blockID(1))</Latest>"))
    }

    @Test func committedBlocksAreReadFromGetBlockList() {
        let xml = """
            <?xml version="1.0" encoding="utf-8"?><BlockList><CommittedBlocks>\
            <Block><Name>YXZtbDAwMDAwMDAw</Name><Size>5242880</Size></Block>\
            <Block><Name>YXZtbDAwMDAwMDAx</Name><Size>12</Size></Block>\
            </CommittedBlocks><UncommittedBlocks><Block><Name>eA==</Name><Size>1</Size></Block></UncommittedBlocks></BlockList>
            """
        let blocks = AzureBlockBlob.committedBlocks(in: xml)
        #expect(blocks.map(\.name) == ["YXZtbDAwMDAwMDAw", "YXZtbDAwMDAwMDAx"])
        #expect(blocks.map(\.size) == [5_242_880, 12])
    }
}
