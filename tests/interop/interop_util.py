"""Shared helpers for the swift-avml interoperability tests.

Everything here is deliberately independent of the Swift code: image
formats, Snappy framing and CRC-32C are re-implemented from their
specifications so the tests can build reference images and check ours.

Formats
-------
LiME v1 record:  <IIQQQ  magic 0x4C694D45, version 1, start, end (inclusive), 0
                 followed by end - start + 1 bytes.
AVML v2 record:  <IIQQQ  magic 0x4C4D5641, version 2, start, end (inclusive), 0
                 followed by one Snappy framing-format stream of the record's
                 bytes, followed by <Q the byte length of that framed stream.
"""

from __future__ import annotations

import ctypes
import os
import random
import struct
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, List, Optional, Sequence

AVML_BIN = os.environ.get("AVML_BIN", str(Path(__file__).resolve().parents[2] / ".build" / "debug" / "avml"))

PAGE = 4096
BLOCK = 16 * 1024 * 1024  # AVML's MAX_BLOCK_SIZE
LIME_MAGIC = 0x4C694D45
AVML_MAGIC = 0x4C4D5641
HEADER = struct.Struct("<IIQQQ")
TRAILER = struct.Struct("<Q")

STREAM_IDENTIFIER = b"\xff\x06\x00\x00sNaPpY"
CHUNK_COMPRESSED = 0x00
CHUNK_UNCOMPRESSED = 0x01
CHUNK_PADDING = 0xFE
CHUNK_STREAM_ID = 0xFF
MAX_CHUNK_DATA = 65536


# --------------------------------------------------------------------------
# running the binary
# --------------------------------------------------------------------------


def wait_for_binary(limit: float = 180) -> None:
    """The binary may be briefly missing while it is rebuilt; wait for it."""
    deadline = time.monotonic() + limit
    while not os.access(AVML_BIN, os.X_OK):
        if time.monotonic() > deadline:
            raise FileNotFoundError(f"avml binary {AVML_BIN} not found (set AVML_BIN)")
        time.sleep(1)


