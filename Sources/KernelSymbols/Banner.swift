/// The kernel banner (/proc/version): `linux_banner`'s text, which Volatility scans images for.
struct Banner {
    /// Without the trailing newline.
    var text: String
    /// `linux_banner` as it is in memory: the text, a newline, a NUL.
    var constantData: [UInt8]
    /// `uname -r`: the word after "Linux version ".
    var release: String
    /// Major and minor version, when the release starts with them.
    var version: (Int, Int)?

    init(_ bytes: [UInt8], path: String) throws(SymbolTableError) {
        var end = bytes.count
        while end > 0 && [0x00, 0x0a, 0x0d, 0x20].contains(bytes[end - 1]) { end -= 1 }
        let text = String(decoding: bytes[..<end], as: UTF8.self)
        let prefix = "Linux version "
        guard text.hasPrefix(prefix) else {
            throw SymbolTableError(.badBanner(path: path, detail: "it does not start with '\(prefix)'"))
        }
        guard !text.contains("\n") else {
            throw SymbolTableError(.badBanner(path: path, detail: "it has more than one line"))
        }
        self.text = text
        constantData = Array(text.utf8) + [0x0a, 0x00]
        release = String(text.dropFirst(prefix.count).prefix { $0 != " " })
        let numbers = release.split(whereSeparator: { !$0.isNumber }).prefix(2).compactMap { Int($0) }
        version = numbers.count == 2 ? (numbers[0], numbers[1]) : nil
    }
}
