"""Snappy framing-format interoperability of avml's compressed images.

Implementations checked against:
  * python-snappy (snappy.StreamDecompressor / StreamCompressor).  Note that
    python-snappy >= 0.7 is a pure-Python wrapper over cramjam, i.e. the Rust
    `snap` crate - the same codec real AVML uses.
  * cramjam.snappy (framed compress / decompress), which verifies CRCs.
  * Google's C++ snappy (libsnappy.so.1, Debian libsnappy1v5) through its C
    API via ctypes: every compressed chunk is validated and decompressed by
    it, and streams framed around its compressor are fed to avml.
"""

from __future__ import annotations

import random
import re
import struct

import cramjam
import pytest
import snappy

import interop_util as u


# --------------------------------------------------------------------------
# avml -> other implementations
# --------------------------------------------------------------------------


def _check_our_stream(rec: u.Record, expected: bytes, google: u.GoogleSnappy,
                      python_crc: bool) -> None:
    stream = rec.payload
    where = f"record {rec.start:#x}-{rec.end:#x} at file offset {rec.offset:#x}"
    assert stream.startswith(u.STREAM_IDENTIFIER), f"{where}: no stream identifier"
    assert rec.trailer == len(stream), (
        f"{where}: trailer {rec.trailer} != framed stream length {len(stream)}")

    # chunk structure: one identifier, then only data chunks (each decoding
    # to <= 64 KiB, which GoogleSnappy.decode_framed checks below).
    chunks = list(u.iter_chunks(stream))
    assert chunks[0][0] == u.CHUNK_STREAM_ID
    assert all(t in (u.CHUNK_COMPRESSED, u.CHUNK_UNCOMPRESSED) for t, _, _ in chunks[1:]), \
        f"{where}: unexpected chunk types {sorted({t for t, _, _ in chunks[1:]})}"

    # python-snappy
    d = snappy.StreamDecompressor()
    out = d.decompress(stream) + d.flush()
    assert out == expected, f"{where}: snappy.StreamDecompressor output differs"
    # python-snappy again, fed in awkward pieces
    d = snappy.StreamDecompressor()
    rng = random.Random(rec.start)
    parts = []
    pos = 0
    while pos < len(stream):
        n = rng.randint(1, 100_000)
        parts.append(d.decompress(stream[pos:pos + n]))
        pos += n
    parts.append(d.flush())
    assert b"".join(parts) == expected, f"{where}: piecewise StreamDecompressor differs"

    # cramjam (checks every CRC)
    assert bytes(cramjam.snappy.decompress(stream)) == expected, \
        f"{where}: cramjam.snappy.decompress output differs"

    # Google's snappy, chunk by chunk; CRCs with our own CRC-32C
    assert google.decode_framed(stream, check_crc=python_crc) == expected, \
        f"{where}: Google snappy decode differs"


def test_small_image_streams_decode_everywhere(small_images, google):
    recs = u.parse_image(small_images.avml)
    blocks = list(u.avml_blocks(small_images.raw))
    assert [(r.start, r.size) for r in recs] == [(s, len(c)) for s, c in blocks]
    assert all(r.magic == u.AVML_MAGIC and r.version == 2 for r in recs)
    for rec, (_, data) in zip(recs, blocks):
        _check_our_stream(rec, data, google, python_crc=True)


def test_multiblock_image_streams_decode_everywhere(multi_images, google):
    recs = u.parse_image(multi_images.avml)
    blocks = list(u.avml_blocks(multi_images.raw))
    assert len(blocks) == 3  # block 1 is all zero and must be omitted
    assert [(r.start, r.size) for r in recs] == [(s, len(c)) for s, c in blocks]
    # records tile the file exactly: header, stream, trailer, next header...
    total = sum(u.HEADER.size + len(r.payload) + u.TRAILER.size for r in recs)
    assert total == len(multi_images.avml)
    for rec, (_, data) in zip(recs, blocks):
        # CRC of 16 MiB in pure Python is slow; cramjam checks CRCs anyway
        _check_our_stream(rec, data, google, python_crc=False)


