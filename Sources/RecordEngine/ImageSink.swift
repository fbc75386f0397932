/// Where an image's bytes go, in order: a file, standard output, or a network stream.
///
/// One owner (the capture's lifecycle, `withSink`) calls `write` any number of
/// times, then exactly one of `finish` or `abort`. Errors from a sink are the
/// destination's: the pipeline reports them as such, never as the source's.
public protocol ImageSink: AnyObject {
    /// Writes all of `bytes` or throws.
    func write(_ bytes: UnsafeRawBufferPointer) throws
    /// Completes the image: flushes it to stable storage, commits the upload, or ends the stream cleanly.
    func finish() throws
    /// Abandons the image: removes the partial file, commits nothing, resets the connection.
    /// - Throws: when what was written could not be taken back (a file left behind).
    func abort() throws
    /// Whether `restart` can empty the destination so a capture starts over from another source.
    var canRestart: Bool { get }
    /// Empties the destination; false when it cannot be taken back.
    func restart() -> Bool
}

extension ImageSink {
    public var canRestart: Bool { false }
    public func restart() -> Bool { false }
}
