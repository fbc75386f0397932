import ImageFormats
import SystemPackage

// /proc/kcore is an ELF core file whose PT_LOAD segments map kernel virtual
// memory; for RAM, p_paddr gives the physical address.
//
//   ELF header     e_ident[16]: 7f 'E' 'L' 'F', class (1 = 32-bit, 2 = 64-bit), data (1 = LE)
//                  e_phoff (64: u64 @32, 32: u32 @28)
//                  e_phentsize, e_phnum (64: u16 @54, @56; 32: u16 @42, @44)
//   Program header 64-bit (56 bytes): p_type u32 @0, p_offset u64 @8, p_vaddr @16, p_paddr @24, p_filesz @32
//                  32-bit (32 bytes): p_type u32 @0, p_offset u32 @4, p_vaddr @8, p_paddr @12, p_filesz @16
//
// Segments that are not RAM (vmalloc, modules, the kernel text alias) carry an
// all-ones p_paddr; kernels before 4.11 wrote 0 in every p_paddr.

/// A PT_LOAD segment of /proc/kcore.
public struct KCoreSegment: Sendable, Equatable {
    public var fileOffset: UInt64
    public var virtualAddress: UInt64
    /// nil when the kernel marks the segment as having no physical address.
    public var physicalAddress: UInt64?
    public var size: UInt64

    public init(fileOffset: UInt64, virtualAddress: UInt64, physicalAddress: UInt64?, size: UInt64) {
        self.fileOffset = fileOffset
        self.virtualAddress = virtualAddress
        self.physicalAddress = physicalAddress
        self.size = size
    }
}

/// A piece of physical memory and where kcore keeps it.
public struct KCoreMapping: Sendable, Equatable {
    public var physical: Range<UInt64>
    public var fileOffset: UInt64
}

public enum KCore {
    static let loadType: UInt32 = 1

    /// Parses the ELF header and program headers, field by field.
    ///
    /// - Parameters:
    ///   - path: named in errors.
    ///   - read: reads `count` bytes at a file offset (fewer at the end of the file).
    /// - Returns: the PT_LOAD segments with a size, in file order.
    /// - Throws: `SourceError.badELF` for anything that is not a little-endian ELF with sane program headers.
    public static func segments(
        path: String, read: (_ offset: UInt64, _ count: Int) throws(SourceError) -> [UInt8]
    ) throws(SourceError) -> [KCoreSegment] {
        func bad(_ detail: String) -> SourceError { SourceError(.badELF(detail), path: path) }
        let ident = try read(0, 64)
        guard ident.count >= 52, ident[0] == 0x7f, ident[1] == 0x45, ident[2] == 0x4c, ident[3] == 0x46 else {
            throw bad("no ELF magic")
        }
        guard ident[5] == 1 else { throw bad("not little-endian (EI_DATA \(ident[5]))") }
        let is64: Bool
        switch ident[4] {
        case 1: is64 = false
        case 2: is64 = true
        default: throw bad("unknown ELF class \(ident[4])")
        }
        guard !is64 || ident.count >= 64 else { throw bad("ELF header is truncated") }
        let phoff = is64 ? ident.le64(at: 32) : UInt64(ident.le32(at: 28))
        let phentsize = Int(ident.le16(at: is64 ? 54 : 42))
        let phnum = Int(ident.le16(at: is64 ? 56 : 44))
        let minimum = is64 ? 56 : 32
        guard phentsize >= minimum else { throw bad("program header size \(phentsize) is below \(minimum)") }
        guard phnum > 0 else { throw bad("no program headers") }
        // kcore has tens of segments; a table over 1 MiB is corrupt, not large.
        guard phnum * phentsize <= 1 << 20 else { throw bad("program header table of \(phnum) × \(phentsize) bytes") }
        // phnum is a u16 and phentsize too, so this read is bounded (< 4 GiB, in practice a few KiB).
        let table = try read(phoff, phnum * phentsize)
        guard table.count == phnum * phentsize else { throw bad("program headers are truncated") }
        var result: [KCoreSegment] = []
        for index in 0..<phnum {
            let base = index * phentsize
            guard table.le32(at: base) == loadType else { continue }
            let offset = is64 ? table.le64(at: base + 8) : UInt64(table.le32(at: base + 4))
            let virtual = is64 ? table.le64(at: base + 16) : UInt64(table.le32(at: base + 8))
            let physical = is64 ? table.le64(at: base + 24) : UInt64(table.le32(at: base + 12))
            let size = is64 ? table.le64(at: base + 32) : UInt64(table.le32(at: base + 16))
            let sentinel = is64 ? physical == UInt64.max : physical == UInt64(UInt32.max)
            guard size > 0 else { continue }
            guard UInt64.max - size >= offset else { throw bad("segment \(index) runs past the end of the address space") }
            result.append(
                KCoreSegment(fileOffset: offset, virtualAddress: virtual, physicalAddress: sentinel ? nil : physical, size: size))
        }
        return result
    }