def test_incompressible_record_uses_valid_uncompressed_chunks(tmp_path, google):
    raw = random.Random(99).randbytes(2 * 1024 * 1024)
    src = tmp_path / "rand.raw"
    src.write_bytes(raw)
    img = u.convert_ok(src, tmp_path / "rand.avml", "raw", "lime_compressed")
    (rec,) = u.parse_image(img)
    assert (rec.start, rec.size) == (0, len(raw))
    _check_our_stream(rec, raw, google, python_crc=True)


def test_threads_do_not_change_output(small_images, tmp_path):
    one = u.convert_ok(small_images.raw_path, tmp_path / "t1.avml", "raw", "lime_compressed",
                       "--threads", "1")
    two = u.convert_ok(small_images.raw_path, tmp_path / "t2.avml", "raw", "lime_compressed",
                       "--threads", "2")
    assert one == two == small_images.avml


# --------------------------------------------------------------------------
# other implementations -> avml
# --------------------------------------------------------------------------

# Page-aligned records with gaps, one odd-sized, none all-zero, none > 16 MiB.
RECORD_LAYOUT = [
    (0x1000, 0x100000),
    (0x200000, 0x280000),
    (0x480000, 12345),
    (0x500000, 0x10000),      # exactly one 64 KiB chunk
    (0x600000, 0x10001),      # one byte into a second chunk
]


