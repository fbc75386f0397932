"""Byte-exact `avml convert` behaviour per AVML's rules, and its safety checks."""

from __future__ import annotations

import os
import random
import re
import stat
from pathlib import Path

import pytest

import interop_util as u


# --------------------------------------------------------------------------
# byte-exact conversions
# --------------------------------------------------------------------------


@pytest.mark.parametrize("which", ["small", "multi"])
def test_raw_to_lime_matches_reference(which, small_images, multi_images):
    imgs = small_images if which == "small" else multi_images
    ref = u.reference_lime_from_raw(imgs.raw)
    assert len(imgs.lime) == len(ref)
    assert imgs.lime == ref


def test_multiblock_layout(multi_images):
    recs = u.parse_image(multi_images.lime)
    # block 0, (block 1 all zero: omitted), block 2 (one non-zero byte), partial block 3
    assert [(r.start, r.end) for r in recs] == [
        (0, u.BLOCK - 1),
        (2 * u.BLOCK, 3 * u.BLOCK - 1),
        (3 * u.BLOCK, len(multi_images.raw) - 1),
    ]
    assert recs[-1].size % u.PAGE != 0  # the partial last block is not page aligned


@pytest.mark.parametrize("which", ["small", "multi"])
def test_raw_to_compressed_records_match_reference(which, small_images, multi_images):
    imgs = small_images if which == "small" else multi_images
    recs = u.parse_image(imgs.avml)
    assert [(r.start, r.size) for r in recs] == [(s, len(c)) for s, c in u.avml_blocks(imgs.raw)]
    # compressed -> lime equals the reference LiME too
    assert u.convert_ok(imgs.avml_path, imgs.avml_path.with_suffix(".c2l"), "lime_compressed",
                        "lime") == u.reference_lime_from_raw(imgs.raw)


def test_default_formats_are_compressed_to_lime(small_images, tmp_path):
    dst = tmp_path / "default.lime"
    proc = u.run_avml("convert", small_images.avml_path, dst)
    assert proc.returncode == 0, proc.stderr
    assert dst.read_bytes() == small_images.lime


@pytest.mark.parametrize("src_fmt", ["lime", "lime_compressed"])
@pytest.mark.parametrize("which", ["small", "multi"])
def test_image_to_raw_roundtrip(which, src_fmt, small_images, multi_images, tmp_path):
    imgs = small_images if which == "small" else multi_images
    src = imgs.lime_path if src_fmt == "lime" else imgs.avml_path
    out = u.convert_ok(src, tmp_path / "back.raw", src_fmt, "raw")
    assert out == u.strip_trailing_zero_blocks(imgs.raw)


def test_trailing_zero_blocks_dropped(tmp_path):
    rng = random.Random(31337)
    body = u.gen_pages(rng, 512)  # 2 MiB
    raw = body + bytes(u.BLOCK - len(body)) + bytes(u.BLOCK) + bytes(12345)
    src = tmp_path / "tz.raw"
    src.write_bytes(raw)
    lime = u.convert_ok(src, tmp_path / "tz.lime", "raw", "lime")
    assert lime == u.lime_record(0, raw[:u.BLOCK])  # one record, zero blocks omitted
    back = u.convert_ok(tmp_path / "tz.lime", tmp_path / "tz.back", "lime", "raw")
    assert back == raw[:u.BLOCK]
    assert back == u.strip_trailing_zero_blocks(raw)
    avml = u.convert_ok(src, tmp_path / "tz.avml", "raw", "lime_compressed")
    assert u.convert_ok(tmp_path / "tz.avml", tmp_path / "tz.back2", "lime_compressed",
                        "raw") == raw[:u.BLOCK]
    assert len(u.parse_image(avml)) == 1


