import Glibc

/// Whether every byte of `bytes` is zero.
///
/// Checks the first 16 bytes, then compares the buffer with itself shifted by
/// 16 bytes: glibc's vectorised memcmp then runs at memory speed, with no
/// zero page to keep around. Free memory is mostly zero, so this runs on
/// every block.
public func isAllZero(_ bytes: UnsafeRawBufferPointer) -> Bool {
    guard let base = bytes.baseAddress else { return true }
    let head = min(16, bytes.count)
    for index in 0..<head where bytes[index] != 0 { return false }
    guard bytes.count > head else { return true }
    return memcmp(base, base + head, bytes.count - head) == 0
}