def _record_data(seed: int):
    rng = random.Random(seed)
    out = []
    for start, size in RECORD_LAYOUT:
        data = bytearray(u.gen_pages(rng, (size + u.PAGE - 1) // u.PAGE)[:size])
        data[-1] |= 1  # never an all-zero record
        out.append((start, bytes(data)))
    return out


def _python_snappy_stream(data: bytes, seed: int) -> bytes:
    c = snappy.StreamCompressor()
    rng = random.Random(seed)
    parts = []
    pos = 0
    while pos < len(data):
        n = rng.choice((1, 4096, 65536, 100_000, rng.randint(1, 200_000)))
        parts.append(c.add_chunk(data[pos:pos + n]))
        pos += n
    parts.append(c.flush())
    return b"".join(parts)


def _cramjam_stream(data: bytes, seed: int) -> bytes:
    return bytes(cramjam.snappy.compress(data))


def _google_stream(data: bytes, seed: int) -> bytes:
    return u.google_framed_compress(data, u.GoogleSnappy())


@pytest.mark.parametrize("make_stream", [_python_snappy_stream, _cramjam_stream, _google_stream],
                         ids=["python-snappy", "cramjam", "google-libsnappy"])
def test_foreign_streams_convert(tmp_path, make_stream):
    recs = _record_data(seed=1234)
    image = b""
    for i, (start, data) in enumerate(recs):
        stream = make_stream(data, i)
        assert bytes(cramjam.snappy.decompress(stream)) == data  # sanity of the generator
        image += u.avml_record(start, len(data), stream)
    src = tmp_path / "foreign.avml"
    src.write_bytes(image)

    lime = u.convert_ok(src, tmp_path / "out.lime", "lime_compressed", "lime")
    assert lime == b"".join(u.lime_record(s, d) for s, d in recs)

    raw = u.convert_ok(src, tmp_path / "out.raw", "lime_compressed", "raw")
    assert raw == u.raw_from_records(recs)


# --------------------------------------------------------------------------
# hand-made framed streams that are valid
# --------------------------------------------------------------------------

def _graw(data: bytes) -> bytes:
    return u.GoogleSnappy().compress(data)


def _pieces(data: bytes, sizes):
    pos = 0
    for n in sizes:
        yield data[pos:pos + n]
        pos += n
    assert pos == len(data)


def _valid_streams():
    """(name, data, stream) of unusual but valid framed streams."""
    rng = random.Random(77)
    data = u.gen_pages(rng, 40)[: 40 * u.PAGE - 100]  # 163,740 bytes
    sizes = [65536, 1, 4095, 30000, 64108]
    assert sum(sizes) == len(data)
    p = list(_pieces(data, sizes))
    sid = u.STREAM_IDENTIFIER
    comp = lambda b: u.compressed_chunk(b, _graw)  # noqa: E731
    unc = u.uncompressed_chunk
    out = []
    out.append(("padding", data, sid + u.chunk(0xFE, b"") + comp(p[0])
                + u.chunk(0xFE, bytes(1000)) + comp(p[1]) + unc(p[2])
                + u.chunk(0xFE, bytes(7)) + comp(p[3]) + comp(p[4])))
    out.append(("skippable", data, sid + u.chunk(0x80, b"skip me") + comp(p[0])
                + u.chunk(0xFD, rng.randbytes(70000)) + unc(p[1]) + u.chunk(0xC3, b"")
                + comp(p[2]) + comp(p[3]) + u.chunk(0x9A, b"x" * 40) + unc(p[4])))
    out.append(("uncompressed", data, sid + b"".join(unc(x) for x in p)))
    out.append(("repeated-identifier", data, sid + comp(p[0]) + sid + comp(p[1]) + unc(p[2])
                + sid + sid + comp(p[3]) + comp(p[4])))
    out.append(("empty-chunks", data, sid + unc(b"") + comp(p[0]) + comp(b"") + comp(p[1])
                + unc(p[2]) + comp(p[3]) + unc(b"") + comp(p[4])))
    small = [data[i:i + 1000] for i in range(0, len(data), 1000)]
    out.append(("many-small-chunks", data,
                sid + b"".join(comp(x) if i % 3 else unc(x) for i, x in enumerate(small))))
    out.append(("full-64k-uncompressed", data[:65536], sid + unc(data[:65536])))
    out.append(("padding-before-trailer", data, sid + comp(p[0]) + comp(p[1]) + comp(p[2])
                + comp(p[3]) + comp(p[4]) + u.chunk(0xFE, bytes(100))))
    out.append(("skippable-before-trailer", data, sid + unc(p[0]) + comp(p[1]) + comp(p[2])
                + comp(p[3]) + unc(p[4]) + u.chunk(0x81, b"tail")))
    return out


VALID = _valid_streams()


@pytest.mark.parametrize("name,data,stream", VALID, ids=[v[0] for v in VALID])
def test_handmade_valid_streams(tmp_path, name, data, stream):
    # our own generator must agree with the reference decoders first
    assert bytes(cramjam.snappy.decompress(stream)) == data
    assert u.GoogleSnappy().decode_framed(stream) == data

    first = u.gen_pages(random.Random(5), 4)  # a plain record before it
    recs = [(0, first), (0x100000, data)]
    image = u.avml_record(0, len(first), bytes(cramjam.snappy.compress(first))) \
        + u.avml_record(0x100000, len(data), stream)
    src = tmp_path / f"{name}.avml"
    src.write_bytes(image)

    lime = u.convert_ok(src, tmp_path / "out.lime", "lime_compressed", "lime")
    assert lime == b"".join(u.lime_record(s, d) for s, d in recs)
    raw = u.convert_ok(src, tmp_path / "out.raw", "lime_compressed", "raw")
    assert raw == u.raw_from_records(recs)


# --------------------------------------------------------------------------
# hand-made broken images: exit 1, message with file and offset, no output
# --------------------------------------------------------------------------

def _bad_images():
    """(name, image bytes, regex the message must match, min offset)."""
    rng = random.Random(4242)
    first = u.gen_pages(rng, 8)
    data = u.gen_pages(rng, 40)
    good1 = u.avml_record(0, len(first), bytes(cramjam.snappy.compress(first)))
    base = len(good1)  # file offset of the second (broken) record
    start = 0x100000
    sid = u.STREAM_IDENTIFIER
    p0, p1, p2 = data[:65536], data[65536:131072], data[131072:]
    comp = lambda b, **kw: u.compressed_chunk(b, _graw, **kw)  # noqa: E731
    good_stream = sid + comp(p0) + u.uncompressed_chunk(p1) + comp(p2)
    rec = lambda s, **kw: good1 + u.avml_record(start, len(data), s, **kw)  # noqa: E731
    out = []

    for t in (0x02, 0x40, 0x7F):
        out.append((f"reserved-{t:#04x}", rec(sid + comp(p0) + u.chunk(t, b"abcd") + u.uncompressed_chunk(p1)
                                                + comp(p2)), r"reserved|unskippable|chunk type", base))

    bad_crc = sid + comp(p0, crc=u.masked_crc(p0) ^ 0x00010000) + u.uncompressed_chunk(p1) + comp(p2)
    out.append(("flipped-crc-compressed", rec(bad_crc), r"crc|checksum", base))
    bad_crc = sid + comp(p0) + u.uncompressed_chunk(p1, crc=u.masked_crc(p1) ^ 1) + comp(p2)
    out.append(("flipped-crc-uncompressed", rec(bad_crc), r"crc|checksum", base))

    # flip one byte inside the compressed block of the first data chunk
    s = bytearray(good_stream)
    (ctype, body, pos) = list(u.iter_chunks(bytes(s)))[1]
    assert ctype == u.CHUNK_COMPRESSED
    s[pos + 4 + 4 + len(body) // 2] ^= 0x20
    out.append(("flipped-compressed-byte", rec(bytes(s)), r"corrupt|crc|checksum|invalid", base))
    # and one in the varint length preamble
    s = bytearray(good_stream)
    s[pos + 4 + 4] ^= 0x01
    out.append(("flipped-length-preamble", rec(bytes(s)), r"corrupt|crc|checksum|invalid|length", base))

    out.append(("trailer-too-big", rec(good_stream, trailer=len(good_stream) + 1), r"trailer", base))
    out.append(("trailer-too-small", rec(good_stream, trailer=len(good_stream) - 1), r"trailer", base))
    out.append(("trailer-zero", rec(good_stream, trailer=0), r"trailer", base))

    full = rec(good_stream)
    for name, cut in (("truncated-mid-header", base + 20),
                      ("truncated-mid-chunk-header", base + 32 + 10 + 2),
                      ("truncated-mid-chunk", base + 32 + len(good_stream) // 2),
                      ("truncated-before-trailer", len(full) - 8),
                      ("truncated-mid-trailer", len(full) - 3)):
        out.append((name, full[:cut], r"truncat|ends|end of file|short|eof|incomplete|missing", base))

    out.append(("stream-too-short", good1 + u.avml_record(start, len(data) + 4096, good_stream),
                r"short|fewer|less|ends|decod|size|length|bytes", base))
    out.append(("stream-too-long", good1 + u.avml_record(start, len(data) - 4096, good_stream),
                r"long|more|exceed|beyond|decod|size|length|bytes", base))
    out.append(("missing-identifier", rec(comp(p0) + u.uncompressed_chunk(p1) + comp(p2)),
                r"identifier|header|sNaPpY|stream", base))
    out.append(("bad-identifier", rec(u.chunk(0xFF, b"sNaPpX") + comp(p0) + u.uncompressed_chunk(p1)
                                     + comp(p2)), r"identifier|header|sNaPpY|stream", base))
    over = data[:65537]
    out.append(("uncompressed-chunk-over-64k",
                good1 + u.avml_record(start, len(over), sid + u.chunk(
                    u.CHUNK_UNCOMPRESSED, struct.pack("<I", u.masked_crc(over)) + over)),
                r"65536|64|too (long|large|big)|length|size", base))
    return out


BAD = _bad_images()


def _offsets_in(msg: str):
    return [int(m.group(1), 0) for m in re.finditer(r"offset\s+(0x[0-9a-fA-F]+|\d+)", msg)]


@pytest.mark.parametrize("fmt", ["lime", "raw"])
@pytest.mark.parametrize("name,image,pattern,min_offset", BAD, ids=[b[0] for b in BAD])
def test_broken_streams_rejected(tmp_path, name, image, pattern, min_offset, fmt):
    src = tmp_path / f"{name}.avml"
    src.write_bytes(image)
    dst = tmp_path / f"out.{fmt}"
    proc = u.convert(src, dst, "lime_compressed", fmt)
    msg = proc.stderr
    assert proc.returncode == 1, f"exit {proc.returncode}, stderr: {msg!r}"
    assert not dst.exists(), f"destination left behind ({dst.stat().st_size} bytes)"
    assert str(src) in msg, f"file not named as given: {msg!r}"
    assert re.search(pattern, msg, re.IGNORECASE), f"message does not say what is wrong: {msg!r}"
    offsets = _offsets_in(msg)
    assert offsets, f"no offset in message: {msg!r}"
    assert any(min_offset <= o <= len(image) for o in offsets), (
        f"offsets {offsets} not inside the broken record [{min_offset}, {len(image)}]: {msg!r}")
    assert src.read_bytes() == image