def test_leading_zero_block_and_gaps(tmp_path):
    """image -> raw zero-fills gaps before and between records."""
    rng = random.Random(99)
    b = u.gen_pages(rng, 16)
    recs = [(0x3000, b[:0x2000]), (0x10000, b[0x2000:0x7000]), (0x10000 + 0x5000, b[0x7000:])]
    img = b"".join(u.lime_record(s, d) for s, d in recs)
    src = tmp_path / "gaps.lime"
    src.write_bytes(img)
    assert u.convert_ok(src, tmp_path / "gaps.raw", "lime", "raw") == u.raw_from_records(recs)


def test_all_zero_raw_gives_empty_image(tmp_path):
    src = tmp_path / "zero.raw"
    src.write_bytes(bytes(3 * u.PAGE))
    assert u.convert_ok(src, tmp_path / "zero.lime", "raw", "lime") == b""


def test_lime_to_compressed_and_back_is_identity(small_images, tmp_path):
    c = u.convert_ok(small_images.lime_path, tmp_path / "l2c.avml", "lime", "lime_compressed")
    assert [(r.start, r.end) for r in u.parse_image(c)] == \
        [(r.start, r.end) for r in u.parse_image(small_images.lime)]
    assert u.convert_ok(tmp_path / "l2c.avml", tmp_path / "c2l.lime", "lime_compressed",
                        "lime") == small_images.lime


# --------------------------------------------------------------------------
# refusals
# --------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["raw", "lime", "lime_compressed"])
def test_same_format_refused(fmt, small_images, tmp_path):
    src = {"raw": small_images.raw_path, "lime": small_images.lime_path,
           "lime_compressed": small_images.avml_path}[fmt]
    dst = tmp_path / "same.out"
    proc = u.convert(src, dst, fmt, fmt)
    assert proc.returncode == 1, proc.stderr
    assert "no conversion required" in proc.stderr.lower()
    assert not dst.exists()


@pytest.mark.parametrize("dangling", [False, True], ids=["to-file", "dangling"])
def test_destination_symlink_refused(dangling, small_images, tmp_path):
    target = tmp_path / "target.txt"
    if not dangling:
        target.write_bytes(b"precious\n")
        os.chmod(target, 0o644)
        before = os.stat(target)
    link = tmp_path / "link.lime"
    link.symlink_to(target)
    proc = u.convert(small_images.avml_path, link, "lime_compressed", "lime")
    assert proc.returncode == 1, proc.stderr
    assert "symbolic link" in proc.stderr.lower(), proc.stderr
    assert link.is_symlink() and os.readlink(link) == str(target)
    if dangling:
        assert not target.exists()
    else:
        assert target.read_bytes() == b"precious\n"
        after = os.stat(target)
        assert (after.st_mode, after.st_mtime_ns, after.st_size) == \
            (before.st_mode, before.st_mtime_ns, before.st_size)


@pytest.mark.parametrize("fmt", ["raw", "lime", "lime_compressed"])
def test_output_mode_0600(fmt, small_images, tmp_path):
    src, sfmt = (small_images.raw_path, "raw") if fmt != "raw" else (small_images.lime_path, "lime")
    dst = tmp_path / f"mode.{fmt}"
    old = os.umask(0o000)  # even with a permissive umask
    try:
        u.convert_ok(src, dst, sfmt, fmt)
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(dst).st_mode) == 0o600


def test_existing_destination_mode_becomes_0600(small_images, tmp_path):
    dst = tmp_path / "exists.lime"
    dst.write_bytes(b"old contents that are longer than nothing" * 10)
    os.chmod(dst, 0o644)
    out = u.convert_ok(small_images.avml_path, dst, "lime_compressed", "lime")
    assert out == small_images.lime
    assert stat.S_IMODE(os.stat(dst).st_mode) == 0o600


def _refuse_self(src: Path, dst_spelling: str, sfmt: str, fmt: str):
    before = src.read_bytes()
    st = os.stat(src)
    proc = u.run_avml("convert", "--source-format", sfmt, "--format", fmt, src, dst_spelling)
    assert proc.returncode == 1, f"converting onto the source was allowed: {proc.stderr!r}"
    assert proc.stderr.strip(), "no message"
    assert src.read_bytes() == before
    assert os.stat(src).st_mtime_ns == st.st_mtime_ns


