import ImagePipeline
import MemorySources

/// Acquisition straight to a TCP receiver (`avml stream tcp HOST:PORT`): the source is
/// probed once (kcore, crash, mem) or given with `--source`, since a stream cannot
/// be taken back to try another.
public enum TCPCapture {
    /// Captures memory over TCP to `address` (`avml stream tcp HOST:PORT`).
    /// - Returns: what was captured and the bytes sent.
    /// - Throws: `TCPSinkError` (connection refused, dropped, stalled) or the capture's error.
    public static func run(
        _ acquisition: Acquisition, address: String, progress: (@Sendable (UInt64, UInt64) -> Void)? = nil
    ) throws -> (AcquisitionResult, UInt64) {
        _ = try acquisition.plannedRanges()  // a bad --iomem or --source fails before connecting
        let sink = try TCPSink(address: address)
        let result: AcquisitionResult
        do {
            result = try acquisition.run(to: sink, progress: progress)
        } catch let error as TCPSinkError {
            sink.abort()
            throw error
        } catch {
            sink.abort()
            throw sinkError(in: error) ?? error
        }
        try sink.finish()
        return (result, sink.bytesSent)
    }

    /// The TCP error inside an `AllSourcesFailed`: the stream failed, not the memory source.
    private static func sinkError(in error: Error) -> TCPSinkError? {
        guard let all = error as? AllSourcesFailed else { return nil }
        return all.failures.lazy.compactMap { $0.error as? TCPSinkError }.first
    }
}
