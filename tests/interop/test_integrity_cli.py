"""Manifests, `avml verify`, `avml info` and progress, through the command line.

The manifest's hash is checked with Python's hashlib, independently of the
Swift code; progress is looked for under a real pseudo-terminal (`script`).
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import signal
import time
import stat
import subprocess
from pathlib import Path

import pytest

import interop_util as u


@pytest.fixture()
def acquired(tmp_path, small_raw):
    raw = tmp_path / "memory.raw"
    raw.write_bytes(small_raw)
    image = tmp_path / "image.lime"
    result = u.run_avml("acquire", "--source", raw, image)
    assert result.returncode == 0, result.stderr
    return raw, image, result


def test_acquire_writes_a_manifest_whose_hash_matches_the_image(acquired):
    raw, image, result = acquired
    manifest_path = Path(str(image) + ".json")
    manifest = json.loads(manifest_path.read_text())
    data = image.read_bytes()
    assert manifest["sha256"] == hashlib.sha256(data).hexdigest()
    assert manifest["size"] == len(data)
    assert manifest["exit_status"] == 0
    assert manifest["format"] == "lime"
    assert manifest["source"] == str(raw)
    assert manifest["tool"]["name"] == "avml"
    assert set(manifest["host"]) >= {"hostname", "kernel_release", "machine", "boot_id"}
    assert manifest["ranges"]["planned"] == [{"start": "0x0", "end": hex(len(raw.read_bytes()) - 1)}]
    assert manifest["started_at"] <= manifest["finished_at"]
    assert manifest["started_at"].endswith("Z")
    assert 1 << 20 < manifest["peak_resident_bytes"] < 1 << 30
    # The summary's time and rate are the reading's; the table's time is its own (none from a raw file).
    assert 0 < manifest["reading_seconds"] < 60
    shown = re.search(r"avml: captured .* in ([0-9.]+) s \(", result.stderr)
    assert shown and abs(float(shown.group(1)) - manifest["reading_seconds"]) <= 0.051, result.stderr
    assert stat.S_IMODE(manifest_path.stat().st_mode) == 0o600
    # The summary line names the hash too.
    assert manifest["sha256"] in result.stderr


def test_the_manifest_summary_and_info_say_how_much_memory_changed_while_it_was_read(acquired):
    # A raw file does not change while it is read: every sampled page is the same on re-read.
    raw, image, result = acquired
    consistency = json.loads(Path(str(image) + ".json").read_text())["consistency"]
    pages = len(raw.read_bytes()) // 4096
    assert consistency["sample_stride_pages"] == 64
    other = {r["name"]: r for r in consistency["regions"]}["other memory"]
    assert other == {"name": "other memory", "pages_sampled": (pages + 63) // 64, "pages_changed": 0, "pages_unreadable": 0}
    timing = consistency["ranges"][0]
    assert (timing["start"], timing["end"]) == ("0x0", hex(len(raw.read_bytes()) - 1))
    assert 0 <= timing["first_read"] <= timing["last_read"] <= consistency["reread_at"]
    assert "avml: 0.0% of sampled pages changed while memory was read" in result.stderr
    info = u.run_avml("info", image)
    assert "consistency: 0.0% of sampled pages changed while memory was read" in info.stdout, info.stdout
    assert "reading:  " in info.stdout, info.stdout
    assert json.loads(u.run_avml("info", "--json", image).stdout)["consistency"] == consistency


def test_manifest_option_moves_it(tmp_path, small_raw):
    raw = tmp_path / "memory.raw"
    raw.write_bytes(small_raw)
    elsewhere = tmp_path / "case-42.json"
    result = u.run_avml("acquire", "--compress", "--source", raw, "--manifest", elsewhere, tmp_path / "image.avml")
    assert result.returncode == 0, result.stderr
    assert json.loads(elsewhere.read_text())["format"] == "lime_compressed"
    assert not (tmp_path / "image.avml.json").exists()


def test_a_failed_acquisition_leaves_a_manifest_saying_so(tmp_path):
    result = u.run_avml("acquire", "--source", tmp_path / "missing.raw", tmp_path / "image.lime")
    assert result.returncode == 1
    manifest = json.loads((tmp_path / "image.lime.json").read_text())
    assert manifest["exit_status"] == 1
    assert "missing.raw" in manifest["error"]
    assert manifest.get("sha256") is None and manifest.get("size") is None
    assert not (tmp_path / "image.lime").exists()


def test_verify_passes_an_intact_image_and_fails_a_changed_one(acquired):
    _, image, _ = acquired
    ok = u.run_avml("verify", image)
    assert ok.returncode == 0, ok.stderr
    assert "match" in ok.stdout
    data = bytearray(image.read_bytes())
    data[100_000] ^= 0x01  # inside the first record's memory: only the hash can tell
    image.write_bytes(bytes(data))
    bad = u.run_avml("verify", image)
    assert bad.returncode == 1
    assert "SHA-256" in bad.stderr and str(image) in bad.stderr


def test_verify_names_the_bad_compressed_record(tmp_path, multi_images):
    data = bytearray(multi_images.avml_path.read_bytes())
    records = u.parse_image(bytes(data))
    second = records[1]
    data[second.offset + 32 + 10 + 8 + 20] ^= 0x40
    path = tmp_path / "damaged.avml"
    path.write_bytes(bytes(data))
    result = u.run_avml("verify", path)
    assert result.returncode == 1
    assert hex(second.start) in result.stderr
    assert "CRC" in result.stderr or "corrupt compressed data" in result.stderr


def test_verify_warns_about_records_volatility_cannot_open(tmp_path):
    raw = tmp_path / "noise.raw"
    raw.write_bytes(random.Random(7).randbytes(1 << 20))
    image = tmp_path / "noise.avml"
    assert u.run_avml("convert", "--source-format", "raw", "--format", "lime_compressed", raw, image).returncode == 0
    result = u.run_avml("verify", image)
    assert result.returncode == 0, result.stderr
    assert "Volatility" in result.stderr and "avml convert" in result.stderr


def test_info_reports_ranges_gaps_and_ratio(tmp_path, small_images):
    result = u.run_avml("info", "--json", small_images.avml_path)
    assert result.returncode == 0, result.stderr
    info = json.loads(result.stdout)
    records = u.parse_image(small_images.avml)
    assert info["format"] == "lime_compressed"
    assert len(info["records"]) == len(records)
    assert info["memory_bytes"] == sum(r.end - r.start + 1 for r in records)
    assert info["file_size"] == len(small_images.avml)
    assert abs(info["ratio"] - len(small_images.avml) / info["memory_bytes"]) < 1e-9
    text = u.run_avml("info", small_images.lime_path)
    assert text.returncode == 0 and "format:   lime" in text.stdout


def _under_terminal(*args: object) -> str:
    """Runs avml under a pseudo-terminal and returns what it printed there."""
    command = " ".join(f"'{a}'" for a in [u.AVML_BIN, *args])
    result = subprocess.run(["script", "-qefc", command, "/dev/null"], capture_output=True, timeout=300)
    assert result.returncode == 0, result.stdout
    return result.stdout.decode(errors="replace")


@pytest.fixture()
def big_raw(tmp_path):
    # Large enough that a debug build spends well over 0.2 s, so progress draws.
    path = tmp_path / "big.raw"
    path.write_bytes(u.gen_memory(seed=99, size=128 << 20))
    return path


def test_progress_shows_on_a_terminal_only(tmp_path, big_raw):
    shown = _under_terminal("convert", "--source-format", "raw", "--format", "lime_compressed", big_raw, tmp_path / "a.avml")
    assert "%" in shown and "ETA" in shown and "MiB/s" in shown
    quiet = _under_terminal("convert", "--quiet", "--source-format", "raw", "--format", "lime_compressed", big_raw, tmp_path / "b.avml")
    assert "%" not in quiet and "ETA" not in quiet
    piped = u.run_avml("convert", "--source-format", "raw", "--format", "lime_compressed", big_raw, tmp_path / "c.avml")
    assert piped.returncode == 0 and piped.stderr == ""


def test_an_interrupted_acquisition_removes_the_image_and_says_why(tmp_path, big_raw):
    image = tmp_path / "image.avml"
    process = subprocess.Popen([u.AVML_BIN, "acquire", "--compress", "--threads", "1", "--source", str(big_raw), str(image)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 30
    while not image.exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 1, stderr
    assert "interrupted" in stderr
    assert not image.exists()
    manifest = json.loads(Path(str(image) + ".json").read_text())
    assert manifest["exit_status"] == 1 and "interrupted" in manifest["error"]


def test_the_legacy_command_line_acquires(tmp_path, small_raw):
    # AVML's original form: `avml [--compress] FILENAME`, no subcommand.
    raw = tmp_path / "memory.raw"
    raw.write_bytes(small_raw)
    result = u.run_avml("--compress", "--source", raw, tmp_path / "legacy.avml")
    assert result.returncode == 0, result.stderr
    assert u.parse_image((tmp_path / "legacy.avml").read_bytes())[0].magic == 0x4C4D5641
