#!/usr/bin/env python3
"""Check an arm64 symbol table against the image it was written beside, without Volatility.

    python3 check_arm64_table.py --image auto.lime --table auto.lime.isf.json.gz \
        --manifest auto.lime.json --kcore-head kcore-head \
        --stat-before stat-before.txt --stat-after stat-after.txt --modules modules.txt

Volatility 3 (2.28.2, the newest) has no AArch64 address layer, so this walks the
image itself, the way its pslist and lsmod plugins do on x86-64, with nothing of the
table's but its symbol addresses and member offsets:
  - the KASLR offset in the manifest equals KERNELOFFSET in /proc/kcore's VMCOREINFO
    note (kcore-head: its first pages, copied in the guest);
  - the kernel's page tables start at swapper_pg_dir (table address + KERNELOFFSET,
    less VMCOREINFO's kimage_voffset); every read goes through them (VMCOREINFO's
    PAGESIZE as the granule, 4 or 16 or 64 KiB; 48-bit or smaller VA as TCR_EL1_T1SZ says);
  - linux_banner in the image is the banner the manifest names, and the one the table's
    constant_data for it holds (what Volatility matches a table to an image by);
  - init_task.tasks's ring (task_struct's tasks, pid, comm) holds every process listed
    in /proc both before and after the capture, with the same name;
  - the `modules` list (module's list, name) holds exactly /proc/modules' names.
Exit status: 0 all checks passed, 1 a check failed, 2 bad input.
"""
import argparse
import base64
import gzip
import json
import re
import struct
import sys

LIME = struct.Struct("<IIQQQ")
LIME_MAGIC = 0x4C694D45


class Image:
    """A LiME image's records: physical reads, None where no record covers."""

    def __init__(self, path):
        self.file = open(path, "rb")
        self.records = []
        offset = 0
        while header := self.file.read(LIME.size):
            magic, version, start, end, _ = LIME.unpack(header)
            if magic != LIME_MAGIC or version != 1 or end < start:
                raise SystemExit(f"check_arm64_table: {path}: not a LiME record at offset {offset}")
            self.records.append((start, end, offset + LIME.size))
            offset += LIME.size + end - start + 1
            self.file.seek(offset)

    def read(self, physical, count):
        for start, end, data in self.records:
            if start <= physical and physical + count - 1 <= end:
                self.file.seek(data + physical - start)
                return self.file.read(count)
        return None


def vmcoreinfo(path):
    """The VMCOREINFO note's KEY=VALUE lines of an ELF core's first bytes."""
    data = open(path, "rb").read()
    if data[:4] != b"\x7fELF" or data[4] != 2:
        raise SystemExit(f"check_arm64_table: {path} is not a 64-bit ELF core")
    phoff, = struct.unpack_from("<Q", data, 0x20)
    phentsize, phnum = struct.unpack_from("<HH", data, 0x36)
    for index in range(phnum):
        kind, _, offset, _, _, size = struct.unpack_from("<IIQQQQ", data, phoff + index * phentsize)
        if kind != 4:  # PT_NOTE
            continue
        notes = data[offset:offset + size]
        position = 0
        while position + 12 <= len(notes):
            namesz, descsz, _ = struct.unpack_from("<III", notes, position)
            name = notes[position + 12:position + 12 + namesz].rstrip(b"\0")
            desc_at = position + 12 + (namesz + 3) // 4 * 4
            if name == b"VMCOREINFO":
                text = notes[desc_at:desc_at + descsz].decode()
                return dict(line.split("=", 1) for line in text.splitlines() if "=" in line)
            position = desc_at + (descsz + 3) // 4 * 4
    raise SystemExit(f"check_arm64_table: no VMCOREINFO note in {path}")


