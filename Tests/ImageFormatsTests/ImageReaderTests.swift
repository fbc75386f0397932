import Glibc
import TestSupport
import Testing

@testable import ImageFormats

func limeRecord(start: UInt64, _ data: [UInt8]) -> [UInt8] {
    RecordHeader(compressed: false, start: start, end: start + UInt64(data.count) - 1).bytes + data
}

func avmlRecord(start: UInt64, _ data: [UInt8]) -> [UInt8] {
    let framed = SnappyFraming.encode(data)
    return RecordHeader(compressed: true, start: start, end: start + UInt64(data.count) - 1).bytes + framed
        + withUnsafeBytes(of: UInt64(framed.count).littleEndian) { Array($0) }
}

/// Reads every record and its bytes, as (start, bytes).
func readAll(_ path: String, piece: Int = 1 << 20) throws -> [(UInt64, [UInt8])] {
    let reader = try ImageReader(path: path)
    var result: [(UInt64, [UInt8])] = []
    var buffer = [UInt8](repeating: 0, count: piece)
    while let record = try reader.nextRecord() {
        var bytes: [UInt8] = []
        while true {
            let count = try buffer.withUnsafeMutableBytes { try reader.readBody(into: $0) }
            if count == 0 { break }
            bytes += buffer[..<count]
        }
        result.append((record.header.start, bytes))
    }
    return result
}

struct ImageReaderTests {
    let directory: TemporaryDirectory

    init() throws {
        directory = try TemporaryDirectory()
    }
    let first = Samples.text(70_000)
    let second = Samples.random(5000, seed: 3)

    @Test(arguments: [1 << 20, 4096, 100])
    func readsLiMEAndCompressedRecords(piece: Int) throws {
        let path = directory.write("mixed", limeRecord(start: 0x1000, first) + avmlRecord(start: 0x100000, second))
        let records = try readAll(path, piece: piece)
        #expect(records.map(\.0) == [0x1000, 0x100000])
        #expect(records.map(\.1) == [first, second])
    }

    @Test func skipsBodiesWithoutReadingThem() throws {
        let path = directory.write("skip", avmlRecord(start: 0, first) + limeRecord(start: 0x20000, second))
        let reader = try ImageReader(path: path)
        #expect(try reader.nextRecord()?.header.start == 0)
        #expect(try reader.nextRecord()?.offset == UInt64(avmlRecord(start: 0, first).count))
        #expect(try reader.nextRecord() == nil)
    }

    /// The reason and byte offset reading `bytes` fails with.
    func failure(_ bytes: [UInt8]) -> (ImageError.Reason, UInt64?)? {
        let path = directory.write("bad", bytes)
        do {
            _ = try readAll(path)
            return nil
        } catch let error as ImageError {
            #expect(error.description.hasPrefix(path))
            return (error.reason, error.offset)
        } catch {
            return nil
        }
    }

    @Test func namesEachKindOfDamage() throws {
        let good = limeRecord(start: 0x1000, [1, 2, 3, 4])
        #expect(failure(Array(good.prefix(20)))! == (.truncated("a record header"), 0))
        #expect(failure(Array(good.dropLast()))! == (.truncated("record data"), 32))
        var magic = good
        magic[0] = 0
        #expect(failure(magic)! == (.header(.badMagic(0x4c69_4d00)), 0))
        var version = good
        version[4] = 3
        #expect(failure(version)! == (.header(.badVersion(magic: RecordHeader.limeMagic, version: 3)), 0))
        var reserved = good
        reserved[31] = 1
        #expect(failure(reserved)! == (.header(.reservedNotZero(1 << 56)), 0))
        var backwards = good
        backwards[16] = 0
        backwards[17] = 0
        #expect(failure(backwards)! == (.header(.endBeforeStart(start: 0x1000, end: 0)), 0))
        let overlapping = good + limeRecord(start: 0x1003, [9])
        #expect(failure(overlapping)! == (.outOfOrder(previousEnd: 0x1003), 36))
        let descending = good + limeRecord(start: 0x10, [9])
        #expect(failure(descending)! == (.outOfOrder(previousEnd: 0x1003), 36))
    }

    @Test func namesDamageInCompressedRecords() throws {
        let good = avmlRecord(start: 0, Samples.text(1000))
        var crc = good
        crc[32 + 10 + 4] ^= 0xff
        guard case .snappy(.crcMismatch)? = failure(crc)?.0 else {
            Issue.record("a flipped CRC byte must be a CRC mismatch")
            return
        }
        var trailer = good
        trailer[trailer.count - 8] ^= 1
        let stream = UInt64(good.count - 40)
        #expect(failure(trailer)! == (.trailerMismatch(stored: stream ^ 1, actual: stream), UInt64(good.count - 8)))
        var reserved = good
        reserved[32 + 10] = 0x05
        #expect(failure(reserved)! == (.snappy(.reservedChunk(type: 5)), 42))
        #expect(failure(Array(good.dropLast(9)))?.0 == .truncated("a compressed chunk"))
        // A stream holding more than the record's 999 bytes.
        let long = RecordHeader(compressed: true, start: 0, end: 998).bytes + Array(good.dropFirst(32))
        #expect(failure(long)?.0 == .decodedTooMuch(declared: 999))
    }

    @Test func refusesEmptyAndMissingFiles() {
        #expect(failure([])! == (.empty, nil))
        #expect(throws: ImageError.self) { try ImageReader(path: "\(directory.path)/missing") }
    }
}
