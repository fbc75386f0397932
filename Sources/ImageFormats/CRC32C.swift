import CCRC32C

/// CRC-32C (Castagnoli), the checksum of Snappy's framing format.
///
/// Runs on the CPU's CRC instruction where there is one (SSE4.2, ARMv8 CRC);
/// the table path gives the same answers on any other CPU.
public enum CRC32C {
    /// Extends `crc` over `bytes`; start with 0.
    @inlinable
    public static func checksum(_ bytes: UnsafeRawBufferPointer, extending crc: UInt32 = 0) -> UInt32 {
        avml_crc32c_extend(crc, bytes.baseAddress, bytes.count)
    }

    /// The table-only computation, kept callable so tests can hold both paths to the same results.
    public static func portableChecksum(_ bytes: UnsafeRawBufferPointer, extending crc: UInt32 = 0) -> UInt32 {
        avml_crc32c_extend_portable(crc, bytes.baseAddress, bytes.count)
    }

    /// Whether `checksum` uses the CPU's instruction on this machine.
    public static var usesHardware: Bool { avml_crc32c_hardware_available() != 0 }

    /// Snappy masks stored CRCs so that a CRC of data containing CRCs stays well distributed.
    @inlinable
    public static func masked(_ crc: UInt32) -> UInt32 {
        ((crc >> 15) | (crc << 17)) &+ 0xa282_ead8
    }
}

extension CRC32C {
    /// Convenience for byte arrays (tests, small data).
    public static func checksum(_ bytes: [UInt8]) -> UInt32 {
        bytes.withUnsafeBytes { checksum($0) }
    }
}
