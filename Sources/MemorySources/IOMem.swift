import SystemPackage

/// The physical memory map from /proc/iomem, reduced to what may be read:
/// "System RAM" and nothing else, since reading device memory can hang or
/// crash the host.
///
/// Lines look like `00100000-bfffffff : System RAM`, nested by two spaces per
/// level; both ends are inclusive. Newer kernels also write "System RAM (kmem)"
/// and "System RAM (virtio_mem)", at any depth; those are RAM too.
public enum IOMem {
    /// One parsed line.
    public struct Entry: Sendable, Equatable {
        public var depth: Int
        public var start: UInt64
        /// Inclusive, as written.
        public var end: UInt64
        public var name: String
    }

    /// Parses every line of an iomem listing.
    ///
    /// - Parameters:
    ///   - text: the listing.
    ///   - path: named in errors.
    /// - Returns: every resource line, in order.
    /// - Throws: `SourceError.badIOMemLine` for a line that is not `START-END : NAME`.
    public static func entries(_ text: String, path: String) throws(SourceError) -> [Entry] {
        var result: [Entry] = []
        for (index, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            if line.allSatisfy({ $0 == " " || $0 == "\t" || $0 == "\r" }) { continue }
            let indent = line.prefix { $0 == " " }.count
            let body = line.dropFirst(indent)
            guard let separator = body.firstRange(of: " : "),
                let dash = body[..<separator.lowerBound].firstIndex(of: "-"),
                let start = UInt64(body[..<dash], radix: 16),
                let end = UInt64(body[body.index(after: dash)..<separator.lowerBound], radix: 16),
                end >= start
            else {
                throw SourceError(.badIOMemLine(number: index + 1, text: String(line)), path: path)
            }
            result.append(Entry(depth: indent / 2, start: start, end: end, name: String(body[separator.upperBound...])))
        }
        return result
    }

    /// Whether a resource name is RAM the kernel manages.
    public static func isSystemRAM(_ name: String) -> Bool {
        name == "System RAM" || name.hasPrefix("System RAM (")
    }

    /// The System RAM ranges, half-open, sorted, with overlapping and adjacent ranges merged.
    ///
    /// - Throws: `SourceError` when a line is malformed, when every address is
    ///   zero (the caller lacks CAP_SYS_ADMIN), or when there is no System RAM.
    public static func systemRAM(_ text: String, path: String = "/proc/iomem") throws(SourceError) -> [Range<UInt64>] {
        let all = try entries(text, path: path)
        if !all.isEmpty && all.allSatisfy({ $0.start == 0 && $0.end == 0 }) {
            throw SourceError(.addressesHidden, path: path)
        }
        // The last address has no half-open end; no machine has RAM there.
        let ranges = all.filter { isSystemRAM($0.name) && $0.end < UInt64.max }.map { $0.start..<$0.end + 1 }
        let merged = merge(ranges)
        guard !merged.isEmpty else { throw SourceError(.noSystemRAM, path: path) }
        return merged
    }

    /// The kernel's own data (`Kernel data` and `Kernel bss`, listed inside System RAM),
    /// half-open and merged: memory the running kernel writes all the time. Empty when the
    /// listing hides addresses or names none.
    public static func kernelData(_ text: String, path: String = "/proc/iomem") throws(SourceError) -> [Range<UInt64>] {
        merge(
            try entries(text, path: path).filter { ($0.name == "Kernel data" || $0.name == "Kernel bss") && $0.end > $0.start }
                .map { $0.start..<$0.end + 1 })
    }

    /// Sorts ranges and merges those that overlap or touch.
    public static func merge(_ ranges: [Range<UInt64>]) -> [Range<UInt64>] {
        var result: [Range<UInt64>] = []
        for range in ranges.filter({ !$0.isEmpty }).sorted(by: { $0.lowerBound < $1.lowerBound }) {
            if let last = result.last, range.lowerBound <= last.upperBound {
                result[result.count - 1] = last.lowerBound..<max(last.upperBound, range.upperBound)
            } else {
                result.append(range)
            }
        }
        return result
    }

    /// The parts of `ranges` that lie inside `allowed`; both sorted and disjoint.
    public static func intersect(_ ranges: [Range<UInt64>], with allowed: [Range<UInt64>]) -> [Range<UInt64>] {
        var result: [Range<UInt64>] = []
        var index = 0
        for range in ranges {
            while index < allowed.count && allowed[index].upperBound <= range.lowerBound { index += 1 }
            var probe = index
            while probe < allowed.count && allowed[probe].lowerBound < range.upperBound {
                let piece = max(range.lowerBound, allowed[probe].lowerBound)..<min(range.upperBound, allowed[probe].upperBound)
                if !piece.isEmpty { result.append(piece) }
                probe += 1
            }
        }
        return result
    }
}

extension IOMem {
    /// The parts of `ranges` outside `removed`; both sorted and disjoint.
    public static func subtract(_ ranges: [Range<UInt64>], _ removed: [Range<UInt64>]) -> [Range<UInt64>] {
        var result: [Range<UInt64>] = []
        var index = 0
        for range in ranges {
            var start = range.lowerBound
            while index < removed.count && removed[index].upperBound <= start { index += 1 }
            var probe = index
            while probe < removed.count && removed[probe].lowerBound < range.upperBound {
                if removed[probe].lowerBound > start { result.append(start..<removed[probe].lowerBound) }
                start = max(start, removed[probe].upperBound)
                probe += 1
            }
            if start < range.upperBound { result.append(start..<range.upperBound) }
        }
        return result
    }
}

/// Reads a whole text file that may report no size (/proc files), up to 64 MiB: no
/// legitimate iomem, manifest or /proc file is larger.
public func readTextFile(path: String) throws(SourceError) -> String {
    let descriptor: FileDescriptor
    do {
        descriptor = try FileDescriptor.open(FilePath(path), .readOnly, options: .closeOnExec)
    } catch {
        throw SourceError(.open(error as? Errno ?? .ioError), path: path)
    }
    defer { try? descriptor.close() }
    do {
        return String(decoding: try descriptor.readToEnd(limit: 64 << 20), as: UTF8.self)
    } catch {
        throw SourceError(.readText(error.errno, offset: UInt64(error.done)), path: path)
    }
}
