import CZlib

/// zlib refused or failed to compress.
public struct GzipError: Error, Sendable, Equatable, CustomStringConvertible {
    public var status: Int32

    public var description: String { "zlib deflate failed with status \(status)" }
}

/// gzip (RFC 1952) through the system's zlib: Volatility opens `.json.gz` symbol tables directly.
public enum Gzip {
    /// Compresses `bytes` in one pass. The header has no name and no time, so the same
    /// input always gives the same bytes.
    ///
    /// - Parameters:
    ///   - bytes: what to compress.
    ///   - level: zlib's level, 1 (fast) to 9 (small); 6 is its default.
    /// - Returns: the gzip file's bytes.
    /// - Throws: `GzipError` with zlib's status.
    public static func compress(_ bytes: [UInt8], level: Int32 = 6) throws(GzipError) -> [UInt8] {
        guard bytes.count < Int(UInt32.max) else { throw GzipError(status: Z_BUF_ERROR) }
        var stream = z_stream()
        var status = avml_deflate_init_gzip(&stream, level)
        guard status == Z_OK else { throw GzipError(status: status) }
        defer { deflateEnd(&stream) }
        let bound = Int(deflateBound(&stream, UInt(bytes.count))) + 64
        var output = [UInt8](repeating: 0, count: bound)
        status = bytes.withUnsafeBufferPointer { source in
            output.withUnsafeMutableBufferPointer { target in
                // zlib reads next_in only; its type lacks const unless ZLIB_CONST is defined.
                stream.next_in = UnsafeMutablePointer(mutating: source.baseAddress)
                stream.avail_in = UInt32(source.count)
                stream.next_out = target.baseAddress
                stream.avail_out = UInt32(target.count)
                return deflate(&stream, Z_FINISH)
            }
        }
        guard status == Z_STREAM_END else { throw GzipError(status: status) }
        output.removeSubrange(Int(stream.total_out)...)
        return output
    }
}
