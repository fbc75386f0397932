import NIOCore
import NIOHTTP1

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
    /// Bytes of a Get Block List answer per block, with room to spare: `<Block><Name>`,
    /// a 16-character ID, `</Name><Size>`, up to 10 digits, `</Size></Block>`.
    static let blockListBytesPerBlock = 96

    let url: UploadURL
    let transport: HTTPTransport

    init(url: UploadURL, settings: TransferSettings) throws(UploadError) {
        guard url.namesBlob else { throw .notABlobURL(url.description) }
        self.url = url
        self.transport = try HTTPTransport(url: url, settings: settings)
    }

    /// Put Block for `block`; `count` is the number of blocks when known (a file), for messages.
    func putBlock(_ block: Block, count: Int?, counter: TransferCounter?) async throws(UploadError) {
        let of = count.map { " of \($0)" } ?? ""
        let purpose = "block \(block.index + 1)\(of), bytes \(block.range.lowerBound)-\(block.range.upperBound - 1)"
        // Block IDs are letters and digits (BlockPlan.blockID): nothing to percent-encode.
        let target = url.requestTarget(addingQuery: "comp=block&blockid=" + BlockPlan.blockID(block.index))
        _ = try await transport.send(
            RequestLabel(method: "PUT", url: url, purpose: purpose),
            HTTPRequest(method: .PUT, target: target, headers: ["x-ms-version": Self.apiVersion], body: block.body),
            counter: counter)
    }

    /// Put Block List, then Get Block List: commits blocks 0..<count, in order, as the
    /// blob's content, and checks what Azure committed.
    ///
    /// - Returns: what was committed.
    /// - Throws: the request's `UploadError`, or `.commitMismatch` when the list differs.
    func commit(blockCount count: Int, size: UInt64, blockSize: UInt64) async throws(UploadError) -> UploadReceipt {
        let xml = BlockPlan.blockListXML(blockCount: count)
        _ = try await transport.send(
            RequestLabel(method: "PUT", url: url, purpose: "Put Block List, \(count) blocks"),
            HTTPRequest(
                method: .PUT, target: url.requestTarget(addingQuery: "comp=blocklist"),
                headers: ["x-ms-version": Self.apiVersion, "Content-Type": "application/xml; charset=utf-8"],
                body: .bytes(ByteBuffer(string: xml))))
        let verified = try await verifyCommitted(blockCount: count, size: size)
        return UploadReceipt(
            url: url.description, bytes: size, blocks: count, blockSize: blockSize, blockListVerified: verified)
    }

    /// Get Block List: checks the committed blocks are ours, in order, and add up to `size`.
    ///
    /// - Returns: true when checked; false when the SAS token may not read the list (401, 403).
    /// - Throws: `UploadError.commitMismatch` when the list differs.
    private func verifyCommitted(blockCount: Int, size: UInt64) async throws(UploadError) -> Bool {
        let label = RequestLabel(method: "GET", url: url, purpose: "Get Block List")
        let request = HTTPRequest(
            method: .GET, target: url.requestTarget(addingQuery: "comp=blocklist&blocklisttype=committed"),
            headers: ["x-ms-version": Self.apiVersion],
            successBodyLimit: (64 << 10) + blockCount * Self.blockListBytesPerBlock)
        let result: HTTPResult
        do {
            result = try await transport.send(label, request)
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
}

/// `avml upload blob` and `acquire --sas-url`: a file as an Azure Block Blob.
///
/// The file is cut by `BlockPlan`; `BlockUploader` sends up to `plan.concurrency`
/// blocks at once, each streamed from the file (never a whole block in memory) and
/// retried on its own. Only when every block is in does Put Block List commit them,
/// in order; then Get Block List checks the commit where the SAS token allows.
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
        var next = 0
        _ = try await BlockUploader.upload(to: blob, concurrency: plan.concurrency, total: count, counter: counter) {
            () throws(UploadError) -> Block? in
            guard next < count else { return nil }
            let range = plan.range(ofBlock: next, size: source.size)
            defer { next += 1 }
            return Block(index: next, range: range, body: .file(source, range))
        }
        let receipt = try await blob.commit(blockCount: count, size: source.size, blockSize: plan.blockSize)
        if let now = source.currentSize(), now != source.size {
            throw UploadError.fileChanged(path: path, expected: source.size, actual: now)
        }
        return receipt
    }
}
