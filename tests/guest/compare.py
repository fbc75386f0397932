#!/usr/bin/env python3
"""Compare a LiME memory image against QEMU ground-truth RAM dumps.

Library and CLI, python3 stdlib only.

    python3 compare.py --iomem OUT/iomem.txt --truth OUT/truth --image OUT/x.lime \
        [--require-kernel-equal] [--min-coverage FRACTION] [--min-match FRACTION] \
        [--zero-blocks MANIFEST] [--allow-outside-ram] [--json REPORT.json] [--quiet]

Inputs
  iomem   the guest's /proc/iomem read as root (run.sh writes OUT/iomem.txt).
          Top-level "System RAM" lines are the RAM ranges; the nested
          "Kernel code" and "Kernel rodata" lines below them are the ranges
          that must not change while the guest runs (arm64 has no "Kernel
          rodata": its "Kernel code" runs from _stext to __init_begin and
          holds the rodata).
  truth   directory of QMP pmemsave dumps, one per System RAM range, named
          ram-<start>-<end>.bin (16 lower-case hex digits each, end
          inclusive), as written by guestctl.py after the guest was stopped.
  image   a LiME file: records of a 32-byte little-endian header
          (u32 magic 0x4C694D45, u32 version 1, u64 start, u64 end
          INCLUSIVE, u64 reserved 0) followed by end-start+1 bytes.

Report, for each System RAM range: the bytes the image covers, how many of
those equal the truth, and how many 4 KiB pages fully covered by the image
are identical; for each Kernel code / rodata range the same plus the first
differing addresses.  RAM outside the kernel image keeps changing while a
tool runs, so only code and rodata are expected to be byte-equal.

Always a failure: a malformed LiME file, overlapping records, and (unless
--allow-outside-ram) records outside System RAM.  Optional checks:
  --require-kernel-equal   every Kernel code and Kernel rodata range is fully
                           covered by the image and byte-equal to the truth
  --min-coverage F         covered bytes / System RAM bytes >= F
  --min-match F            matching bytes / covered bytes >= F
  --zero-blocks MANIFEST   the capture skipped all-zero blocks, as AVML does:
                           blocks are cut every 16 MiB (the manifest's
                           record_block_bytes, when it has one) from the start of each
                           range the manifest lists as captured; one that no
                           record touches counts towards coverage, and their
                           number must equal the manifest's
                           "zero_blocks_skipped". The truth is dumped after
                           every step, so memory that was zero when captured
                           may have been written since: how much of the
                           skipped blocks is still zero is reported only.
Exit status: 0 all checks passed, 1 a check failed, 2 bad input or usage.
"""
import argparse
import json
import os
import struct
import sys
from dataclasses import dataclass, field, asdict
from typing import List, Optional

LIME_MAGIC = 0x4C694D45
LIME_VERSION = 1
LIME_HEADER = struct.Struct("<IIQQQ")
PAGE = 4096
CHUNK = 1 << 20  # compare in chunks aligned to absolute 1 MiB boundaries
BLOCK = 16 << 20  # AVML's block: System RAM ranges are read in these, from each range's start
KERNEL_NAMES = ("Kernel code", "Kernel rodata")


class InputError(Exception):
    """Malformed or missing input (exit status 2)."""


# --------------------------------------------------------------------------
# /proc/iomem

@dataclass
class IomemEntry:
    start: int
    end: int  # inclusive
    name: str
    depth: int  # nesting level (leading spaces / 2)

    @property
    def size(self):
        return self.end - self.start + 1


