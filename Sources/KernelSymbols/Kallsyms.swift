// /proc/kallsyms and System.map: one symbol a line, as nm prints them.
//
//   ffffffff81000000 T _text
//   ffffffffc0a01000 t e1000_probe	[e1000]
//   ADDRESS (hex)    TYPE (one letter) NAME [TAB [MODULE]]
//
// kallsyms shows the running (KASLR-shifted) addresses, or zeros when
// kptr_restrict hides them; System.map holds the link-time addresses of one build.
//
// A line that does not have this shape is an error naming its line number, not
// skipped: both files are written by the kernel or its build, so a bad line means
// the wrong file or a damaged one, and a table built from part of it could give
// Volatility wrong addresses without anyone noticing.

import ImageFormats

/// One symbol of kallsyms or System.map.
public struct KernelSymbol: Sendable, Equatable {
    public var address: UInt64
    /// nm's type letter (T text, D data, B bss, R read-only, A absolute...; lower case: local).
    public var type: UInt8
    public var name: String
    /// The module in brackets after the name; nil for the kernel itself.
    public var module: String?

    public init(address: UInt64, type: UInt8, name: String, module: String? = nil) {
        self.address = address
        self.type = type
        self.name = name
        self.module = module
    }
}

/// A line of kallsyms or System.map that is not `ADDRESS TYPE NAME [MODULE]`.
public struct SymbolFileError: Error, Sendable, Equatable, CustomStringConvertible {
    public var path: String
    /// 1-based.
    public var line: Int
    public var detail: String

    public var description: String {
        "\(escapedForLog(path)) line \(line): \(detail)"
    }
}

/// The symbols of one kallsyms or System.map file.
public struct SymbolList: Sendable {
    public let symbols: [KernelSymbol]
    /// The kernel's own symbols (no module), by name: the first global one, else the first one.
    private let byName: [String: Int]

    /// The longest symbol name the kernel allows (KSYM_NAME_LEN).
    static let maximumNameLength = 512

    /// Parses every line.
    ///
    /// - Parameters:
    ///   - bytes: the file as read.
    ///   - path: named in errors.
    /// - Throws: `SymbolFileError` with the line number of the first line that is not
    ///   `ADDRESS TYPE NAME [MODULE]`. Empty lines are allowed.
    public init(parsing bytes: [UInt8], path: String) throws(SymbolFileError) {
        var symbols: [KernelSymbol] = []
        symbols.reserveCapacity(bytes.count / 40)
        var lineNumber = 0
        _ = try Self.parseLines(bytes[...], path: path, lineNumber: &lineNumber, into: &symbols, final: true)
        self.init(symbols: symbols)
    }

    /// Parses the complete lines of `bytes` (all of them when `final`, else those before
    /// the last newline), so that a file can be parsed as it is read.
    ///
    /// - Parameters:
    ///   - bytes: the text read so far and not yet parsed.
    ///   - path: named in errors.
    ///   - lineNumber: the lines before `bytes`; advanced past those parsed.
    ///   - symbols: where the parsed symbols go.
    ///   - final: whether `bytes` ends the file.
    /// - Returns: the bytes used; the rest is the start of a line the next bytes finish.
    /// - Throws: `SymbolFileError` naming the first line that is not `ADDRESS TYPE NAME [MODULE]`.
    static func parseLines(
        _ bytes: ArraySlice<UInt8>, path: String, lineNumber: inout Int, into symbols: inout [KernelSymbol], final: Bool
    ) throws(SymbolFileError) -> Int {
        var start = bytes.startIndex
        while start < bytes.endIndex {
            var end = start
            while end < bytes.endIndex && bytes[end] != 0x0a { end += 1 }
            if end == bytes.endIndex && !final { break }
            lineNumber += 1
            if end > start {
                symbols.append(try Self.parseLine(bytes[start..<end], path: path, line: lineNumber))
            }
            start = end + 1
        }
        return min(start, bytes.endIndex) - bytes.startIndex
    }

