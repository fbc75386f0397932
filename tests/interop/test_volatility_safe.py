"""Compressed images that Volatility 3 can always open (issue: records whose
framed stream outgrows their memory make vol3's AVML layer loop forever).

avml joins a 16 MiB block that does not compress with a neighbour of the same
contiguous range, so every record's stream is shorter than its memory. Each
image here is checked by an independent walk (interop_util.parse_image, which
knows nothing of avml's code), decoded with Google's libsnappy, and read back
through vol3's AVMLLayer in a subprocess with a time limit (so a hang fails
the test instead of stalling the suite).
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import interop_util as u

BLOCK = u.BLOCK
MIB = 1 << 20

def vol3_reads(image: Path, raw: Path) -> None:
    proc = u.vol3_read(image, raw)
    assert proc.returncode == 0 and "OK" in proc.stdout, proc.stderr[-2000:]


def assert_volatility_safe(image: bytes) -> list:
    records = u.parse_image(image)
    for rec in records:
        assert rec.magic == u.AVML_MAGIC
        assert len(rec.payload) < rec.end - rec.start, (
            f"record {rec.start:#x}-{rec.end:#x}: stream {len(rec.payload)} bytes for {rec.size} of memory")
    return records


def decoded(records, google) -> bytes:
    out = bytearray()
    for rec in records:
        assert rec.start == len(out), "records are contiguous here"
        out += google.decode_framed(rec.payload)
        assert len(out) == rec.end + 1
    return bytes(out)


def mixed_raw(seed: int) -> bytes:
    """A 16 MiB block of noise between compressible blocks, in one range."""
    rng = random.Random(seed)
    return (u.gen_memory(seed, BLOCK) + rng.randbytes(BLOCK) + u.gen_memory(seed + 1, BLOCK)
            + u.gen_memory(seed + 2, 3 * 1024 * 1024))


def test_acquire_from_a_raw_file_with_a_random_block_opens_in_vol3(tmp_path, google):
    raw = mixed_raw(77)
    src = tmp_path / "snapshot.raw"
    src.write_bytes(raw)
    image = tmp_path / "snapshot.avml"
    proc = u.run_avml("acquire", "--compress", "--quiet", "--source", src, image, timeout=300)
    assert proc.returncode == 0, proc.stderr
    records = assert_volatility_safe(image.read_bytes())
    # A compressed capture cuts records every 1 MiB (the manifest says so); the 16 MiB of
    # noise went into joined records, each holding compressible memory as well.
    manifest = json.loads((tmp_path / "snapshot.avml.json").read_text())
    assert manifest["record_block_bytes"] == MIB
    assert all(r.start % MIB == 0 for r in records)
    noisy = [r for r in records if r.start < 2 * BLOCK and r.end >= BLOCK]
    assert noisy and all(r.start < BLOCK or r.end >= 2 * BLOCK for r in noisy)
    assert decoded(records, google) == raw
    vol3_reads(image, src)
    # avml's own reader agrees.
    assert u.convert_ok(image, tmp_path / "back.raw", "lime_compressed", "raw") == raw
    manifest = (tmp_path / "snapshot.avml.json").read_text()
    assert "volatility_unreadable" not in manifest


def avml_style_image(raw: bytes, google) -> bytes:
    """What AVML itself writes: one record per 16 MiB block, built here with
    Google's compressor (not avml's), however badly a block compresses."""
    return b"".join(u.avml_record(start, len(block), u.google_framed_compress(block, google))
                    for start, block in u.avml_blocks(raw))


def test_convert_recuts_an_image_vol3_cannot_open(tmp_path, google):
    raw = mixed_raw(78)
    (tmp_path / "mem.raw").write_bytes(raw)
    bad = tmp_path / "avml-made.avml"
    bad.write_bytes(avml_style_image(raw, google))
    unreadable = [r for r in u.parse_image(bad.read_bytes()) if len(r.payload) > r.end - r.start]
    assert len(unreadable) == 1  # vol3 would hang on this image

    info = u.run_avml("info", bad)
    assert info.returncode == 0 and "--format lime_compressed" in info.stdout, info.stdout
    verify = u.run_avml("verify", bad)
    assert verify.returncode == 0 and "--format lime_compressed" in verify.stderr, verify.stderr

    fixed = tmp_path / "fixed.avml"
    image = u.convert_ok(bad, fixed, "lime_compressed", "lime_compressed")
    records = assert_volatility_safe(image)
    assert decoded(records, google) == raw
    vol3_reads(fixed, tmp_path / "mem.raw")
    # avml's reader and the independent one agree on both images.
    assert u.convert_ok(bad, tmp_path / "a.raw", "lime_compressed", "raw") == raw
    assert u.convert_ok(fixed, tmp_path / "b.raw", "lime_compressed", "raw") == raw

    again = u.convert(fixed, tmp_path / "again.avml", "lime_compressed", "lime_compressed")
    assert again.returncode == 1 and "no conversion required" in again.stderr
    assert not (tmp_path / "again.avml").exists()


def test_a_range_that_does_not_compress_at_all_is_written_and_reported(tmp_path):
    raw = random.Random(79).randbytes(2 * BLOCK)
    src = tmp_path / "noise.raw"
    src.write_bytes(raw)
    image = tmp_path / "noise.avml"
    proc = u.run_avml("acquire", "--compress", "--quiet", "--source", src, image, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "Volatility 3 cannot open" in proc.stderr
    manifest = (tmp_path / "noise.avml.json").read_text()
    assert '"volatility_unreadable"' in manifest and '"0x1ffffff"' in manifest
