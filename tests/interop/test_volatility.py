"""Volatility 3 (PyPI volatility3) reads avml's LiME and AVML images.

Uses vol3's own layer classes: a FileLayer over the image (file:// URL)
and a LimeLayer / AVMLLayer stacked on it, then compares layer.read() with
the source raw data for every record, random sub-ranges, reads across
adjacent records, and checks that gaps are unmapped (vol3 raises
InvalidAddressException without pad=True, and returns zeros with it).

vol3's AVMLLayer decompresses with Google's libsnappy through ctypes
(libsnappy.so.1); test_vol3_finds_libsnappy checks it loaded.

Known vol3 limitation (volatility3 2.28.2, framework/layers/avml.py,
AVMLLayer._read_snappy_frames): it reads only `end - start` bytes of a
record's framed stream and loops forever (`while decompressed_len <=
expected_length` without advancing) when the stream is longer than that,
which happens for incompressible records (Snappy framing adds 8 bytes per
64 KiB chunk plus the 10-byte identifier).  Real AVML output has the same
property, so this is vol3's bug; test_vol3_incompressible_record_* checks
the mechanism in a subprocess with a timeout instead of hanging the suite.
"""

from __future__ import annotations

import random
import subprocess
from pathlib import Path

import pytest

from volatility3.framework import contexts, exceptions
from volatility3.framework.layers import avml as vol_avml
from volatility3.framework.layers import lime as vol_lime
from volatility3.framework.layers import physical

import interop_util as u


def open_layer(path: Path, layer_cls):
    ctx = contexts.Context()
    ctx.config["base.location"] = Path(path).resolve().as_uri()
    ctx.add_layer(physical.FileLayer(ctx, "base", "base"))
    ctx.config["memory.base_layer"] = "base"
    layer = layer_cls(ctx, "memory", "memory")
    ctx.add_layer(layer)
    return layer


def test_vol3_finds_libsnappy():
    assert vol_avml.HAS_SNAPPY, "vol3 could not load libsnappy.so.1 via ctypes"
    data = b"volatility " * 1000
    assert vol_avml.uncompress(u.GoogleSnappy().compress(data)) == data


def _records_from_raw(raw: bytes):
    return list(u.avml_blocks(raw))


def _check_layer(layer, raw: bytes, records, seed: int) -> None:
    # every record, whole
    for start, data in records:
        assert layer.is_valid(start, len(data))
        got = layer.read(start, len(data))
        assert got == data, f"record {start:#x}+{len(data):#x} differs"
    assert layer.minimum_address == records[0][0]
    last_start, last = records[-1]
    assert layer.maximum_address == last_start + len(last) - 1

    rng = random.Random(seed)
    # random sub-ranges inside records
    for _ in range(60):
        start, data = rng.choice(records)
        a = rng.randrange(len(data))
        n = rng.randint(1, min(len(data) - a, 300_000))
        assert layer.read(start + a, n) == data[a:a + n], f"sub-range {start + a:#x}+{n:#x}"
    # reads across adjacent records
    for (s1, d1), (s2, d2) in zip(records, records[1:]):
        if s1 + len(d1) == s2:
            for n in (1, 4096, 70_000):
                a = s2 - min(n, len(d1))
                b = s2 + min(n, len(d2))
                assert layer.read(a, b - a) == raw[a:b], f"across {s2:#x}"
    # gaps between records are not mapped
    for (s1, d1), (s2, _) in zip(records, records[1:]):
        gap = s1 + len(d1)
        if gap < s2:
            assert not layer.is_valid(gap, 1)
            with pytest.raises(exceptions.InvalidAddressException):
                layer.read(gap, 16)
            with pytest.raises(exceptions.InvalidAddressException):
                layer.read(gap - 8, 16)
            padded = layer.read(gap - 8, 24, pad=True)
            assert padded == raw[gap - 8:gap] + bytes(16)


def _assert_vol3_readable_avml(image: bytes) -> None:
    """Precondition of vol3's AVML reader (see module docstring)."""
    for rec in u.parse_image(image):
        assert len(rec.payload) <= rec.end - rec.start, (
            f"record {rec.start:#x}: framed stream {len(rec.payload)} bytes would hang vol3")