    /// A list of symbols already parsed.
    public init(symbols: [KernelSymbol]) {
        var byName: [String: Int] = [:]
        byName.reserveCapacity(symbols.count)
        for (index, symbol) in symbols.enumerated() where symbol.module == nil {
            if let existing = byName[symbol.name] {
                // A global symbol wins over a static one of the same name.
                if Self.isGlobal(symbols[existing].type) || !Self.isGlobal(symbol.type) { continue }
            }
            byName[symbol.name] = index
        }
        self.symbols = symbols
        self.byName = byName
    }

    /// The kernel's symbol of that name (not a module's).
    public func symbol(named name: String) -> KernelSymbol? {
        byName[name].map { symbols[$0] }
    }

    /// The kernel's symbols, one per name (see `symbol(named:)`), in file order.
    public var kernelSymbols: [KernelSymbol] {
        byName.values.sorted().map { symbols[$0] }
    }

    /// Whether the kernel's own symbols include data (nm's D, B, R, G, S, either case): without
    /// CONFIG_KALLSYMS_ALL, kallsyms lists functions only (modules list their data regardless).
    var hasKernelDataSymbols: Bool {
        let data = Set("DdBbRrGgSs".utf8)
        return symbols.contains { $0.module == nil && data.contains($0.type) }
    }

    /// Whether kptr_restrict (or a reader without CAP_SYSLOG) hid every address.
    public var addressesHidden: Bool {
        !symbols.isEmpty && symbols.allSatisfy { $0.address == 0 }
    }

    static func isGlobal(_ type: UInt8) -> Bool {
        type >= UInt8(ascii: "A") && type <= UInt8(ascii: "Z")
    }

    private static func parseLine(_ line: ArraySlice<UInt8>, path: String, line number: Int) throws(SymbolFileError)
        -> KernelSymbol
    {
        func isBlank(_ byte: UInt8) -> Bool { byte == 0x20 || byte == 0x09 }
        var fields: [ArraySlice<UInt8>] = []
        var index = line.startIndex
        while index < line.endIndex {
            while index < line.endIndex && isBlank(line[index]) { index += 1 }
            guard index < line.endIndex else { break }
            let fieldStart = index
            while index < line.endIndex && !isBlank(line[index]) { index += 1 }
            fields.append(line[fieldStart..<index])
            guard fields.count <= 4 else { break }
        }
        func bad(_ detail: String) -> SymbolFileError {
            let text = String(decoding: line.prefix(120), as: UTF8.self)
            return SymbolFileError(
                path: path, line: number,
                detail: "\(detail); expected 'ADDRESS TYPE NAME [MODULE]', found '\(escapedForLog(text))'")
        }
        guard fields.count == 3 || fields.count == 4 else { throw bad("\(fields.count) fields") }
        let addressField = fields[0]
        guard addressField.count <= 16, let address = Self.hexValue(addressField) else {
            throw bad("the address is not 1 to 16 hex digits")
        }
        let typeField = fields[1]
        guard typeField.count == 1, let type = typeField.first,
            (type >= UInt8(ascii: "a") && type <= UInt8(ascii: "z")) || (type >= UInt8(ascii: "A") && type <= UInt8(ascii: "Z"))
        else {
            throw bad("the type is not one letter")
        }
        let nameField = fields[2]
        guard nameField.count <= maximumNameLength else { throw bad("the name is longer than \(maximumNameLength) bytes") }
        var module: String?
        if fields.count == 4 {
            let field = fields[3]
            guard field.count > 2, field.first == UInt8(ascii: "["), field.last == UInt8(ascii: "]") else {
                throw bad("the fourth field is not a [module]")
            }
            module = String(decoding: field.dropFirst().dropLast(), as: UTF8.self)
        }
        return KernelSymbol(address: address, type: type, name: String(decoding: nameField, as: UTF8.self), module: module)
    }

    private static func hexValue(_ digits: ArraySlice<UInt8>) -> UInt64? {
        guard !digits.isEmpty else { return nil }
        var value: UInt64 = 0
        for byte in digits {
            let digit: UInt8
            switch byte {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): digit = byte - UInt8(ascii: "0")
            case UInt8(ascii: "a")...UInt8(ascii: "f"): digit = byte - UInt8(ascii: "a") + 10
            case UInt8(ascii: "A")...UInt8(ascii: "F"): digit = byte - UInt8(ascii: "A") + 10
            default: return nil
            }
            value = value << 4 | UInt64(digit)
        }
        return value
    }
}
