#!/usr/bin/env python3
"""consistency.py OUT NAME=idle|busy ...: the manifest's consistency figures against QEMU's view (issue 23).

For each NAME, OUT/NAME.lime is a capture made in the guest, OUT/NAME.lime.json its manifest,
and OUT/snapshots/NAME.pages guestctl.py's snapshot taken right after the capture ended (the
guest stopped; one 8-byte BLAKE2b digest per 4 KiB page of top-level System RAM, in order).

The pages avml sampled are worked out again here from the manifest (captured ranges,
sample_stride_pages) and the guest's /proc/iomem (Kernel data, Kernel bss), by the rule
Sources/Capture/Consistency.swift states: every whole 4 KiB page of the kernel's data and
bss, and every stride-th whole page of the captured ranges counted in address order,
outside the kernel's data. For each sampled page the image's copy is compared with the
snapshot's digest: the share that differs is an independent measure of how much changed
after each page was read. The snapshot comes a moment after avml's own re-read, so it may
be a little higher than the manifest's share, never much lower.

Checks, per capture: the manifest samples as many pages as worked out here (less the pages
the manifest lists as unreadable); the share QEMU sees lies within --below percentage points
under and --above points over the manifest's. busy: the manifest's share is at least
--busy-min percent. idle: every page of Kernel code and Kernel rodata in the image equals
the snapshot. Prints the figures. Exit status 0 when every check holds, 1 otherwise.
"""
import argparse
import hashlib
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import compare  # noqa: E402

PAGE = 4096
MIN_STRIDE = 64
MAX_OTHER = 1 << 16


def merge(ranges):
    out = []
    for start, end in sorted(ranges):
        if out and start <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], end))
        else:
            out.append((start, end))
    return out


def intersect(ranges, allowed):
    return [(max(a, c), min(b, d)) for a, b in ranges for c, d in allowed if max(a, c) < min(b, d)]