def parse_iomem(text: str) -> List[IomemEntry]:
    out = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        stripped = line.lstrip(" ")
        rng, sep, name = stripped.partition(" : ")
        try:
            a, b = rng.split("-")
            start, end = int(a, 16), int(b, 16)
        except ValueError:
            raise InputError(f"iomem line {n} not understood: {line!r}")
        out.append(IomemEntry(start, end, name.strip(), (len(line) - len(stripped)) // 2))
    return out


def load_iomem(path: str) -> List[IomemEntry]:
    try:
        with open(path) as f:
            entries = parse_iomem(f.read())
    except OSError as e:
        raise InputError(f"cannot read iomem {path}: {e}")
    if not any(e.start or e.end for e in entries):
        raise InputError(f"{path}: all addresses are zero (read without root?)")
    return entries


def system_ram(entries: List[IomemEntry]) -> List[IomemEntry]:
    """Top-level "System RAM" ranges (as AVML selects them)."""
    return [e for e in entries if e.depth == 0 and e.name == "System RAM"]


def kernel_ranges(entries: List[IomemEntry], names=KERNEL_NAMES) -> List[IomemEntry]:
    """Nested Kernel code / rodata ranges that lie inside System RAM."""
    ram = system_ram(entries)
    return [e for e in entries if e.depth > 0 and e.name in names
            and any(r.start <= e.start and e.end <= r.end for r in ram)]


# --------------------------------------------------------------------------
# LiME

@dataclass
class LimeRecord:
    start: int
    end: int  # inclusive
    offset: int  # file offset of the data

    @property
    def size(self):
        return self.end - self.start + 1


def read_lime(path: str) -> List[LimeRecord]:
    """Parse and validate the record headers of a LiME file."""
    records = []
    try:
        fsize = os.path.getsize(path)
        f = open(path, "rb")
    except OSError as e:
        raise InputError(f"cannot read image {path}: {e}")
    with f:
        pos = 0
        while pos < fsize:
            f.seek(pos)
            hdr = f.read(LIME_HEADER.size)
            if len(hdr) < LIME_HEADER.size:
                raise InputError(f"{path}: truncated LiME header at offset {pos}")
            magic, version, start, end, reserved = LIME_HEADER.unpack(hdr)
            where = f"{path}: record {len(records)} at offset {pos}"
            if magic != LIME_MAGIC:
                raise InputError(f"{where}: bad magic {magic:#010x} (want {LIME_MAGIC:#010x})")
            if version != LIME_VERSION:
                raise InputError(f"{where}: version {version} (want {LIME_VERSION})")
            if end < start:
                raise InputError(f"{where}: end {end:#x} < start {start:#x}")
            if reserved != 0:
                raise InputError(f"{where}: reserved field is {reserved:#x}, not 0")
            data = pos + LIME_HEADER.size
            size = end - start + 1
            if data + size > fsize:
                raise InputError(f"{where}: range {start:#x}-{end:#x} needs {size} bytes, "
                                 f"file has {fsize - data}")
            records.append(LimeRecord(start, end, data))
            pos = data + size
    return records


def write_lime(path: str, records) -> None:
    """Write a LiME file from (start_address, bytes) pairs."""
    with open(path, "wb") as f:
        for start, data in records:
            if not data:
                continue
            f.write(LIME_HEADER.pack(LIME_MAGIC, LIME_VERSION, start, start + len(data) - 1, 0))
            f.write(data)


# --------------------------------------------------------------------------
# Truth dumps

def truth_name(start: int, end: int) -> str:
    return f"ram-{start:016x}-{end:016x}.bin"


class Truth:
    def __init__(self, truth_dir: str, ram: List[IomemEntry]):
        self.files = {}
        for r in ram:
            p = os.path.join(truth_dir, truth_name(r.start, r.end))
            try:
                size = os.path.getsize(p)
            except OSError:
                raise InputError(f"truth dump for System RAM {r.start:#x}-{r.end:#x} missing: {p}")
            if size != r.size:
                raise InputError(f"{p} has {size} bytes, System RAM range has {r.size}")
            self.files[(r.start, r.end)] = open(p, "rb")

    def read(self, ram: IomemEntry, addr: int, size: int) -> bytes:
        f = self.files[(ram.start, ram.end)]
        f.seek(addr - ram.start)
        return f.read(size)

    def close(self):
        for f in self.files.values():
            f.close()


# --------------------------------------------------------------------------
# Comparison

@dataclass
class RangeStats:
    name: str
    start: int
    end: int
    covered: int = 0
    matching: int = 0
    pages_covered: int = 0  # whole 4 KiB pages, aligned, inside one record
    pages_identical: int = 0
    first_diffs: List[int] = field(default_factory=list)
    zero_block_bytes: int = 0  # in blocks missing from the image (see --zero-blocks)
    zero_block_bytes_still_zero: int = 0  # of those, zero in the truth too

    @property
    def size(self):
        return self.end - self.start + 1

    @property
    def fully_covered(self):
        return self.covered == self.size

    @property
    def equal(self):
        return self.fully_covered and self.matching == self.size


@dataclass
class Report:
    image: str
    records: int = 0
    image_bytes: int = 0
    ram: List[RangeStats] = field(default_factory=list)
    kernel: List[RangeStats] = field(default_factory=list)
    outside_ram_bytes: int = 0
    outside_ram_records: List[str] = field(default_factory=list)
    overlaps: List[str] = field(default_factory=list)
    zero_blocks: int = 0  # blocks of the captured ranges no record touches (see --zero-blocks)

    @property
    def ram_bytes(self):
        return sum(r.size for r in self.ram)

    @property
    def covered(self):
        return sum(r.covered for r in self.ram)

    @property
    def matching(self):
        return sum(r.matching for r in self.ram)

    @property
    def zero_block_bytes(self):
        return sum(r.zero_block_bytes for r in self.ram)

    @property
    def coverage(self):
        """Covered bytes / System RAM bytes."""
        return self.covered / self.ram_bytes if self.ram_bytes else 0.0

    @property
    def coverage_with_zero_blocks(self):
        return (self.covered + self.zero_block_bytes) / self.ram_bytes if self.ram_bytes else 0.0

    @property
    def match_fraction(self):
        return self.matching / self.covered if self.covered else 0.0

    @property
    def kernel_equal(self):
        return bool(self.kernel) and all(k.equal for k in self.kernel)

    def to_dict(self):
        d = asdict(self)
        d.update(ram_bytes=self.ram_bytes, covered=self.covered, matching=self.matching,
                 coverage=self.coverage, match_fraction=self.match_fraction,
                 coverage_with_zero_blocks=self.coverage_with_zero_blocks,
                 kernel_equal=self.kernel_equal)
        for lst in (d["ram"], d["kernel"]):
            for s, obj in zip(lst, self.ram if lst is d["ram"] else self.kernel):
                s.update(size=obj.size, fully_covered=obj.fully_covered, equal=obj.equal)
        return d


def _equal_count(a: bytes, b: bytes) -> int:
    if a == b:
        return len(a)
    x = (int.from_bytes(a, "little") ^ int.from_bytes(b, "little")).to_bytes(len(a), "little")
    return x.count(0)


def _first_diff(a: bytes, b: bytes) -> int:
    lo, hi = 0, len(a)  # binary search for the first differing byte
    while hi - lo > 64:
        mid = (lo + hi) // 2
        if a[lo:mid] != b[lo:mid]:
            hi = mid
        else:
            lo = mid
    for i in range(lo, hi):
        if a[i] != b[i]:
            return i
    return -1


def compare(iomem_entries: List[IomemEntry], truth_dir: str, image: str,
            max_diffs: int = 8, captured=None, block=None) -> Report:
    """captured: the (start, end) ranges blocks were cut from, to count missing blocks (--zero-blocks);
    block: the size they were cut in (BLOCK unless the manifest says)."""
    ram = system_ram(iomem_entries)
    if not ram:
        raise InputError("iomem has no top-level System RAM range")
    kern = kernel_ranges(iomem_entries)
    records = read_lime(image)
    rep = Report(image=image, records=len(records), image_bytes=sum(r.size for r in records))
    rep.ram = [RangeStats("System RAM", r.start, r.end) for r in ram]
    rep.kernel = [RangeStats(k.name, k.start, k.end) for k in kern]

    srt = sorted(records, key=lambda r: r.start)
    for a, b in zip(srt, srt[1:]):
        if b.start <= a.end:
            rep.overlaps.append(f"{a.start:#x}-{a.end:#x} overlaps {b.start:#x}-{b.end:#x}")

    truth = Truth(truth_dir, ram)
    try:
        with open(image, "rb") as img:
            for rec in records:
                inside = 0
                for r, rs in zip(ram, rep.ram):
                    lo, hi = max(rec.start, r.start), min(rec.end, r.end)
                    if lo > hi:
                        continue
                    inside += hi - lo + 1
                    _compare_span(img, rec, truth, r, rs, rep.kernel, lo, hi, max_diffs)
                outside = rec.size - inside
                if outside:
                    rep.outside_ram_bytes += outside
                    rep.outside_ram_records.append(f"{rec.start:#x}-{rec.end:#x} ({outside} bytes outside)")
        for start, end in captured or []:
            _count_missing_blocks(rep, srt, truth, ram, start, end, block or BLOCK)
    finally:
        truth.close()
    return rep


def _count_missing_blocks(rep, records, truth, ram, start, end, size):
    """Counts the blocks of start..end (cut every `size` bytes from start) that no record touches."""
    block = start
    while block <= end:
        last = min(block + size - 1, end)
        if not any(rec.start <= last and block <= rec.end for rec in records):
            rep.zero_blocks += 1
            for r, rs in zip(ram, rep.ram):
                addr, hi = max(block, r.start), min(last, r.end)
                rs.zero_block_bytes += max(0, hi - addr + 1)
                while addr <= hi:
                    n = min(CHUNK, hi + 1 - addr)
                    rs.zero_block_bytes_still_zero += truth.read(r, addr, n).count(0)
                    addr += n
        block += size


def _compare_span(img, rec, truth, r, rs, kstats, lo, hi, max_diffs):
    addr = lo
    while addr <= hi:
        n = min(hi + 1, (addr // CHUNK + 1) * CHUNK) - addr
        img.seek(rec.offset + addr - rec.start)
        a = img.read(n)
        b = truth.read(r, addr, n)
        if len(a) != n or len(b) != n:
            raise InputError(f"short read at {addr:#x}")
        same = a == b
        rs.covered += n
        rs.matching += n if same else _equal_count(a, b)
        # whole aligned pages within this chunk
        p = -(-addr // PAGE) * PAGE
        while p + PAGE <= addr + n:
            rs.pages_covered += 1
            o = p - addr
            if same or a[o:o + PAGE] == b[o:o + PAGE]:
                rs.pages_identical += 1
            p += PAGE
        for k in kstats:
            klo, khi = max(addr, k.start), min(addr + n - 1, k.end)
            if klo > khi:
                continue
            ka, kb = a[klo - addr:khi - addr + 1], b[klo - addr:khi - addr + 1]
            k.covered += khi - klo + 1
            if same or ka == kb:
                k.matching += khi - klo + 1
            else:
                k.matching += _equal_count(ka, kb)
                off = 0
                while len(k.first_diffs) < max_diffs:
                    i = _first_diff(ka[off:], kb[off:])
                    if i < 0:
                        break
                    k.first_diffs.append(klo + off + i)
                    off += i + 1
        addr += n


# --------------------------------------------------------------------------
# CLI

def human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024


def pct(a: int, b: int) -> str:
    return f"{100.0 * a / b:.2f}%" if b else "n/a"


def summary(rep: Report) -> List[str]:
    out = [f"image {rep.image}: {rep.records} LiME records, {human(rep.image_bytes)} of data"]
    for s in rep.ram:
        out.append(f"  System RAM {s.start:#x}-{s.end:#x} ({human(s.size)}): covered {human(s.covered)} "
                   f"({pct(s.covered, s.size)}), bytes matching {pct(s.matching, s.covered)} of covered "
                   f"({s.covered - s.matching} differ), "
                   f"pages identical {s.pages_identical}/{s.pages_covered}")
        if s.zero_block_bytes:
            out.append(f"    {human(s.zero_block_bytes)} in blocks no record touches; "
                       f"{pct(s.zero_block_bytes_still_zero, s.zero_block_bytes)} of it still zero in the truth")
    for k in rep.kernel:
        state = "EQUAL" if k.equal else ("DIFFERENT" if k.covered else "NOT COVERED")
        line = (f"  {k.name} {k.start:#x}-{k.end:#x} ({human(k.size)}): covered {pct(k.covered, k.size)}, "
                f"matching {k.matching}/{k.size} bytes: {state}")
        if k.first_diffs:
            line += " (first differences at " + ", ".join(hex(a) for a in k.first_diffs) + ")"
        out.append(line)
    if not rep.kernel:
        out.append("  (no Kernel code / rodata lines in iomem)")
    out.append(f"  total: covered {human(rep.covered)} of {human(rep.ram_bytes)} System RAM "
               f"({rep.coverage:.4f}), matching {human(rep.matching)} ({rep.match_fraction:.4f} of covered)")
    if rep.outside_ram_bytes:
        out.append(f"  {human(rep.outside_ram_bytes)} of image data outside System RAM: "
                   + "; ".join(rep.outside_ram_records[:5]))
    return out


def checks(rep: Report, require_kernel_equal=False, min_coverage=None, min_match=None,
           allow_outside_ram=False, zero_blocks_skipped=None):
    """List of (ok, description). zero_blocks_skipped: the manifest's count, if --zero-blocks."""
    res = [(not rep.overlaps, "no overlapping records" + ("" if not rep.overlaps else ": " + "; ".join(rep.overlaps[:3])))]
    if not allow_outside_ram:
        res.append((rep.outside_ram_bytes == 0, f"no data outside System RAM ({rep.outside_ram_bytes} bytes)"))
    if require_kernel_equal:
        res.append((rep.kernel_equal, "Kernel code and rodata fully covered and byte-equal"
                    + ("" if rep.kernel else " (none found in iomem)")))
    if zero_blocks_skipped is not None:
        res.append((rep.zero_blocks == zero_blocks_skipped,
                    f"{rep.zero_blocks} block(s) missing, the manifest skipped {zero_blocks_skipped} as all zeros"))
        if min_coverage is not None:
            res.append((rep.coverage_with_zero_blocks >= min_coverage,
                        f"coverage with the skipped blocks {rep.coverage_with_zero_blocks:.4f} >= {min_coverage}"))
    elif min_coverage is not None:
        res.append((rep.coverage >= min_coverage, f"coverage {rep.coverage:.4f} >= {min_coverage}"))
    if min_match is not None:
        res.append((rep.match_fraction >= min_match, f"match {rep.match_fraction:.4f} >= {min_match}"))
    return res


def load_zero_blocks(path):
    """The manifest's zero_blocks_skipped, its captured ranges as (start, end) pairs, and the
    block size records were cut in (record_block_bytes; BLOCK in manifests without it)."""
    try:
        with open(path) as f:
            manifest = json.load(f)
        skipped = manifest["zero_blocks_skipped"]
        captured = [(int(r["start"], 16), int(r["end"], 16)) for r in manifest["ranges"]["captured"]]
        block = manifest.get("record_block_bytes", BLOCK)
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
        raise InputError(f"manifest {path}: no zero_blocks_skipped and ranges.captured: {e!r}")
    if type(skipped) is not int or skipped < 0:
        raise InputError(f"manifest {path}: zero_blocks_skipped is not a count: {skipped!r}")
    if type(block) is not int or block <= 0:
        raise InputError(f"manifest {path}: record_block_bytes is not a size: {block!r}")
    return skipped, captured, block


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 epilog=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--iomem", required=True, help="guest /proc/iomem (as root)")
    ap.add_argument("--truth", required=True, help="directory of ram-<start>-<end>.bin dumps")
    ap.add_argument("--image", required=True, help="LiME image to check")
    ap.add_argument("--require-kernel-equal", action="store_true")
    ap.add_argument("--min-coverage", type=float, metavar="FRACTION")
    ap.add_argument("--min-match", type=float, metavar="FRACTION")
    ap.add_argument("--zero-blocks", metavar="MANIFEST",
                    help="the capture's manifest (ranges.captured, zero_blocks_skipped)")
    ap.add_argument("--allow-outside-ram", action="store_true")
    ap.add_argument("--json", metavar="PATH", help="also write the report as JSON")
    ap.add_argument("--quiet", action="store_true", help="print only the result line")
    args = ap.parse_args(argv)
    try:
        skipped, captured, block = load_zero_blocks(args.zero_blocks) if args.zero_blocks else (None, None, None)
        rep = compare(load_iomem(args.iomem), args.truth, args.image, captured=captured, block=block)
    except InputError as e:
        print(f"compare.py: error: {e}", file=sys.stderr)
        print("RESULT: ERROR")
        return 2
    res = checks(rep, args.require_kernel_equal, args.min_coverage, args.min_match,
                 args.allow_outside_ram, skipped)
    if not args.quiet:
        print("\n".join(summary(rep)))
        for ok, what in res:
            print(f"  {'PASS' if ok else 'FAIL'}: {what}")
    failed = [w for ok, w in res if not ok]
    if args.json:
        d = rep.to_dict()
        d["checks"] = [{"ok": ok, "check": w} for ok, w in res]
        d["passed"] = not failed
        with open(args.json, "w") as f:
            json.dump(d, f, indent=1)
    print("RESULT: " + ("PASS" if not failed else "FAIL (" + "; ".join(failed) + ")"))
    return 0 if not failed else 1


if __name__ == "__main__":
    sys.exit(main())
