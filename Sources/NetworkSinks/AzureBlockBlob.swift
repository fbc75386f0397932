import AsyncHTTPClient
import NIOCore

/// The Block Blob REST calls an upload needs, against one SAS URL.
///
///     Put Block       PUT  {blob}?{sas}&comp=block&blockid={base64 id}     body: the block
///     Put Block List  PUT  {blob}?{sas}&comp=blocklist                     body: <BlockList><Latest>id</Latest>…
///     Get Block List  GET  {blob}?{sas}&comp=blocklist&blocklisttype=committed
///
/// Blocks that are never committed are discarded by Azure (after a week), so an
/// upload that fails before Put Block List leaves no blob behind.
struct AzureBlockBlob: Sendable {
    /// REST version: 4000 MiB blocks need 2019-12-12 or later.
    static let apiVersion = "2021-08-06"

    let url: UploadURL
    let transport: HTTPTransport

    init(url: UploadURL, settings: TransferSettings) throws(UploadError) {
        guard url.namesBlob else { throw .notABlobURL(url.description) }
        self.url = url
        self.transport = try HTTPTransport(url: url, settings: settings)
    }

    /// Put Block for block `index` of `count`, its body made anew for every attempt.
    func putBlock(
        index: Int, count: Int?, range: Range<UInt64>, counter: TransferCounter?,
        body: @escaping @Sendable (AttemptProgress) throws(UploadError) -> HTTPClientRequest.Body
    ) async throws(UploadError) {
        let id = BlockPlan.blockID(index)
        let target = url.addingQuery("comp=block&blockid=" + Self.percentEncoded(id))
        let of = count.map { " of \($0)" } ?? ""
        let purpose = "block \(index + 1)\(of), bytes \(range.lowerBound)-\(range.upperBound - 1)"
        let label = RequestLabel(method: "PUT", url: url, purpose: purpose)
        _ = try await transport.send(label, counter: counter) { (attempt) throws(UploadError) in
            var request = HTTPClientRequest(url: target)
            request.method = .PUT
            request.headers.add(name: "x-ms-version", value: Self.apiVersion)
            request.body = try body(attempt)
            return request
        }
    }

    /// Put Block List: commits blocks 0..<count, in order, as the blob's content.
    func commit(blockCount: Int) async throws(UploadError) {
        let xml = BlockPlan.blockListXML(blockCount: blockCount)
        let target = url.addingQuery("comp=blocklist")
        let label = RequestLabel(method: "PUT", url: url, purpose: "Put Block List, \(blockCount) blocks")
        _ = try await transport.send(label) { _ in
            var request = HTTPClientRequest(url: target)
            request.method = .PUT
            request.headers.add(name: "x-ms-version", value: Self.apiVersion)
            request.headers.add(name: "Content-Type", value: "application/xml; charset=utf-8")
            request.body = .bytes(ByteBuffer(string: xml))
            return request
        }
    }

    /// Get Block List: checks the committed blocks are ours, in order, and add up to `size`.
    ///
    /// - Returns: true when checked; false when the SAS token may not read the list (403).
    /// - Throws: `UploadError.commitMismatch` when the list differs.
    func verifyCommitted(blockCount: Int, size: UInt64) async throws(UploadError) -> Bool {
        let target = url.addingQuery("comp=blocklist&blocklisttype=committed")
        let label = RequestLabel(method: "GET", url: url, purpose: "Get Block List")
        let result: HTTPResult
        do {
            result = try await transport.send(label) { _ in
                var request = HTTPClientRequest(url: target)
                request.method = .GET
                request.headers.add(name: "x-ms-version", value: Self.apiVersion)
                return request
            }
        } catch .rejected(_, let status, _, _) where status == 401 || status == 403 {
            return false
        }
        let committed = Self.committedBlocks(in: result.body)
        let names = committed.map(\.name)
        let expected = (0..<blockCount).map(BlockPlan.blockID)
        guard names == expected else {
            throw .commitMismatch(
                url.description, detail: "holds \(names.count) blocks, expected \(blockCount) in upload order")
        }
        let total = committed.reduce(UInt64(0)) { $0 + $1.size }
        guard total == size else {
            throw .commitMismatch(url.description, detail: "adds up to \(total) bytes, expected \(size)")
        }
        return true
    }

    func shutdown() async {
        await transport.shutdown()
    }