def sampled_pages(captured, kernel_data, stride):
    """[(address, region)] as avml samples them; captured and kernel_data half-open."""
    whole = [((s + PAGE - 1) // PAGE * PAGE, e // PAGE * PAGE) for s, e in captured]
    whole = [(s, e) for s, e in whole if s < e]
    data = intersect(merge([(s // PAGE * PAGE, (e + PAGE - 1) // PAGE * PAGE) for s, e in kernel_data]), whole)
    total = sum((e - s) // PAGE for s, e in whole)
    expected_stride = max(MIN_STRIDE, (total + MAX_OTHER - 1) // MAX_OTHER)
    if stride != expected_stride:
        raise SystemExit(f"consistency: the manifest's stride is {stride}, the rule gives {expected_stride}")
    pages = [(a, "kernel data") for s, e in data for a in range(s, e, PAGE)]
    counted = 0
    for s, e in whole:
        count = (e - s) // PAGE
        index = (counted + stride - 1) // stride * stride
        while index < counted + count:
            address = s + (index - counted) * PAGE
            if not any(ds <= address < de for ds, de in data):
                pages.append((address, "other memory"))
            index += stride
        counted += count
    return sorted(pages)


class Snapshot:
    """Digests of a guestctl snapshot, by physical address."""

    def __init__(self, path, ram):
        self.digests = path.read_bytes()
        self.ram = [(r.start, r.end + 1) for r in ram]
        self.first = []
        pages = 0
        for start, end in self.ram:
            self.first.append(pages)
            pages += (end - start + PAGE - 1) // PAGE  # guestctl digests a last partial page too
        if len(self.digests) != 8 * pages:
            raise SystemExit(f"consistency: {path} has {len(self.digests) // 8} pages, System RAM {pages}")

    def digest(self, address):
        for (start, end), first in zip(self.ram, self.first):
            if start <= address < end:
                index = first + (address - start) // PAGE
                return self.digests[8 * index:8 * index + 8]
        return None


class Image:
    """Pages of a LiME image by address; memory in no record (skipped all-zero blocks) reads as zeros."""

    def __init__(self, path):
        self.records = compare.read_lime(str(path))
        self.file = open(path, "rb")

    def page(self, address):
        for record in self.records:
            if record.start <= address and address + PAGE - 1 <= record.end:
                self.file.seek(record.offset + address - record.start)
                return self.file.read(PAGE)
        return bytes(PAGE)


def digest(page):
    return hashlib.blake2b(page, digest_size=8).digest()


def check(out, name, kind, iomem, args):
    problems = []
    image_path = out / f"{name}.lime"
    manifest = json.loads((out / f"{name}.lime.json").read_text())
    consistency = manifest.get("consistency")
    if not consistency:
        return [f"{name}: the manifest has no consistency section"]
    ram = compare.system_ram(iomem)
    snapshot = Snapshot(out / "snapshots" / f"{name}.pages", ram)
    image = Image(image_path)
    captured = [(int(r["start"], 16), int(r["end"], 16) + 1) for r in manifest["ranges"]["captured"]]
    kernel_data = [(e.start, e.end + 1) for e in compare.kernel_ranges(iomem, ("Kernel data", "Kernel bss"))]
    unreadable = [(int(r["start"], 16), int(r["end"], 16) + 1) for r in manifest["unreadable"]]
    pages = [(a, region) for a, region in sampled_pages(captured, kernel_data, consistency["sample_stride_pages"])
             if not any(s <= a < e for s, e in unreadable)]
    regions = {r["name"]: r for r in consistency["regions"]}
    seen = {}
    for address, region in pages:
        total, differ = seen.get(region, (0, 0))
        theirs = snapshot.digest(address)
        seen[region] = (total + 1, differ + (theirs is not None and theirs != digest(image.page(address))))
    sampled = sum(r["pages_sampled"] for r in regions.values())
    changed = sum(r["pages_changed"] for r in regions.values())
    differ = sum(d for _, d in seen.values())
    if len(pages) != sampled:
        problems.append(f"{name}: the manifest sampled {sampled} pages, the rule gives {len(pages)}")
    ours = 100 * changed / max(sampled, 1)
    qemu = 100 * differ / max(len(pages), 1)
    detail = "; ".join(f"{region} {regions.get(region, {}).get('pages_changed', '?')} vs {d} of {t}"
                       for region, (t, d) in sorted(seen.items()))
    print(f"consistency: {name} ({kind}): manifest {ours:.2f}% of {sampled} sampled pages changed; QEMU's snapshot "
          f"after the capture differs from the image on {qemu:.2f}% of them ({detail}); difference "
          f"{qemu - ours:+.2f} points; re-read {consistency['reread_seconds']:.3f} s at {consistency['reread_at']:.1f} s")
    if qemu < ours - args.below or qemu > ours + args.above:
        problems.append(f"{name}: QEMU's {qemu:.2f}% is not within -{args.below}/+{args.above} points of the "
                        f"manifest's {ours:.2f}%")
    if kind == "busy" and ours < args.busy_min:
        problems.append(f"{name}: with the writer running only {ours:.2f}% changed (want >= {args.busy_min}%)")
    if kind == "idle":
        code = compare.kernel_ranges(iomem)
        bad = [a for e in code for a in range(e.start // PAGE * PAGE, e.end + 1, PAGE)
               if a >= e.start and a + PAGE - 1 <= e.end
               and snapshot.digest(a) != digest(image.page(a))]
        print(f"consistency: {name}: {sum((e.end + 1 - e.start) // PAGE for e in code)} pages of Kernel code and "
              f"rodata, {len(bad)} differ from the snapshot")
        if bad:
            problems.append(f"{name}: {len(bad)} kernel code/rodata pages differ, first {bad[0]:#x}")
    return problems


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path)
    parser.add_argument("captures", nargs="+", help="NAME=idle or NAME=busy")
    parser.add_argument("--below", type=float, default=1.0, help="points QEMU's share may lie under the manifest's")
    parser.add_argument("--above", type=float, default=5.0, help="points QEMU's share may lie over the manifest's")
    parser.add_argument("--busy-min", type=float, default=0.5, help="percent that must change with the writer")
    args = parser.parse_args()
    iomem = compare.load_iomem(str(args.out / "iomem.txt"))
    problems = []
    for capture in args.captures:
        name, _, kind = capture.partition("=")
        if kind not in ("idle", "busy"):
            parser.error(f"{capture}: want NAME=idle or NAME=busy")
        problems += check(args.out, name, kind, iomem, args)
    for problem in problems:
        print(f"consistency: FAIL: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
