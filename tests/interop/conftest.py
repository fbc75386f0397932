"""Fixtures shared by the interop tests: deterministic data sets and the
images avml makes of them (built once per session).

Run:  python3 -m pytest tests/interop            (from /work/main)
      AVML_BIN=/path/to/avml python3 -m pytest tests/interop
Needs: python-snappy, cramjam, volatility3, pytest; libsnappy.so.1.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import interop_util as u  # noqa: E402


@pytest.fixture(scope="session", autouse=True)
def _binary_present():
    u.wait_for_binary()


@pytest.fixture(scope="session")
def small_raw() -> bytes:
    """~3.3 MiB of mixed pages, not a multiple of the page size."""
    return u.gen_memory(seed=0x5EED, size=3 * 1024 * 1024 + 300 * 1024 + 77)


@pytest.fixture(scope="session")
def multi_raw() -> bytes:
    """Crosses four 16 MiB blocks, one entirely zero, the last partial."""
    return u.gen_multiblock(seed=0xB10C)


class Images:
    """raw file plus the lime / lime_compressed images avml makes from it."""

    def __init__(self, d: Path, raw: bytes):
        self.raw = raw
        self.raw_path = d / "mem.raw"
        self.raw_path.write_bytes(raw)
        self.lime_path = d / "mem.lime"
        self.avml_path = d / "mem.avml"
        self.lime = u.convert_ok(self.raw_path, self.lime_path, "raw", "lime")
        self.avml = u.convert_ok(self.raw_path, self.avml_path, "raw", "lime_compressed")


@pytest.fixture(scope="session")
def small_images(tmp_path_factory, small_raw) -> Images:
    return Images(tmp_path_factory.mktemp("small"), small_raw)


@pytest.fixture(scope="session")
def multi_images(tmp_path_factory, multi_raw) -> Images:
    return Images(tmp_path_factory.mktemp("multi"), multi_raw)


@pytest.fixture(scope="session")
def google() -> u.GoogleSnappy:
    return u.GoogleSnappy()
