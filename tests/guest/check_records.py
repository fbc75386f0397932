#!/usr/bin/env python3
"""check_records.py IMAGE [--iomem IOMEM]

An independent walk of a LiME or AVML image (no avml code): every record's
header, every chunk of every compressed record decoded with cramjam's Snappy
(the Rust `snap` crate), and for compressed records the condition Volatility
3's AVML layer needs: the framed stream must be shorter than the record's
memory (vol3 reads only `end - start` bytes of it and loops forever otherwise).
With --iomem, every record must lie inside the System RAM that file lists.

Prints one line of counts; exits 1 on the first violation.
"""
import argparse
import struct
import sys

import cramjam

HEADER = struct.Struct("<IIQQQ")
LIME, AVML = 0x4C694D45, 0x4C4D5641


def system_ram(path):
    ranges = []
    for line in open(path, encoding="utf-8", errors="replace"):
        span, _, name = line.strip().partition(" : ")
        if name == "System RAM" or name.startswith("System RAM ("):
            start, end = (int(x, 16) for x in span.split("-"))
            ranges.append((start, end))
    merged = []  # adjacent System RAM lines are one range to a reader
    for start, end in sorted(ranges):
        if merged and start <= merged[-1][1] + 1:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def walk_stream(data, pos, size):
    """Decodes the framed stream at pos that holds `size` bytes; returns its length."""
    start, decoded = pos, 0
    while decoded < size:
        ctype = data[pos]
        length = int.from_bytes(data[pos + 1:pos + 4], "little")
        body = data[pos + 4:pos + 4 + length]
        if len(body) != length:
            raise ValueError(f"chunk at {pos} runs past the end of the file")
        if ctype == 0x00:
            decoded += len(cramjam.snappy.decompress_raw(bytes(body[4:])))
        elif ctype == 0x01:
            decoded += length - 4
        elif ctype == 0xFF:
            if bytes(body) != b"sNaPpY":
                raise ValueError(f"bad stream identifier at {pos}")
        elif ctype < 0x80:
            raise ValueError(f"reserved chunk type {ctype:#x} at {pos}")
        pos += 4 + length
    if decoded != size:
        raise ValueError(f"stream at {start} decodes to {decoded} bytes, the record holds {size}")
    return pos - start


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("image")
    parser.add_argument("--iomem")
    args = parser.parse_args()
    data = memoryview(open(args.image, "rb").read())
    ram = system_ram(args.iomem) if args.iomem else None
    offset = records = compressed = 0
    while offset < len(data):
        magic, version, start, end, _ = HEADER.unpack_from(data, offset)
        size = end - start + 1
        if ram is not None and not any(lo <= start and end <= hi for lo, hi in ram):
            sys.exit(f"record {start:#x}-{end:#x} at {offset:#x} is outside System RAM")
        if magic == LIME and version == 1:
            offset += HEADER.size + size
        elif magic == AVML and version == 2:
            stream = walk_stream(data, offset + HEADER.size, size)
            (trailer,) = struct.unpack_from("<Q", data, offset + HEADER.size + stream)
            if trailer != stream:
                sys.exit(f"record {start:#x}-{end:#x}: trailer {trailer}, stream {stream}")
            if stream >= size - 1:
                sys.exit(f"record {start:#x}-{end:#x}: stream of {stream} bytes for {size} bytes of memory "
                         "(Volatility 3 cannot open it)")
            compressed += 1
            offset += HEADER.size + stream + 8
        else:
            sys.exit(f"bad record header at {offset:#x}")
        records += 1
    print(f"check_records: {args.image}: {records} records ({compressed} compressed), all readable")


if __name__ == "__main__":
    main()