    /// Where each byte of physical memory is in kcore: disjoint, sorted, the
    /// first segment (by physical address) winning where segments overlap.
    ///
    /// Kernels before 4.11 wrote 0 in every p_paddr; only then do physical
    /// addresses come from the direct map: the virtual base that lines up the
    /// most segments with System RAM. Later kernels give RAM and the kernel text
    /// their physical address and mark the rest (vmalloc, modules, vmemmap) as
    /// having none, so a kcore whose every segment is marked has no RAM to give:
    /// guessing a direct map there would take struct pages or vmalloc for RAM.
    public static func mappings(_ segments: [KCoreSegment], systemRAM: [Range<UInt64>]) -> [KCoreMapping] {
        var physical: [(start: UInt64, size: UInt64, offset: UInt64)] = []
        let before411 = !segments.isEmpty && segments.allSatisfy { $0.physicalAddress == 0 }
        if !before411 {
            physical = segments.compactMap { segment in
                segment.physicalAddress.map { ($0, segment.size, segment.fileOffset) }
            }
        } else if let base = directMapBase(segments, systemRAM: systemRAM) {
            physical = segments.compactMap { segment in
                guard segment.virtualAddress >= base else { return nil }
                return (segment.virtualAddress - base, segment.size, segment.fileOffset)
            }
        }
        var result: [KCoreMapping] = []
        var covered: UInt64 = 0
        for piece in physical.sorted(by: { $0.start < $1.start }) {
            let end = piece.start.addingReportingOverflow(piece.size)
            guard !end.overflow else { continue }
            let start = max(piece.start, covered)
            guard start < end.partialValue else { continue }
            result.append(KCoreMapping(physical: start..<end.partialValue, fileOffset: piece.offset + (start - piece.start)))
            covered = end.partialValue
        }
        return result
    }

    /// The virtual address of physical 0 in the direct map, found as the offset
    /// that places the most segments exactly inside System RAM.
    static func directMapBase(_ segments: [KCoreSegment], systemRAM: [Range<UInt64>]) -> UInt64? {
        func inRAM(_ start: UInt64, _ size: UInt64) -> Bool {
            systemRAM.contains { $0.contains(start) && size <= $0.upperBound - start }
        }
        var best: (base: UInt64, score: Int)?
        for segment in segments {
            for range in systemRAM where segment.virtualAddress >= range.lowerBound {
                let base = segment.virtualAddress - range.lowerBound
                let score = segments.filter { $0.virtualAddress >= base && inRAM($0.virtualAddress - base, $0.size) }.count
                if score > (best?.score ?? 0) || (score == best?.score && base < (best?.base ?? 0)) {
                    best = (base, score)
                }
            }
        }
        return best?.base
    }
}

/// Physical memory read through /proc/kcore's segments.
public final class KCoreReader: MemoryReader, Sendable {
    private let file: PositionalFile
    public let mappings: [KCoreMapping]
    public var path: String { file.path }

    /// Opens kcore (or a file laid out like it) and maps its segments.
    ///
    /// - Throws: `SourceError.kcoreUnavailable` when the file is 0x2000 bytes or
    ///   smaller or cannot be read (kernel lockdown), `.badELF` for a malformed header.
    public init(path: String, systemRAM: [Range<UInt64>]) throws(SourceError) {
        let file = try PositionalFile(path: path)
        // kcore reports the size of the kernel's address space; a tiny or
        // empty one means the kernel exposes nothing (lockdown, restricted builds).
        let size = file.size()
        guard size > 0x2000 else {
            throw SourceError(.kcoreUnavailable("its size is \(size) bytes"), path: path)
        }
        let segments: [KCoreSegment]
        do {
            segments = try KCore.segments(path: path) { (offset, count) throws(SourceError) in
                try file.readBytes(count, offset: offset)
            }
        } catch let error where error.reason.isReadFailure {
            throw SourceError(.kcoreUnavailable("\(error)"), path: path)
        }
        self.file = file
        mappings = KCore.mappings(segments, systemRAM: systemRAM)
    }

    /// The System RAM ranges kcore can provide.
    /// Adjacent pieces are merged, so a RAM range that spans two segments is one range,
    /// cut into blocks from its own start as if it came from /dev/mem.
    public func readableRanges(of systemRAM: [Range<UInt64>]) -> [Range<UInt64>] {
        IOMem.merge(IOMem.intersect(systemRAM, with: mappings.map(\.physical)))
    }

    public func read(into buffer: UnsafeMutableRawBufferPointer, at address: UInt64) throws(SourceError) {
        var done = 0
        // Binary search for the first mapping that ends after `address`.
        var low = 0
        var high = mappings.count
        while low < high {
            let middle = (low + high) / 2
            if mappings[middle].physical.upperBound <= address { low = middle + 1 } else { high = middle }
        }
        var index = low
        while done < buffer.count {
            let current = address + UInt64(done)
            guard index < mappings.count, mappings[index].physical.contains(current) else {
                throw SourceError(.unmapped(address: current), path: path)
            }
            let mapping = mappings[index]
            let count = Int(min(UInt64(buffer.count - done), mapping.physical.upperBound - current))
            try file.read(
                into: UnsafeMutableRawBufferPointer(rebasing: buffer[done..<done + count]),
                offset: mapping.fileOffset + (current - mapping.physical.lowerBound), address: current)
            done += count
            index += 1
        }
    }
}

extension SourceError.Reason {
    var isReadFailure: Bool {
        switch self {
        case .read, .shortRead: return true
        default: return false
        }
    }
}
