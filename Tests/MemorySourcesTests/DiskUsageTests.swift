import Testing

@testable import MemorySources

struct DiskUsageTests {
    @Test func estimateAddsAVMLsAllowancePerRange() {
        // AVML's snapshot test: 0..100, 100..200, 200..300 → 300 + 3 × 102400.
        #expect(DiskUsageLimit.estimate([0..<100, 100..<200, 200..<300]) == 307_500)
        #expect(DiskUsageLimit.estimate([0..<(1 << 20), (1 << 20) + 10..<(1 << 30)]) == (1 << 30) - 10 + 204_800)
    }

    @Test func maxDiskUsageIsInMiB() throws {
        let limit = DiskUsageLimit(maxMiB: 10)
        try limit.check(estimate: 10 << 20, destination: "image.lime")
        do {
            try limit.check(estimate: (10 << 20) + 1, destination: "image.lime")
            Issue.record("must be refused")
        } catch {
            #expect(error.reason == .diskUsage(estimate: (10 << 20) + 1, allowed: 10 << 20, limit: "--max-disk-usage 10"))
        }
    }

    @Test(
        arguments: [
            // Well below the limit.
            (UInt64(10), UInt64(1000), UInt64(0), 10.0, true),
            // Exactly at the limit.
            (1, 1000, 99, 10.0, true),
            // The disk is already past the limit.
            (1, 1000, 910, 10.0, false),
            // A fraction of a percent.
            (100, 1_000_000, 0, 0.01, true),
            (101, 1_000_000, 0, 0.01, false),
        ] as [(UInt64, UInt64, UInt64, Double, Bool)])
    func percentageCountsWhatIsAlreadyUsed(estimate: UInt64, total: UInt64, used: UInt64, percent: Double, fits: Bool) {
        let limit = DiskUsageLimit(maxPercentage: percent)
        let check = {
            try limit.check(estimate: estimate, destination: "/images/x.lime") { (directory) throws(SourceError) in
                #expect(directory == "/images")
                return (total, used)
            }
        }
        if fits {
            #expect(throws: Never.self, performing: check)
        } else {
            #expect(throws: SourceError.self, performing: check)
        }
    }

    @Test func readsTheRealFilesystem() throws {
        let usage = try DiskUsageLimit.usage(of: "/tmp")
        #expect(usage.total > 0 && usage.used <= usage.total)
    }
}