class Kernel:
    """Virtual reads through the kernel's page tables (any granule, up to 48-bit VA, no LPA2)."""

    def __init__(self, image, pgd, va_bits, page_size):
        self.page_shift = page_size.bit_length() - 1
        if page_size not in (4096, 16384, 65536) or not 25 <= va_bits <= 48:
            raise SystemExit(f"check_arm64_table: a {va_bits}-bit VA with {page_size}-byte pages is not handled")
        self.image, self.pgd, self.page_size = image, pgd, page_size
        self.index_bits = self.page_shift - 3  # 8-byte descriptors fill a page
        self.levels = -(-(va_bits - self.page_shift) // self.index_bits)

    def translate(self, virtual):
        table = self.pgd
        for level in range(4 - self.levels, 4):
            shift = self.page_shift + self.index_bits * (3 - level)
            index = (virtual >> shift) & ((1 << self.index_bits) - 1)
            entry = self.image.read(table + index * 8, 8)
            if entry is None:
                raise LookupError(f"page table at {table:#x} not in the image")
            descriptor, = struct.unpack("<Q", entry)
            if descriptor & 1 == 0:
                raise LookupError(f"{virtual:#x} is not mapped (level {level})")
            address = descriptor & 0x0000_FFFF_FFFF_FFFF & ~(self.page_size - 1)
            if level == 3 or descriptor & 2 == 0:  # a page, or a block
                size = 1 << shift
                return (address & ~(size - 1)) | (virtual & (size - 1))
            table = address
        raise AssertionError("unreachable")

    def read(self, virtual, count):
        out = b""
        while count > 0:
            chunk = min(count, self.page_size - virtual % self.page_size)
            data = self.image.read(self.translate(virtual), chunk)
            if data is None:
                raise LookupError(f"{virtual:#x} is mapped to memory the image does not hold")
            out, virtual, count = out + data, virtual + chunk, count - chunk
        return out

    def pointer(self, virtual):
        return struct.unpack("<Q", self.read(virtual, 8))[0]


def processes(path):
    """pid -> comm of a `cat /proc/[0-9]*/stat` listing."""
    found = {}
    for line in open(path, errors="replace"):
        match = re.match(r"(\d+) \((.*)\) [A-Za-z] ", line)
        if match:
            found[int(match.group(1))] = match.group(2)
    return found


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for name in ("image", "table", "manifest", "kcore-head", "stat-before", "stat-after", "modules"):
        parser.add_argument("--" + name, required=True)
    args = parser.parse_args()
    table = json.load(gzip.open(args.table))
    manifest = json.load(open(args.manifest))["symbols"]
    info = vmcoreinfo(args.kcore_head)
    failures = []

    def check(ok, what):
        print(f"check_arm64_table: {'ok' if ok else 'FAIL'}: {what}")
        if not ok:
            failures.append(what)

    offset = int(info["KERNELOFFSET"], 16)
    check(int(manifest["kaslr_offset"], 16) == offset,
          f"the manifest's KASLR offset {manifest['kaslr_offset']} is VMCOREINFO's KERNELOFFSET {offset:#x}")

    def address(name):
        return table["symbols"][name]["address"] + offset

    def member(struct_name, field):
        return table["user_types"][struct_name]["fields"][field]["offset"]

    voffset = int(info["NUMBER(kimage_voffset)"], 0)
    va_bits = 64 - int(info["NUMBER(TCR_EL1_T1SZ)"], 0)
    page_size = int(info["PAGESIZE"])
    kernel = Kernel(Image(args.image), address("swapper_pg_dir") - voffset, va_bits, page_size)
    print(f"check_arm64_table: {va_bits}-bit kernel VA, {page_size}-byte pages, {kernel.levels} levels of page tables")

    banner = kernel.read(address("linux_banner"), len(manifest["banner"]))
    constant = base64.b64decode(table["symbols"]["linux_banner"].get("constant_data", ""))
    check(banner.decode(errors="replace") == manifest["banner"] and constant.startswith(banner),
          f"linux_banner reads {banner[:40]!r}..., as the table's constant_data says")

    tasks, pid, comm = member("task_struct", "tasks"), member("task_struct", "pid"), member("task_struct", "comm")
    walked, head = {}, address("init_task") + tasks
    node = kernel.pointer(head)
    while node != head and len(walked) < 100_000:
        task = node - tasks
        walked[struct.unpack("<i", kernel.read(task + pid, 4))[0]] = kernel.read(task + comm, 16).split(b"\0")[0].decode(errors="replace")
        node = kernel.pointer(node)
    before, after = processes(args.stat_before), processes(args.stat_after)
    lasting = {p: name for p, name in before.items() if after.get(p) == name}
    # /proc gives a kernel thread's whole name (a worker's with its workqueue after a "-"), the
    # task its first 15 bytes.
    def same(proc, image):
        return image is not None and (proc[:15] == image or proc.startswith(image + "-"))

    wrong = {p: (name, walked.get(p)) for p, name in lasting.items() if not same(name, walked.get(p))}
    check(len(lasting) > 10 and not wrong,
          f"the task list ({len(walked)} tasks) has the {len(lasting)} processes /proc listed before and after"
          + (f"; differing (proc, image): {dict(list(wrong.items())[:5])}" if wrong else ""))

    mlist, mname = member("module", "list"), member("module", "name")
    names, head = [], address("modules")
    node = kernel.pointer(head)
    while node != head and len(names) < 10_000:
        names.append(kernel.read(node - mlist + mname, 56).split(b"\0")[0].decode(errors="replace"))
        node = kernel.pointer(node)
    listed = [line.split()[0] for line in open(args.modules) if line.strip()]
    check(sorted(names) == sorted(listed) and names,
          f"the module list is /proc/modules' {len(listed)}: image {sorted(names)}, /proc {sorted(listed)}")
    return 1 if failures else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (LookupError, KeyError, OSError, ValueError) as error:
        print(f"check_arm64_table: error: {error!r}", file=sys.stderr)
        sys.exit(2)
