import ImageFormats

/// The `symbols` entry of a capture's manifest: the table written beside the image,
/// or why there is none.
public struct SymbolsManifestEntry: Codable, Sendable, Equatable {
    /// Where the `.isf.json.gz` was written.
    public var path: String?
    /// Bytes of the `.isf.json.gz`.
    public var size: UInt64?
    /// SHA-256 of the `.isf.json.gz`.
    public var sha256: String?
    public var banner: String?
    /// Hex, e.g. "0x1e000000"; nil when unknown.
    public var kaslrOffset: String?
    public var kaslrOffsetSource: String?
    public var btfSHA256: String?
    public var kallsymsSHA256: String?
    public var systemMap: String?
    public var systemMapSHA256: String?
    /// Base types, structs and unions, and enums in the table.
    public var types: Int?
    public var symbols: Int?
    public var notes: [String]?
    /// True when no table was made.
    public var missing: Bool?
    /// Why not, and what the analyst needs instead.
    public var reason: String?
    /// Seconds spent making and writing the table (or failing to), before memory was read.
    public var seconds: Double?

    enum CodingKeys: String, CodingKey {
        case path, size, sha256, banner, types, symbols, notes, missing, reason, seconds
        case kaslrOffset = "kaslr_offset"
        case kaslrOffsetSource = "kaslr_offset_source"
        case btfSHA256 = "btf_sha256"
        case kallsymsSHA256 = "kallsyms_sha256"
        case systemMap = "system_map"
        case systemMapSHA256 = "system_map_sha256"
    }

    /// The entry for a table written to `path`.
    public init(table: SymbolTable, path: String) {
        self.path = path
        size = UInt64(table.size)
        sha256 = table.sha256
        banner = table.banner
        kaslrOffset = table.kaslrOffset.map(hex)
        kaslrOffsetSource = table.kaslrOffsetSource
        btfSHA256 = table.btfSHA256
        kallsymsSHA256 = table.kallsymsSHA256
        systemMap = table.systemMapPath
        systemMapSHA256 = table.systemMapSHA256
        types = table.typeCount
        symbols = table.symbolCount
        notes = table.notes.isEmpty ? nil : table.notes
    }

    /// The entry when no table was made: the error says what was missing and what to do instead.
    public init(missing reason: String) {
        missing = true
        self.reason = reason
    }

    /// The entry when making the table failed.
    public init(error: SymbolTableError) {
        self.init(missing: error.description)
    }
}
