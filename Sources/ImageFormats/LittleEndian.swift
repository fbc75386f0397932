// Little-endian integers inside byte arrays read from outside (ELF headers and notes of
// /proc/kcore). Indexing the array keeps every read bounds-checked: callers check the
// lengths they expect first, and a read they got wrong traps instead of reading past the bytes.

extension Array where Element == UInt8 {
    /// The little-endian `UInt16` at `offset`.
    public func le16(at offset: Int) -> UInt16 { littleEndian(at: offset) }

    /// The little-endian `UInt32` at `offset`.
    public func le32(at offset: Int) -> UInt32 { littleEndian(at: offset) }

    /// The little-endian `UInt64` at `offset`.
    public func le64(at offset: Int) -> UInt64 { littleEndian(at: offset) }

    private func littleEndian<T: FixedWidthInteger & UnsignedInteger>(at offset: Int) -> T {
        (0..<MemoryLayout<T>.size).reduce(0) { $0 | T(self[offset + $1]) << (8 * $1) }
    }
}
