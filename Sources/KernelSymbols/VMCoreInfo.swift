// The VMCOREINFO note in /proc/kcore (kernels 4.19 and later): text lines such as
// "OSRELEASE=6.1.0-13-amd64" and "KERNELOFFSET=1e000000", the kernel's own
// record of its KASLR offset.
//
//   ELF64 little-endian header: e_phoff u64 @32, e_phentsize u16 @54, e_phnum u16 @56
//   program header (56 bytes):  p_type u32 @0 (4 = PT_NOTE), p_offset u64 @8, p_filesz u64 @32
//   note:                       u32 namesz, u32 descsz, u32 type, name, desc
//                               (name and desc each padded to 4 bytes)

import ImageFormats

/// Why the VMCOREINFO note could not be read.
public struct VMCoreInfoError: Error, Sendable, Equatable, CustomStringConvertible {
    public var detail: String

    public var description: String { detail }
}

public enum VMCoreInfo {
    /// Notes are a few KiB; anything larger is not a real kcore.
    static let maximumNoteBytes = 1 << 20

    /// The text of the VMCOREINFO note of an ELF core such as /proc/kcore.
    ///
    /// - Parameter read: reads `count` bytes at a file offset (fewer at the end of the file).
    /// - Returns: the note's text, or nil when the core has no such note.
    /// - Throws: `VMCoreInfoError` for a header or note that runs past what was read, or
    ///   whatever `read` throws, wrapped.
    public static func text(read: (_ offset: UInt64, _ count: Int) throws -> [UInt8]) throws(VMCoreInfoError) -> String? {
        func get(_ offset: UInt64, _ count: Int) throws(VMCoreInfoError) -> [UInt8] {
            do {
                return try read(offset, count)
            } catch {
                throw VMCoreInfoError(detail: "cannot read \(count) bytes at offset \(hex(offset)): \(error)")
            }
        }
        let header = try get(0, 64)
        guard header.count == 64, header[0] == 0x7f, header[1] == 0x45, header[2] == 0x4c, header[3] == 0x46 else {
            throw VMCoreInfoError(detail: "no ELF header")
        }
        guard header[4] == 2, header[5] == 1 else {
            throw VMCoreInfoError(detail: "not a 64-bit little-endian ELF core (class \(header[4]), data \(header[5]))")
        }
        let programHeaders = header.le64(at: 32)
        let entrySize = Int(header.le16(at: 54))
        let entries = Int(header.le16(at: 56))
        guard entrySize >= 56 else { throw VMCoreInfoError(detail: "program header size \(entrySize) is below 56") }
        guard entrySize * entries <= maximumNoteBytes else {
            throw VMCoreInfoError(detail: "a program header table of \(entries) x \(entrySize) bytes")
        }
        let table = try get(programHeaders, entrySize * entries)
        guard table.count == entrySize * entries else { throw VMCoreInfoError(detail: "the program headers are truncated") }
        for entry in 0..<entries {
            let base = entry * entrySize
            guard table.le32(at: base) == 4 else { continue }
            let size = table.le64(at: base + 32)
            guard size <= UInt64(maximumNoteBytes) else {
                throw VMCoreInfoError(detail: "a PT_NOTE segment of \(size) bytes (at most \(maximumNoteBytes) expected)")
            }
            let notes = try get(table.le64(at: base + 8), Int(size))
            if let text = try vmcoreinfo(inNotes: notes) { return text }
        }
        return nil
    }

    /// Walks the notes of one PT_NOTE segment.
    static func vmcoreinfo(inNotes notes: [UInt8]) throws(VMCoreInfoError) -> String? {
        var offset = 0
        while notes.count - offset >= 12 {
            let nameSize = Int(notes.le32(at: offset))
            let descriptionSize = Int(notes.le32(at: offset + 4))
            let name = offset + 12
            let paddedName = (nameSize + 3) & ~3
            let paddedDescription = (descriptionSize + 3) & ~3
            guard paddedName <= notes.count - name, descriptionSize <= notes.count - name - paddedName else {
                throw VMCoreInfoError(detail: "note at offset \(offset) runs past its \(notes.count)-byte segment")
            }
            let description = name + paddedName
            if nameSize >= 10 && Array(notes[name..<(name + 10)]) == Array("VMCOREINFO".utf8) {
                return String(decoding: notes[description..<(description + descriptionSize)], as: UTF8.self)
            }
            offset = description + min(paddedDescription, notes.count - description)
        }
        return nil
    }

    /// `KERNELOFFSET=` of a VMCOREINFO text: the KASLR offset (hex, as the kernel prints it).
    public static func kernelOffset(in text: String) -> UInt64? {
        for line in text.split(separator: "\n") where line.hasPrefix("KERNELOFFSET=") {
            return UInt64(line.dropFirst("KERNELOFFSET=".count), radix: 16)
        }
        return nil
    }

    /// `OSRELEASE=` of a VMCOREINFO text.
    public static func release(in text: String) -> String? {
        for line in text.split(separator: "\n") where line.hasPrefix("OSRELEASE=") {
            return String(line.dropFirst("OSRELEASE=".count))
        }
        return nil
    }
}