@pytest.mark.parametrize("how", ["same-path", "other-spelling", "hard-link", "symlinked-source"])
@pytest.mark.parametrize("sfmt,fmt", [("lime", "lime_compressed"), ("lime_compressed", "raw"),
                                      ("raw", "lime")])
def test_convert_onto_source_refused(how, sfmt, fmt, small_images, tmp_path):
    data = {"lime": small_images.lime, "lime_compressed": small_images.avml,
            "raw": small_images.raw}[sfmt]
    src = tmp_path / "src.img"
    src.write_bytes(data)
    if how == "same-path":
        dst = str(src)
    elif how == "other-spelling":
        (tmp_path / "sub").mkdir()
        dst = str(tmp_path / "sub" / ".." / "." / "src.img")
    elif how == "hard-link":
        dst = str(tmp_path / "hard.img")
        os.link(src, dst)
    else:  # source given through a symlink, destination is the real file
        ln = tmp_path / "via-link.img"
        ln.symlink_to(src)
        before = src.read_bytes()
        proc = u.run_avml("convert", "--source-format", sfmt, "--format", fmt, ln, src)
        assert proc.returncode == 1, f"converting onto the source was allowed: {proc.stderr!r}"
        assert src.read_bytes() == before
        return
    _refuse_self(src, dst, sfmt, fmt)


# --------------------------------------------------------------------------
# bad LiME input
# --------------------------------------------------------------------------


def _bad_lime_images():
    rng = random.Random(5150)
    a = u.gen_pages(rng, 4)
    b = u.gen_pages(rng, 4)
    good = u.lime_record(0, a)
    base = len(good)
    out = [
        ("bad-magic", good + u.header(0x10000, 0x10000 + len(b) - 1, magic=0x12345678) + b,
         r"magic|format|header", base),
        ("bad-version", good + u.header(0x10000, 0x10000 + len(b) - 1, version=3) + b,
         r"version|format|header", base),
        ("reserved-nonzero", good + u.header(0x10000, 0x10000 + len(b) - 1, reserved=1) + b,
         r"reserved|padding|header", base),
        ("end-before-start", good + u.header(0x10000, 0xFFFF - 1) + b,
         r"end|start|range|header", base),
        ("truncated-data", (good + u.lime_record(0x10000, b))[:-100],
         r"truncat|ends|end of file|short|eof|incomplete", base),
        ("truncated-header", good + u.lime_record(0x10000, b)[:20],
         r"truncat|ends|end of file|short|eof|incomplete|header", base),
        ("overlapping-records", good + u.lime_record(len(a) - u.PAGE, b),
         r"overlap|order|before|backward|range|start", base),
    ]
    return out


BAD_LIME = _bad_lime_images()


@pytest.mark.parametrize("fmt", ["raw", "lime_compressed"])
@pytest.mark.parametrize("name,image,pattern,min_offset", BAD_LIME, ids=[b[0] for b in BAD_LIME])
def test_bad_lime_rejected(name, image, pattern, min_offset, fmt, tmp_path):
    src = tmp_path / f"{name}.lime"
    src.write_bytes(image)
    dst = tmp_path / f"out.{fmt}"
    proc = u.convert(src, dst, "lime", fmt)
    msg = proc.stderr
    assert proc.returncode == 1, f"exit {proc.returncode}, stderr {msg!r}"
    assert not dst.exists()
    assert str(src) in msg, f"file not named as given: {msg!r}"
    assert re.search(pattern, msg, re.IGNORECASE), msg
    offs = [int(m.group(1), 0) for m in re.finditer(r"offset\s+(0x[0-9a-fA-F]+|\d+)", msg)]
    assert any(min_offset <= o <= len(image) for o in offs), msg
