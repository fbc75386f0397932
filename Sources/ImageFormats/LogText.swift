/// Text that came from outside (file names, URLs, iomem labels) made safe to print:
/// control characters become `\u{..}` escapes, so a hostile name cannot move the
/// cursor, recolour a terminal or forge log lines.
public func escapedForLog(_ text: String) -> String {
    var result = ""
    result.reserveCapacity(text.utf8.count)
    for scalar in text.unicodeScalars {
        switch scalar.value {
        case 0x00..<0x20, 0x7f..<0xa0, 0x2028, 0x2029, 0x202a...0x202e, 0x2066...0x2069:
            result += "\\u{\(String(scalar.value, radix: 16))}"
        case 0x5c:  // a literal backslash is doubled so escapes stay unambiguous
            result += "\\\\"
        default:
            result.unicodeScalars.append(scalar)
        }
    }
    return result
}

/// Formats an address or offset the way responders read them in /proc/iomem.
public func hex(_ value: UInt64) -> String {
    "0x" + String(value, radix: 16)
}

/// 1536 → "1.5 KiB".
public func formatBytes(_ bytes: UInt64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"]
    var value = Double(bytes)
    var unit = 0
    while value >= 1024 && unit < units.count - 1 {
        value /= 1024
        unit += 1
    }
    return unit == 0 ? "\(bytes) B" : "\(formatDecimal(value, places: value < 10 ? 2 : 1)) \(units[unit])"
}

public func formatDecimal(_ value: Double, places: Int) -> String {
    let scale = [1.0, 10, 100, 1000][min(places, 3)]
    let rounded = (value * scale).rounded() / scale
    var text = String(rounded)
    if let dot = text.firstIndex(of: ".") {
        let decimals = text.distance(from: dot, to: text.endIndex) - 1
        if decimals < places { text += String(repeating: "0", count: places - decimals) }
        if places == 0 { text = String(text[..<dot]) }
    }
    return text
}
