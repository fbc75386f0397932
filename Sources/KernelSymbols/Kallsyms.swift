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

import Glibc
import ImageFormats

/// One symbol of kallsyms or System.map.
public struct KernelSymbol: Sendable, Equatable {
    public var address: UInt64
    /// nm's type letter (T text, D data, B bss, R read-only, A absolute...; lower case: local).
    public var type: UInt8
    public var name: String

    public init(address: UInt64, type: UInt8, name: String) {
        self.address = address
        self.type = type
        self.name = name
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

/// Negative, zero or positive as `left` sorts before, with or after `right`, byte by byte
/// (memcmp, then the shorter first): the order of `SymbolList.byName` and of BTF names.
func compareBytes(_ left: UnsafeBufferPointer<UInt8>, _ right: UnsafeBufferPointer<UInt8>) -> Int {
    let common = Swift.min(left.count, right.count)
    if common > 0, let a = left.baseAddress, let b = right.baseAddress {
        let result = memcmp(a, b, common)
        if result != 0 { return Int(result) }
    }
    return left.count - right.count
}

/// The kernel's own symbols of one kallsyms or System.map file, in file order. A module's
/// lines are checked and counted, not kept: the table describes the kernel.
///
/// Held column by column with every name in one buffer, because a kernel has 100,000 to
/// 250,000 symbols and a `String` and an array element for each cost several times the
/// names themselves, in memory the examined host gives up (6.12's kallsyms, by heaptrack:
/// 22.7 MiB as an array of symbols with their names, 4.2 MiB as these columns). Names that
/// are not UTF-8 are stored repaired (U+FFFD), so that their byte order is the order of the
/// strings the table is sorted by.
public struct SymbolList: Sendable, RandomAccessCollection {
    private var addresses: [UInt64] = []
    private var types: [UInt8] = []
    /// Where each name ends in `names`; it starts where the one before it ends.
    private var nameEnds: [UInt32] = []
    private var names: [UInt8] = []
    /// One index per name, in name (byte) order: the first global symbol of that name, else the first.
    private(set) var byName: [UInt32] = []
    /// The names `byName` had to choose an address for (in name order, each by its chosen
    /// symbol's index): listed at several addresses with no single global one among them,
    /// as file-local statics of one name are. The table's address may be another variable's.
    private(set) var ambiguous: [UInt32] = []
    /// The names listed global at several addresses (by the chosen symbol's index): one
    /// linked kernel cannot have them, so the file was not made by the kernel as it is.
    private(set) var conflicting: [UInt32] = []
    /// Lines that named a module.
    public private(set) var moduleSymbolCount = 0
    /// Whether any line, a module's included, showed an address other than zero.
    private var anyAddressShown = false

    /// The longest symbol name the kernel allows (KSYM_NAME_LEN).
    static let maximumNameLength = 512

    /// No symbols.
    public init() {}

    /// Parses every line.
    ///
    /// - Parameters:
    ///   - bytes: the file as read.
    ///   - path: named in errors.
    /// - Throws: `SymbolFileError` with the line number of the first line that is not
    ///   `ADDRESS TYPE NAME [MODULE]`. Empty lines are allowed.
    public init(parsing bytes: [UInt8], path: String) throws(SymbolFileError) {
        var lineNumber = 0
        _ = try parseLines(bytes[...], path: path, lineNumber: &lineNumber, final: true)
        indexNames()
    }

    public var startIndex: Int { 0 }
    public var endIndex: Int { addresses.count }

    public subscript(index: Int) -> KernelSymbol {
        KernelSymbol(address: addresses[index], type: types[index], name: name(at: index))
    }

    func address(at index: Int) -> UInt64 { addresses[index] }

    func name(at index: Int) -> String {
        String(decoding: nameBytes(at: index), as: UTF8.self)
    }

    /// A symbol's name as its UTF-8 bytes, without making a String.
    func nameBytes(at index: Int) -> ArraySlice<UInt8> {
        names[(index == 0 ? 0 : Int(nameEnds[index - 1]))..<Int(nameEnds[index])]
    }

    /// The kernel's symbol of that name: the first global one, else the first.
    public func symbol(named name: String) -> KernelSymbol? {
        index(named: name).map { self[$0] }
    }

    /// Where the kernel's symbol of that name is: the first global one, else the first.
    func index(named name: String) -> Int? {
        let key = Array(name.utf8)
        return key.withUnsafeBufferPointer { key in
            withNames { names in
                var low = 0
                var high = byName.count
                while low < high {
                    let middle = (low + high) / 2
                    if names.compare(Int(byName[middle]), key) < 0 { low = middle + 1 } else { high = middle }
                }
                guard low < byName.count, names.compare(Int(byName[low]), key) == 0 else { return nil }
                return Int(byName[low])
            }
        }
    }

    /// Whether kptr_restrict (or a reader without CAP_SYSLOG) hid every address.
    public var addressesHidden: Bool {
        (!addresses.isEmpty || moduleSymbolCount > 0) && !anyAddressShown
    }

    static func isGlobal(_ type: UInt8) -> Bool {
        type >= UInt8(ascii: "A") && type <= UInt8(ascii: "Z")
    }

    /// Parses the complete lines of `bytes` (all of them when `final`, else those before
    /// the last newline), so that a file can be parsed as it is read. Call `indexNames`
    /// once the last lines are in.
    ///
    /// - Parameters:
    ///   - bytes: the text read so far and not yet parsed.
    ///   - path: named in errors.
    ///   - lineNumber: the lines before `bytes`; advanced past those parsed.
    ///   - final: whether `bytes` ends the file.
    /// - Returns: the bytes used; the rest is the start of a line the next bytes finish.
    /// - Throws: `SymbolFileError` naming the first line that is not `ADDRESS TYPE NAME [MODULE]`.
    mutating func parseLines(_ bytes: ArraySlice<UInt8>, path: String, lineNumber: inout Int, final: Bool)
        throws(SymbolFileError) -> Int
    {
        var start = bytes.startIndex
        while start < bytes.endIndex {
            var end = start
            while end < bytes.endIndex && bytes[end] != 0x0a { end += 1 }
            if end == bytes.endIndex && !final { break }
            lineNumber += 1
            if end > start {
                try parseLine(bytes[start..<end], path: path, line: lineNumber)
            }
            start = end + 1
        }
        return Swift.min(start, bytes.endIndex) - bytes.startIndex
    }

    /// Sorts the names into `byName`, keeping one symbol per name.
    mutating func indexNames() {
        var order = Array(0..<UInt32(addresses.count))
        var (ambiguous, conflicting): ([UInt32], [UInt32]) = ([], [])
        let (types, addresses) = (self.types, self.addresses)
        withNames { names in
            order.sort { left, right in
                let byBytes = names.compare(Int(left), Int(right))
                if byBytes != 0 { return byBytes < 0 }
                let (leftGlobal, rightGlobal) = (Self.isGlobal(types[Int(left)]), Self.isGlobal(types[Int(right)]))
                if leftGlobal != rightGlobal { return leftGlobal }
                return left < right
            }
            var kept = 0
            var index = 0
            while index < order.count {
                // One name's symbols, globals first: `chosen` and those of its kind.
                let chosen = order[index]
                let chosenIsGlobal = Self.isGlobal(types[Int(chosen)])
                var end = index + 1
                var otherAddress = false
                while end < order.count && names.compare(Int(order[end]), Int(chosen)) == 0 {
                    let symbol = Int(order[end])
                    if Self.isGlobal(types[symbol]) == chosenIsGlobal && addresses[symbol] != addresses[Int(chosen)] {
                        otherAddress = true
                    }
                    end += 1
                }
                if otherAddress {
                    if chosenIsGlobal { conflicting.append(chosen) } else { ambiguous.append(chosen) }
                }
                order[kept] = chosen
                kept += 1
                index = end
            }
            order.removeLast(order.count - kept)
        }
        byName = order
        (self.ambiguous, self.conflicting) = (ambiguous, conflicting)
    }

    /// The addresses of every symbol of that name, in the file's order.
    func addresses(named name: String) -> [UInt64] {
        let key = Array(name.utf8)
        return indices.filter { nameBytes(at: $0).elementsEqual(key) }.map { addresses[$0] }
    }

    /// The names as raw memory, for comparing without a String each.
    private func withNames<Result>(_ body: (Names) -> Result) -> Result {
        names.withUnsafeBufferPointer { bytes in
            nameEnds.withUnsafeBufferPointer { ends in body(Names(bytes: bytes, ends: ends)) }
        }
    }

    private struct Names {
        let bytes: UnsafeBufferPointer<UInt8>
        let ends: UnsafeBufferPointer<UInt32>

        func name(_ index: Int) -> UnsafeBufferPointer<UInt8> {
            let start = index == 0 ? 0 : Int(ends[index - 1])
            return UnsafeBufferPointer(rebasing: bytes[start..<Int(ends[index])])
        }

        func compare(_ left: Int, _ right: Int) -> Int { compare(left, name(right)) }

        /// Negative, zero or positive as symbol `left`'s name sorts before, with or after `right`, byte by byte.
        func compare(_ left: Int, _ right: UnsafeBufferPointer<UInt8>) -> Int {
            compareBytes(name(left), right)
        }
    }

    private mutating func parseLine(_ line: ArraySlice<UInt8>, path: String, line number: Int) throws(SymbolFileError) {
        func isBlank(_ byte: UInt8) -> Bool { byte == 0x20 || byte == 0x09 }
        // Up to five fields (a fifth only to report it), without an array per line.
        var fields: (Range<Int>, Range<Int>, Range<Int>, Range<Int>) = (0..<0, 0..<0, 0..<0, 0..<0)
        var fieldCount = 0
        var index = line.startIndex
        while index < line.endIndex && fieldCount <= 4 {
            while index < line.endIndex && isBlank(line[index]) { index += 1 }
            guard index < line.endIndex else { break }
            let fieldStart = index
            while index < line.endIndex && !isBlank(line[index]) { index += 1 }
            switch fieldCount {
            case 0: fields.0 = fieldStart..<index
            case 1: fields.1 = fieldStart..<index
            case 2: fields.2 = fieldStart..<index
            case 3: fields.3 = fieldStart..<index
            default: break
            }
            fieldCount += 1
        }
        func bad(_ detail: String) -> SymbolFileError {
            let text = String(decoding: line.prefix(120), as: UTF8.self)
            return SymbolFileError(
                path: path, line: number,
                detail: "\(detail); expected 'ADDRESS TYPE NAME [MODULE]', found '\(escapedForLog(text))'")
        }
        guard fieldCount == 3 || fieldCount == 4 else { throw bad("\(fieldCount) fields") }
        let addressField = line[fields.0]
        guard addressField.count <= 16, let address = Self.hexValue(addressField) else {
            throw bad("the address is not 1 to 16 hex digits")
        }
        let typeField = line[fields.1]
        guard typeField.count == 1, let type = typeField.first,
            (type >= UInt8(ascii: "a") && type <= UInt8(ascii: "z")) || (type >= UInt8(ascii: "A") && type <= UInt8(ascii: "Z"))
        else {
            throw bad("the type is not one letter")
        }
        let nameField = line[fields.2]
        guard nameField.count <= Self.maximumNameLength else {
            throw bad("the name is longer than \(Self.maximumNameLength) bytes")
        }
        if address != 0 { anyAddressShown = true }
        if fieldCount == 4 {
            let field = line[fields.3]
            guard field.count > 2, field.first == UInt8(ascii: "["), field.last == UInt8(ascii: "]") else {
                throw bad("the fourth field is not a [module]")
            }
            moduleSymbolCount += 1
            return
        }
        addresses.append(address)
        types.append(type)
        if nameField.allSatisfy({ $0 < 0x80 }) {
            names.append(contentsOf: nameField)
        } else {
            names.append(contentsOf: String(decoding: nameField, as: UTF8.self).utf8)
        }
        nameEnds.append(UInt32(names.count))
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