    /// `(name, size)` of each `<Block>` in a Get Block List answer, in order.
    static func committedBlocks(in xml: String) -> [(name: String, size: UInt64)] {
        var blocks: [(name: String, size: UInt64)] = []
        var rest = Substring(xml)
        if let start = rest.firstRange(of: "<CommittedBlocks>") {
            rest = rest[start.upperBound...]
            if let end = rest.firstRange(of: "</CommittedBlocks>") { rest = rest[..<end.lowerBound] }
        } else {
            return []
        }
        while let open = rest.firstRange(of: "<Block>"), let close = rest[open.upperBound...].firstRange(of: "</Block>") {
            let block = String(rest[open.upperBound..<close.lowerBound])
            let name = HTTPTransport.xmlElement("Name", in: block) ?? ""
            let size = HTTPTransport.xmlElement("Size", in: block).flatMap { UInt64($0) } ?? 0
            blocks.append((name, size))
            rest = rest[close.upperBound...]
        }
        return blocks
    }

    /// Percent-encodes everything but RFC 3986's unreserved characters.
    static func percentEncoded(_ text: String) -> String {
        var output = ""
        for byte in text.utf8 {
            switch byte {
            case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"),
                UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: "_"),
                UInt8(ascii: "~"):
                output.unicodeScalars.append(Unicode.Scalar(byte))
            default:
                let digits = Array("0123456789ABCDEF".unicodeScalars)
                output.unicodeScalars.append("%")
                output.unicodeScalars.append(digits[Int(byte >> 4)])
                output.unicodeScalars.append(digits[Int(byte & 15)])
            }
        }
        return output
    }
}

/// `avml upload blob` and `acquire --sas-url`: a file as an Azure Block Blob.
///
/// The file is cut by `BlockPlan`; up to `plan.concurrency` blocks are in flight,
/// each streamed from the file (never the whole block in memory) and retried on its
/// own. Only when every block is in does Put Block List commit them, in order; then
/// Get Block List checks the commit where the SAS token allows reading it.
public enum AzureBlockBlobUpload {
    /// Uploads `path` as the blob `sasURL` names.
    ///
    /// - Parameters:
    ///   - path: a finished image file.
    ///   - sasURL: the blob's URL with a SAS token that may create and write it.
    ///   - blockSizeMiB: `--sas-block-size`, a floor on the block size.
    ///   - concurrency: `--sas-block-concurrency` (default 10, capped at 500 MiB in flight).
    ///   - settings: retries, time-outs, proxy and CA bundle.
    ///   - progress: bytes handed to the network so far, and the file's size.
    /// - Returns: what was committed.
    /// - Throws: `UploadError` naming the block, the status and the server's text; nothing is committed then.
    public static func upload(
        file path: String, to sasURL: String, blockSizeMiB: UInt64? = nil, concurrency: Int? = nil,
        settings: TransferSettings, progress: (@Sendable (UInt64, UInt64) -> Void)? = nil
    ) async throws(UploadError) -> UploadReceipt {
        let destination = try UploadURL(sasURL)
        let source = try UploadSource(path: path)
        let plan = try BlockPlan(size: source.size, blockSizeMiB: blockSizeMiB, concurrency: concurrency)
        let blob = try AzureBlockBlob(url: destination, settings: settings)
        let counter = progress.map { TransferCounter(total: source.size, report: $0) }
        let count = plan.blockCount(for: source.size)
        do throws(UploadError) {
            try await uploadBlocks(source: source, plan: plan, count: count, blob: blob, counter: counter)
            try await blob.commit(blockCount: count)
            let verified = try await blob.verifyCommitted(blockCount: count, size: source.size)
            await blob.shutdown()
            if let now = source.currentSize(), now != source.size {
                throw UploadError.fileChanged(path: path, expected: source.size, actual: now)
            }
            return UploadReceipt(
                url: destination.description, bytes: source.size, blocks: count, blockSize: plan.blockSize,
                blockListVerified: verified)
        } catch {
            await blob.shutdown()
            throw error
        }
    }

    /// Sends blocks 0..<count, at most `plan.concurrency` at once; the first failure cancels the rest.
    private static func uploadBlocks(
        source: UploadSource, plan: BlockPlan, count: Int, blob: AzureBlockBlob, counter: TransferCounter?
    ) async throws(UploadError) {
        do {
            try await withThrowingTaskGroup(of: Void.self) { group in
                var next = 0
                func start(_ index: Int) {
                    let range = plan.range(ofBlock: index, size: source.size)
                    group.addTask {
                        try await blob.putBlock(index: index, count: count, range: range, counter: counter) { attempt in
                            source.body(range, progress: attempt)
                        }
                    }
                }
                while next < min(plan.concurrency, count) {
                    start(next)
                    next += 1
                }
                while try await group.next() != nil {
                    if next < count {
                        start(next)
                        next += 1
                    }
                }
            }
        } catch let error as UploadError {
            throw error
        } catch {
            throw .cancelled
        }
    }
}