@pytest.mark.parametrize("which", ["small", "multi"])
def test_vol3_reads_lime(which, small_images, multi_images):
    imgs = small_images if which == "small" else multi_images
    layer = open_layer(imgs.lime_path, vol_lime.LimeLayer)
    _check_layer(layer, imgs.raw, _records_from_raw(imgs.raw), seed=1)


@pytest.mark.parametrize("which", ["small", "multi"])
def test_vol3_reads_avml(which, small_images, multi_images):
    imgs = small_images if which == "small" else multi_images
    _assert_vol3_readable_avml(imgs.avml)
    layer = open_layer(imgs.avml_path, vol_avml.AVMLLayer)
    _check_layer(layer, imgs.raw, _records_from_raw(imgs.raw), seed=2)


def test_vol3_reads_lime_converted_from_avml(multi_images, tmp_path):
    dst = tmp_path / "back.lime"
    u.convert_ok(multi_images.avml_path, dst, "lime_compressed", "lime")
    layer = open_layer(dst, vol_lime.LimeLayer)
    _check_layer(layer, multi_images.raw, _records_from_raw(multi_images.raw), seed=3)


def test_vol3_reads_avml_converted_from_lime(multi_images, tmp_path):
    dst = tmp_path / "again.avml"
    img = u.convert_ok(multi_images.lime_path, dst, "lime", "lime_compressed")
    _assert_vol3_readable_avml(img)
    layer = open_layer(dst, vol_avml.AVMLLayer)
    _check_layer(layer, multi_images.raw, _records_from_raw(multi_images.raw), seed=4)


def test_vol3_stackers_detect_formats(small_images):
    """vol3's automagic stackers recognise both formats."""
    for path, stacker, cls in ((small_images.lime_path, vol_lime.LimeStacker, vol_lime.LimeLayer),
                               (small_images.avml_path, vol_avml.AVMLStacker, vol_avml.AVMLLayer)):
        ctx = contexts.Context()
        ctx.config["base.location"] = Path(path).resolve().as_uri()
        ctx.add_layer(physical.FileLayer(ctx, "base", "base"))
        layer = stacker.stack(ctx, "base")
        assert isinstance(layer, cls)
        ctx.add_layer(layer)
        start, data = _records_from_raw(small_images.raw)[0]
        assert layer.read(start, len(data)) == data


def test_vol3_incompressible_record_is_valid_and_vol3_limitation(tmp_path, google):
    """An incompressible record: our image is valid (every decoder agrees),
    its stream is longer than the record - exactly vol3's hang condition -
    and vol3 does not return (or, if vol3 is ever fixed, reads it right)."""
    raw = random.Random(2024).randbytes(1024 * 1024)
    src = tmp_path / "rand.raw"
    src.write_bytes(raw)
    dst = tmp_path / "rand.avml"
    img = u.convert_ok(src, dst, "raw", "lime_compressed")
    (rec,) = u.parse_image(img)
    assert google.decode_framed(rec.payload, check_crc=False) == raw
    assert len(rec.payload) > rec.end - rec.start  # vol3's hang condition
    try:
        proc = u.vol3_read(dst, src, timeout=3)
    except subprocess.TimeoutExpired:
        return  # the upstream vol3 hang described in the module docstring
    assert proc.returncode == 0 and "OK" in proc.stdout, proc.stderr


def test_vol3_boundary_stream_of_end_minus_start_bytes(tmp_path):
    """Control for the test above: vol3 reads a record whose framed stream
    is exactly end - start bytes (the most its reader looks at), made so by
    a padding chunk after the identifier; avml must read it too."""
    data = u.gen_pages(random.Random(8), 64)  # 256 KiB, compressible
    g = u.GoogleSnappy()
    body = b"".join(u.compressed_chunk(data[i:i + 65536], g.compress)
                    for i in range(0, len(data), 65536))
    want = len(data) - 1  # end - start
    pad = want - len(u.STREAM_IDENTIFIER) - len(body) - 4
    assert pad >= 0
    stream = u.STREAM_IDENTIFIER + u.chunk(0xFE, bytes(pad)) + body
    assert len(stream) == want
    path = tmp_path / "boundary.avml"
    path.write_bytes(u.avml_record(0x2000, len(data), stream))
    layer = open_layer(path, vol_avml.AVMLLayer)
    assert layer.read(0x2000, len(data)) == data
    out = u.convert_ok(path, tmp_path / "boundary.lime", "lime_compressed", "lime")
    assert out == u.lime_record(0x2000, data)
