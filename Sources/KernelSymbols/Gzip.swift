import CZlib
import Dispatch

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
        final class Collected {
            var bytes: [UInt8] = []
        }
        let collected = Collected()
        let stream = try Deflater(level: level) { collected.bytes += $0 }
        try stream.append(bytes)
        try stream.finish()
        return collected.bytes
    }

    /// A gzip stream compressed as its input arrives and handed on as it is made, so that
    /// neither the input (tens of MB of JSON) nor the output (megabytes) is ever whole in
    /// memory: every page the tool fills on the examined host overwrites evidence. The
    /// output is the same bytes however the input is split.
    final class Deflater {
        /// zlib's state points back at its stream, so the stream must not move.
        private let stream = UnsafeMutablePointer<z_stream>.allocate(capacity: 1)
        private var chunk = [UInt8](repeating: 0, count: 64 << 10)
        /// Takes each piece of the gzip file as zlib gives it, in order.
        private let emit: (UnsafeRawBufferPointer) -> Void

        /// - Parameters:
        ///   - level: zlib's level, 1 (fast) to 9 (small).
        ///   - emit: takes each piece of the gzip file as zlib gives it, in order.
        /// - Throws: `GzipError` when zlib cannot start.
        init(level: Int32 = 6, emit: @escaping (UnsafeRawBufferPointer) -> Void) throws(GzipError) {
            self.emit = emit
            stream.initialize(to: z_stream())
            let status = avml_deflate_init_gzip(stream, level)
            guard status == Z_OK else {
                stream.deallocate()
                throw GzipError(status: status)
            }
        }

        deinit {
            deflateEnd(stream)
            stream.deallocate()
        }

        /// Compresses `bytes`; what zlib holds back comes out with later input or `finish`.
        func append(_ bytes: [UInt8]) throws(GzipError) {
            if let failure = bytes.withUnsafeBytes({ deflate($0, flush: Z_NO_FLUSH) }) { throw GzipError(status: failure) }
        }

        /// Ends the stream: the last pieces go to `emit`.
        func finish() throws(GzipError) {
            if let failure = deflate(UnsafeRawBufferPointer(start: nil, count: 0), flush: Z_FINISH) {
                throw GzipError(status: failure)
            }
        }

        /// - Returns: zlib's status when it failed, nil when all went well.
        private func deflate(_ bytes: UnsafeRawBufferPointer, flush: Int32) -> Int32? {
            guard bytes.count < Int(UInt32.max) else { return Z_BUF_ERROR }
            // zlib reads next_in only; its type lacks const unless ZLIB_CONST is defined.
            stream.pointee.next_in = UnsafeMutablePointer(mutating: bytes.baseAddress?.assumingMemoryBound(to: UInt8.self))
            stream.pointee.avail_in = UInt32(bytes.count)
            while true {
                let (status, produced) = chunk.withUnsafeMutableBufferPointer { target in
                    stream.pointee.next_out = target.baseAddress
                    stream.pointee.avail_out = UInt32(target.count)
                    let status = CZlib.deflate(stream, flush)
                    return (status, target.count - Int(stream.pointee.avail_out))
                }
                chunk.withUnsafeBytes { emit(UnsafeRawBufferPointer(rebasing: $0[..<produced])) }
                if flush == Z_FINISH && status == Z_STREAM_END { return nil }
                // No progress possible: all input taken and nothing held back to give now.
                if flush != Z_FINISH && status == Z_BUF_ERROR { return nil }
                guard status == Z_OK else { return status }
                if flush != Z_FINISH && stream.pointee.avail_in == 0 && stream.pointee.avail_out > 0 { return nil }
            }
        }
    }

    /// A `Deflater` on a thread of its own: the caller writes the next piece of input while
    /// the last one is compressed, and handed to `emit`, there (zlib took a quarter of the
    /// symbol table's time on one core). One piece is in flight at most, so the input in memory
    /// is two buffers, whose capacity is passed back and forth, never reallocated.
    ///
    /// `@unchecked Sendable` because ownership moves with the `idle` semaphore, never shared:
    /// the deflater, `emit`, what `emit` reaches, `pending` and `failure` belong to the
    /// queue from `exchange` handing a piece over until it signals `idle`, and to the caller
    /// once it waited for `idle` (in `exchange` or `finish`); a semaphore orders the memory
    /// accesses on both sides.
    final class BackgroundDeflater: @unchecked Sendable {
        private let deflater: Deflater
        private let queue = DispatchQueue(label: "avml.gzip")
        /// Signalled when no piece is in flight.
        private let idle = DispatchSemaphore(value: 1)
        /// The piece being compressed, and the last one's buffer, emptied.
        private var pending: [UInt8] = []
        private var spare: [UInt8] = []
        /// The first failure; nothing more is compressed after it.
        private var failure: GzipError?

        /// - Parameters:
        ///   - level: zlib's level, 1 (fast) to 9 (small).
        ///   - emit: takes each piece of the gzip file, in order: on the deflater's thread, the
        ///     last ones on the caller's in `finish`; never two at once.
        /// - Throws: `GzipError` when zlib cannot start.
        init(level: Int32 = 6, emit: @escaping (UnsafeRawBufferPointer) -> Void) throws(GzipError) {
            deflater = try Deflater(level: level, emit: emit)
        }

        /// Hands `buffer`'s bytes over to be compressed and leaves `buffer` empty, with the
        /// capacity of an earlier piece's buffer.
        /// - Throws: an earlier piece's failure; this piece is then dropped.
        func exchange(_ buffer: inout [UInt8]) throws(GzipError) {
            idle.wait()
            if let failure {
                idle.signal()
                throw failure
            }
            // Swapped, never copied: each buffer has one owner, so none is reallocated.
            swap(&pending, &buffer)
            swap(&spare, &buffer)
            buffer.removeAll(keepingCapacity: true)
            buffer.reserveCapacity(pending.capacity)  // the first time only: then both have it
            queue.async { self.compressPending() }
        }

        /// Compresses what was handed over and ends the stream: the last pieces go to `emit`.
        /// The deflater's thread has finished every piece before, so `emit` runs here for the last.
        func finish() throws(GzipError) {
            idle.wait()
            defer { idle.signal() }
            if let failure { throw failure }
            try deflater.finish()
        }

        /// Waits for the piece in flight, if any.
        func waitUntilIdle() {
            idle.wait()
            idle.signal()
        }

        private func compressPending() {
            var piece: [UInt8] = []
            swap(&piece, &pending)
            do {
                try deflater.append(piece)
            } catch {
                failure = error
            }
            swap(&spare, &piece)
            idle.signal()
        }
    }
}