def run_avml(*args: object, timeout: float = 120) -> subprocess.CompletedProcess:
    """Run the avml binary; returns the CompletedProcess (text mode)."""
    wait_for_binary()
    return subprocess.run(
        [AVML_BIN, *[str(a) for a in args]],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def convert(src: Path, dst: Path, source_format: str, fmt: str, *extra: object,
            timeout: float = 120) -> subprocess.CompletedProcess:
    return run_avml("convert", "--source-format", source_format, "--format", fmt,
                    *extra, src, dst, timeout=timeout)


def convert_ok(src: Path, dst: Path, source_format: str, fmt: str, *extra: object) -> bytes:
    """Convert and assert success; return the destination's bytes."""
    proc = convert(src, dst, source_format, fmt, *extra)
    assert proc.returncode == 0, (
        f"avml convert --source-format {source_format} --format {fmt} {src} {dst} "
        f"failed with {proc.returncode}\nstdout: {proc.stdout}\nstderr: {proc.stderr}"
    )
    return Path(dst).read_bytes()


# --------------------------------------------------------------------------
# deterministic memory-like test data
# --------------------------------------------------------------------------

_WORDS = (
    b"kernel", b"task_struct", b"init", b"systemd", b"/usr/lib/x86_64-linux-gnu",
    b"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin", b"HOME=/root",
    b"GET /index.html HTTP/1.1", b"Content-Type: text/html; charset=utf-8",
    b"ELF", b"libc.so.6", b"mm_struct", b"vm_area_struct", b"\x00\x00", b"swapper/0",
)


def _text_page(rng: random.Random) -> bytes:
    out = bytearray()
    while len(out) < PAGE:
        out += rng.choice(_WORDS)
        out += b" " if rng.random() < 0.8 else b"\n"
    return bytes(out[:PAGE])


def _pointer_page(rng: random.Random) -> bytes:
    # kernel-ish direct map / text pointers, small ints, NULLs, list heads
    base = rng.choice((0xFFFF888000000000, 0xFFFFFFFF81000000, 0x00007F0000000000))
    vals = []
    for _ in range(PAGE // 8):
        r = rng.random()
        if r < 0.55:
            vals.append(base + rng.randrange(0, 1 << 24) * 8)
        elif r < 0.75:
            vals.append(0)
        elif r < 0.9:
            vals.append(rng.randrange(0, 4096))
        else:
            vals.append(rng.getrandbits(64))
    return struct.pack(f"<{len(vals)}Q", *vals)


def _random_page(rng: random.Random) -> bytes:
    return rng.randbytes(PAGE)


def _zero_page(rng: random.Random) -> bytes:
    return bytes(PAGE)


PAGE_KINDS = {
    "zero": _zero_page,
    "random": _random_page,
    "text": _text_page,
    "pointer": _pointer_page,
}


def gen_pages(rng: random.Random, npages: int,
              weights: Sequence[float] = (0.3, 0.2, 0.25, 0.25)) -> bytes:
    """npages pages, each zero/random/text/pointer with the given weights.

    Pages come in short runs of one kind, which is what real memory looks
    like and gives Snappy something to find across page boundaries.
    """
    kinds = list(PAGE_KINDS.values())
    out = bytearray()
    while len(out) < npages * PAGE:
        kind = rng.choices(kinds, weights=weights)[0]
        for _ in range(rng.randint(1, 6)):
            out += kind(rng)
    return bytes(out[: npages * PAGE])


def gen_memory(seed: int, size: int, **kw) -> bytes:
    """size bytes (need not be page aligned) of mixed memory-like data."""
    rng = random.Random(seed)
    data = gen_pages(rng, (size + PAGE - 1) // PAGE, **kw)[:size]
    return data


def gen_multiblock(seed: int) -> bytes:
    """Raw image crossing several 16 MiB blocks.

    block 0: mixed data with a zero hole; block 1: entirely zero (must be
    omitted); block 2: mostly zero but a single non-zero byte at the very
    end; block 3: partial (not page aligned) tail of mixed data.
    Around 2 x 16 MiB of generated content; the zero parts cost nothing.
    """
    rng = random.Random(seed)
    b0 = bytearray(gen_pages(rng, BLOCK // PAGE, weights=(0.35, 0.15, 0.25, 0.25)))
    b0[5 * BLOCK // 8: 6 * BLOCK // 8] = bytes(BLOCK // 8)
    b1 = bytes(BLOCK)
    b2 = bytearray(BLOCK)
    b2[-1] = 0x5A
    tail = gen_pages(rng, 300)[: 300 * PAGE - 1234]
    return bytes(b0) + b1 + bytes(b2) + tail


# --------------------------------------------------------------------------
# image formats
# --------------------------------------------------------------------------


def header(start: int, end_inclusive: int, *, compressed: bool = False,
           magic: Optional[int] = None, version: Optional[int] = None,
           reserved: int = 0) -> bytes:
    if magic is None:
        magic = AVML_MAGIC if compressed else LIME_MAGIC
    if version is None:
        version = 2 if compressed else 1
    return HEADER.pack(magic, version, start, end_inclusive, reserved)


def lime_record(start: int, data: bytes) -> bytes:
    return header(start, start + len(data) - 1) + data


def avml_record(start: int, size: int, stream: bytes, trailer: Optional[int] = None) -> bytes:
    if trailer is None:
        trailer = len(stream)
    return header(start, start + size - 1, compressed=True) + stream + TRAILER.pack(trailer)


def avml_blocks(raw: bytes):
    """(start, bytes) of the records AVML makes from a raw file."""
    for start in range(0, len(raw), BLOCK):
        chunk = raw[start:start + BLOCK]
        if chunk.count(0) != len(chunk):
            yield start, chunk


def reference_lime_from_raw(raw: bytes) -> bytes:
    """LiME image per AVML's rules: 16 MiB blocks from offset 0, all-zero
    blocks omitted, the last block partial."""
    return b"".join(lime_record(s, c) for s, c in avml_blocks(raw))


def raw_from_records(records) -> bytes:
    """What image->raw must produce: each record at its start, gaps zero."""
    out = bytearray()
    for start, data in records:
        assert start >= len(out)
        out += bytes(start - len(out))
        out += data
    return bytes(out)


def strip_trailing_zero_blocks(raw: bytes) -> bytes:
    """raw as it comes back from raw->image->raw: trailing all-zero 16 MiB
    blocks are not in the image, so they are not in the raw output."""
    recs = list(avml_blocks(raw))
    if not recs:
        return b""
    s, c = recs[-1]
    return raw[: s + len(c)]


@dataclass
class Record:
    offset: int           # file offset of the header
    magic: int
    version: int
    start: int
    end: int              # inclusive
    payload_offset: int   # file offset of the data / framed stream
    payload: bytes        # LiME: the bytes; AVML: the framed stream
    trailer: Optional[int] = None

    @property
    def size(self) -> int:
        return self.end - self.start + 1


def parse_image(data: bytes) -> List[Record]:
    """Parse a LiME or AVML v2 image (records may be mixed)."""
    recs = []
    off = 0
    while off < len(data):
        assert off + HEADER.size <= len(data), f"truncated header at {off}"
        magic, version, start, end, reserved = HEADER.unpack_from(data, off)
        assert reserved == 0, f"reserved field {reserved:#x} at {off}"
        assert end >= start
        p = off + HEADER.size
        if magic == LIME_MAGIC and version == 1:
            n = end - start + 1
            assert p + n <= len(data), f"truncated LiME record at {off}"
            recs.append(Record(off, magic, version, start, end, p, data[p:p + n]))
            off = p + n
        elif magic == AVML_MAGIC and version == 2:
            # The framed stream's end is found by walking its chunks to
            # the record's size and finding the u64 trailer there.
            slen = framed_stream_length(data, p, end - start + 1)
            (trailer,) = TRAILER.unpack_from(data, p + slen)
            recs.append(Record(off, magic, version, start, end, p, data[p:p + slen], trailer))
            off = p + slen + TRAILER.size
        else:
            raise AssertionError(f"bad magic/version {magic:#x}/{version} at {off}")
    return recs


def _varint(buf: bytes, pos: int = 0) -> int:
    result = shift = 0
    while True:
        b = buf[pos]
        result |= (b & 0x7F) << shift
        pos += 1
        if not b & 0x80:
            return result
        shift += 7


def framed_stream_length(data: bytes, pos: int, size: int) -> int:
    """Length of the framed stream starting at pos that decodes to `size`
    bytes and is followed by its u64 trailer.

    Walks chunk headers, adding up decoded lengths (the varint preamble of
    compressed chunks, the body length of uncompressed ones); once `size`
    bytes are accounted for, the stream ends at the first position whose
    next 8 bytes equal the number of stream bytes walked (the trailer).
    Further chunks there (padding/skippable) would still belong to it.
    """
    start = pos
    decoded = 0
    while True:
        if decoded >= size and pos + 8 <= len(data):
            (maybe,) = TRAILER.unpack_from(data, pos)
            if maybe == pos - start:
                return pos - start
            if not (0x80 <= data[pos] <= 0xFF):
                # Not a trailer for this length and not a skippable chunk:
                # the stream ends here and the trailer is wrong; callers
                # compare Record.trailer with len(Record.payload).
                return pos - start
        assert decoded <= size, f"framed stream at {start} decodes past {size} bytes"
        assert pos + 4 <= len(data), f"framed stream at {start} runs off the end of the file"
        ctype = data[pos]
        clen = int.from_bytes(data[pos + 1:pos + 4], "little")
        if ctype == CHUNK_COMPRESSED:
            decoded += _varint(data, pos + 8)
        elif ctype == CHUNK_UNCOMPRESSED:
            decoded += clen - 4
        pos += 4 + clen


# --------------------------------------------------------------------------
# CRC-32C and Snappy framing (from the framing_format.txt spec)
# --------------------------------------------------------------------------


def _make_crc_table():
    poly = 0x82F63B78
    table = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ poly if c & 1 else c >> 1
        table.append(c)
    return table


_CRC_TABLE = _make_crc_table()


def crc32c(data: bytes) -> int:
    crc = 0xFFFFFFFF
    t = _CRC_TABLE
    for b in data:
        crc = t[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def masked_crc(data: bytes) -> int:
    c = crc32c(data)
    return ((((c >> 15) | (c << 17)) & 0xFFFFFFFF) + 0xA282EAD8) & 0xFFFFFFFF


def chunk(ctype: int, body: bytes) -> bytes:
    assert len(body) < (1 << 24)
    return bytes([ctype]) + len(body).to_bytes(3, "little") + body


def uncompressed_chunk(data: bytes, crc: Optional[int] = None) -> bytes:
    assert len(data) <= MAX_CHUNK_DATA
    if crc is None:
        crc = masked_crc(data)
    return chunk(CHUNK_UNCOMPRESSED, struct.pack("<I", crc) + data)


def compressed_chunk(data: bytes, compress_raw: Callable[[bytes], bytes],
                     crc: Optional[int] = None) -> bytes:
    assert len(data) <= MAX_CHUNK_DATA
    if crc is None:
        crc = masked_crc(data)
    return chunk(CHUNK_COMPRESSED, struct.pack("<I", crc) + compress_raw(data))


def iter_chunks(stream: bytes):
    """Yield (type, body, offset) of each chunk in a framed stream."""
    pos = 0
    while pos < len(stream):
        assert pos + 4 <= len(stream), f"truncated chunk header at {pos}"
        ctype = stream[pos]
        clen = int.from_bytes(stream[pos + 1:pos + 4], "little")
        body = stream[pos + 4:pos + 4 + clen]
        assert len(body) == clen, f"truncated chunk at {pos}"
        yield ctype, body, pos
        pos += 4 + clen


# --------------------------------------------------------------------------
# Google's snappy (libsnappy.so.1, the C API) through ctypes
# --------------------------------------------------------------------------


class GoogleSnappy:
    """The C binding of Google's libsnappy (Debian libsnappy1v5).

    python-snappy >= 0.7 is a thin wrapper over cramjam (the Rust `snap`
    crate), so this is the only genuine Google implementation available.
    """

    def __init__(self) -> None:
        self.lib = ctypes.CDLL("libsnappy.so.1")
        lib = self.lib
        sz = ctypes.c_size_t
        lib.snappy_compress.argtypes = [ctypes.c_char_p, sz, ctypes.c_char_p, ctypes.POINTER(sz)]
        lib.snappy_uncompress.argtypes = [ctypes.c_char_p, sz, ctypes.c_char_p, ctypes.POINTER(sz)]
        lib.snappy_uncompressed_length.argtypes = [ctypes.c_char_p, sz, ctypes.POINTER(sz)]
        lib.snappy_max_compressed_length.argtypes = [sz]
        lib.snappy_max_compressed_length.restype = sz
        lib.snappy_validate_compressed_buffer.argtypes = [ctypes.c_char_p, sz]

    def compress(self, data: bytes) -> bytes:
        n = ctypes.c_size_t(self.lib.snappy_max_compressed_length(len(data)))
        out = ctypes.create_string_buffer(n.value)
        rc = self.lib.snappy_compress(data, len(data), out, ctypes.byref(n))
        assert rc == 0, f"snappy_compress returned {rc}"
        return out.raw[: n.value]

    def uncompress(self, data: bytes) -> bytes:
        assert self.lib.snappy_validate_compressed_buffer(data, len(data)) == 0, \
            "Google snappy rejects the compressed block"
        n = ctypes.c_size_t(0)
        rc = self.lib.snappy_uncompressed_length(data, len(data), ctypes.byref(n))
        assert rc == 0, f"snappy_uncompressed_length returned {rc}"
        out = ctypes.create_string_buffer(max(n.value, 1))
        rc = self.lib.snappy_uncompress(data, len(data), out, ctypes.byref(n))
        assert rc == 0, f"snappy_uncompress returned {rc}"
        return out.raw[: n.value]

    def decode_framed(self, stream: bytes, check_crc: bool = True) -> bytes:
        """Decode a framing-format stream, decompressing each compressed
        chunk with Google's raw snappy and (optionally) checking CRCs with
        our own CRC-32C."""
        out = bytearray()
        seen_id = False
        for ctype, body, pos in iter_chunks(stream):
            if ctype == CHUNK_STREAM_ID:
                assert body == b"sNaPpY", f"bad stream identifier at {pos}"
                seen_id = True
                continue
            assert seen_id, f"chunk before stream identifier at {pos}"
            if ctype in (CHUNK_COMPRESSED, CHUNK_UNCOMPRESSED):
                assert len(body) >= 4, f"short data chunk at {pos}"
                (crc,) = struct.unpack_from("<I", body)
                data = self.uncompress(body[4:]) if ctype == CHUNK_COMPRESSED else body[4:]
                assert len(data) <= MAX_CHUNK_DATA, f"chunk at {pos} decodes to {len(data)} bytes"
                if check_crc:
                    assert crc == masked_crc(data), f"CRC mismatch in chunk at {pos}"
                out += data
            elif 0x02 <= ctype <= 0x7F:
                raise AssertionError(f"reserved unskippable chunk {ctype:#x} at {pos}")
            # 0x80-0xfe: skippable / padding
        return bytes(out)


def google_framed_compress(data: bytes, g: GoogleSnappy) -> bytes:
    """A framing-format stream built from Google's raw compressor, choosing
    an uncompressed chunk when compression does not save at least 1/8 (as
    the reference framers do)."""
    parts = [STREAM_IDENTIFIER]
    for i in range(0, len(data), MAX_CHUNK_DATA):
        piece = data[i:i + MAX_CHUNK_DATA]
        comp = g.compress(piece)
        if len(comp) < len(piece) - len(piece) // 8:
            parts.append(chunk(CHUNK_COMPRESSED, struct.pack("<I", masked_crc(piece)) + comp))
        else:
            parts.append(uncompressed_chunk(piece))
    return b"".join(parts)


# --------------------------------------------------------------------------
# Volatility 3, in a subprocess with a time limit (its AVML layer can loop forever)
# --------------------------------------------------------------------------

VOL3_READ = """
import sys
from pathlib import Path
from volatility3.framework import contexts
from volatility3.framework.layers import avml, physical
ctx = contexts.Context()
ctx.config["base.location"] = Path(sys.argv[1]).resolve().as_uri()
ctx.add_layer(physical.FileLayer(ctx, "base", "base"))
ctx.config["memory.base_layer"] = "base"
layer = avml.AVMLLayer(ctx, "memory", "memory")
raw = Path(sys.argv[2]).read_bytes()
assert layer.read(int(sys.argv[3], 0), len(raw)) == raw, "vol3 read different bytes"
print("OK")
"""


def vol3_read(image: Path, raw: Path, base: int = 0, timeout: float = 60) -> subprocess.CompletedProcess:
    """vol3's AVMLLayer over `image` reads `raw` at `base`; raises TimeoutExpired if vol3 hangs."""
    return subprocess.run([sys.executable, "-c", VOL3_READ, str(image), str(raw), hex(base)],
                          capture_output=True, text=True, timeout=timeout)
