#!/usr/bin/env python3
"""Deterministic memory-like corpus for scripts/bench.py (the shared benchmark recipe).

Each 4 KiB page is drawn (seeded) from: zero pages, pages of shared libraries and
binaries found on this machine (page cache / code), text pages, pointer-heavy
heap-like pages, and random (encrypted/compressed) pages.  Runs of zero pages
are clustered the way free memory is, so some whole 16 MiB blocks are zero.

The output is a pure function of the seed, the size and the files under
/usr/lib/x86_64-linux-gnu, /usr/bin, /usr/lib, /usr/share (read in sorted order):
the same machine image always gives the same bytes for a seed.

Usage: bench-corpus.py OUT SIZE_MIB [SEED]   (SEED defaults to 57)
"""
import os, random, struct, sys

PAGE = 4096


def library_pages(limit):
    pages = []
    for root in ("/usr/lib/x86_64-linux-gnu", "/usr/bin", "/usr/lib", "/usr/share"):
        if not os.path.isdir(root):
            continue
        for name in sorted(os.listdir(root)):
            p = os.path.join(root, name)
            if os.path.isfile(p) and not os.path.islink(p):
                try:
                    with open(p, "rb") as f:
                        data = f.read(8 << 20)
                except OSError:
                    continue
                for i in range(0, len(data) - PAGE, PAGE):
                    pages.append(data[i:i + PAGE])
                if len(pages) >= limit:
                    return pages
    return pages


def text_pages(limit):
    # A bytearray, not bytes: the same result as the recipe's `blob += ...` on bytes,
    # without copying the whole blob for every file (minutes -> a second).
    blob = bytearray()
    for root in ("/usr/share/doc", "/usr/share/common-licenses"):
        for d, _, files in os.walk(root):
            for n in sorted(files):
                try:
                    with open(os.path.join(d, n), "rb") as f:
                        blob += f.read()
                except OSError:
                    pass
                if len(blob) > limit * PAGE:
                    break
    return [bytes(blob[i:i + PAGE]) for i in range(0, min(len(blob) - PAGE, limit * PAGE), PAGE)]


def heap_page(rng):
    base = 0xffff888000000000 + rng.randrange(1 << 30) * 64
    words = []
    for _ in range(PAGE // 8):
        r = rng.random()
        words.append(base + rng.randrange(1 << 20) * 8 if r < 0.5 else (rng.randrange(256) if r < 0.8 else 0))
    return struct.pack("<512Q", *words)


def main():
    if len(sys.argv) not in (3, 4):
        sys.exit("usage: bench-corpus.py OUT SIZE_MIB [SEED]")
    out, mib = sys.argv[1], int(sys.argv[2])
    rng = random.Random(int(sys.argv[3]) if len(sys.argv) > 3 else 57)
    libs, texts = library_pages(60000), text_pages(20000)
    if not libs or not texts:
        sys.exit("bench-corpus.py: found no library or text pages on this machine")
    zero = bytes(PAGE)
    npages = mib * 256
    with open(out, "wb") as f:
        i, buf = 0, bytearray()
        while i < npages:
            if len(buf) >= 16 << 20:
                f.write(buf); buf = bytearray()
            r = rng.random()
            if r < 0.0002:        # free memory: a long run of zero pages (avg 8 MiB)
                run = min(npages - i, rng.randrange(256, 3840))
                buf += zero * run; i += run; continue
            if r < 0.15:          # scattered zero pages inside used memory
                buf += zero; i += 1; continue
            if r < 0.55:
                page = libs[rng.randrange(len(libs))]
            elif r < 0.72:
                page = texts[rng.randrange(len(texts))]
            elif r < 0.88:
                page = heap_page(rng)
            else:
                page = rng.randbytes(PAGE)
            buf += page; i += 1
        f.write(buf)


if __name__ == "__main__":
    main()
