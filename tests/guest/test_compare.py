#!/usr/bin/env python3
"""Unit tests of compare.py on synthetic data (no QEMU needed).

    python3 -m unittest tests/guest/test_compare.py    (or run this file)
"""
import contextlib
import io
import json
import os
import random
import struct
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import compare  # noqa: E402

IOMEM = """\
00000000-00000fff : Reserved
00001000-0009fbff : System RAM
0009fc00-0009ffff : Reserved
000f0000-000fffff : Reserved
  000f0000-000fffff : System ROM
00100000-004fffff : System RAM
  00200000-00234d31 : Kernel code
  00300000-0031afff : Kernel rodata
  00400000-0041ffff : Kernel data
fec00000-fec003ff : IOAPIC 0
"""


class CompareTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.dir = self.tmp.name
        self.iomem = os.path.join(self.dir, "iomem.txt")
        with open(self.iomem, "w") as f:
            f.write(IOMEM)
        self.truth = os.path.join(self.dir, "truth")
        os.mkdir(self.truth)
        rnd = random.Random(1)
        self.ram = {}
        for e in compare.system_ram(compare.parse_iomem(IOMEM)):
            data = rnd.randbytes(e.size)
            self.ram[e.start] = data
            with open(os.path.join(self.truth, compare.truth_name(e.start, e.end)), "wb") as f:
                f.write(data)

    def tearDown(self):
        self.tmp.cleanup()

    def image(self, records, name="x.lime"):
        path = os.path.join(self.dir, name)
        compare.write_lime(path, records)
        return path

    def full_records(self):
        return sorted(self.ram.items())

    def run_cli(self, *args):
        out = io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
            rc = compare.main(["--iomem", self.iomem, "--truth", self.truth, *args])
        return rc, out.getvalue()

    def test_parse_iomem(self):
        ents = compare.parse_iomem(IOMEM)
        ram = compare.system_ram(ents)
        self.assertEqual([(r.start, r.end) for r in ram], [(0x1000, 0x9fbff), (0x100000, 0x4fffff)])
        kern = compare.kernel_ranges(ents)
        self.assertEqual([(k.name, k.start, k.end) for k in kern],
                         [("Kernel code", 0x200000, 0x234d31), ("Kernel rodata", 0x300000, 0x31afff)])

    def test_exact_image_passes(self):
        img = self.image(self.full_records())
        rc, out = self.run_cli("--image", img, "--require-kernel-equal", "--min-coverage", "1", "--min-match", "1")
        self.assertEqual(rc, 0, out)
        self.assertIn("RESULT: PASS", out)
        rep = compare.compare(compare.load_iomem(self.iomem), self.truth, img)
        self.assertEqual(rep.coverage, 1.0)
        self.assertTrue(rep.kernel_equal)

    def test_changed_kernel_code_fails(self):
        recs = self.full_records()
        start, data = recs[1]
        data = bytearray(data)
        data[0x200000 - start + 100] ^= 0x55
        img = self.image([recs[0], (start, bytes(data))])
        rc, out = self.run_cli("--image", img, "--require-kernel-equal")
        self.assertEqual(rc, 1, out)
        self.assertIn("first differences at 0x200064", out)
        rep = compare.compare(compare.load_iomem(self.iomem), self.truth, img)
        self.assertEqual(rep.kernel[0].matching, rep.kernel[0].size - 1)
        self.assertEqual(rep.ram[1].covered - rep.ram[1].matching, 1)
        # without the requirement the same image passes
        rc, _ = self.run_cli("--image", img)
        self.assertEqual(rc, 0)

    def test_changed_other_ram_is_reported_not_fatal(self):
        recs = self.full_records()
        start, data = recs[1]
        data = bytearray(data)
        for off in range(0x420000 - start, 0x430000 - start):
            data[off] ^= 0xFF
        img = self.image([recs[0], (start, bytes(data))])
        rc, out = self.run_cli("--image", img, "--require-kernel-equal", "--min-coverage", "1")
        self.assertEqual(rc, 0, out)
        rep = compare.compare(compare.load_iomem(self.iomem), self.truth, img)
        self.assertEqual(rep.ram[1].covered - rep.ram[1].matching, 0x10000)
        self.assertEqual(rep.ram[1].pages_covered - rep.ram[1].pages_identical, 16)
        rc, out = self.run_cli("--image", img, "--min-match", "0.99")
        self.assertEqual(rc, 1, out)

    def test_partial_coverage(self):
        recs = self.full_records()
        start, data = recs[1]
        # leave out part of Kernel rodata, split into unaligned records
        a = data[: 0x310000 - start]
        b = data[0x310123 - start:]
        img = self.image([recs[0], (start, a), (0x310123, b)])
        rep = compare.compare(compare.load_iomem(self.iomem), self.truth, img)
        self.assertEqual(rep.ram[1].covered, len(a) + len(b))
        self.assertEqual(rep.ram[1].matching, len(a) + len(b))
        self.assertTrue(rep.kernel[0].equal)
        self.assertFalse(rep.kernel[1].equal)
        self.assertEqual(rep.kernel[1].covered, rep.kernel[1].size - 0x123)
        rc, out = self.run_cli("--image", img, "--require-kernel-equal")
        self.assertEqual(rc, 1, out)
        rc, out = self.run_cli("--image", img, "--min-coverage", "0.999")
        self.assertEqual(rc, 0, out)
        rc, out = self.run_cli("--image", img, "--min-coverage", "0.99999")
        self.assertEqual(rc, 1, out)

    def manifest(self, skipped, captured=((0x1000, 0x9fbff), (0x100000, 0x4fffff)), block=None):
        path = os.path.join(self.dir, "m.json")
        manifest = {"zero_blocks_skipped": skipped,
                    "ranges": {"captured": [{"start": hex(a), "end": hex(b)} for a, b in captured]}}
        if block is not None:
            manifest["record_block_bytes"] = block
        with open(path, "w") as f:
            json.dump(manifest, f)
        return path

    def test_zero_blocks_are_cut_in_the_manifests_block_size(self):
        # The same image as below, with the 1.25 MiB blocks said by the manifest (as a
        # compressed capture says its 1 MiB) instead of set in the module.
        recs = self.full_records()
        start, data = recs[1]
        img = self.image([recs[0], (start, data[: 0x380000 - start])])
        rc, out = self.run_cli("--image", img, "--zero-blocks", self.manifest(2, block=0x140000),
                               "--require-kernel-equal", "--min-coverage", "0.999")
        self.assertEqual(rc, 0, out)
        self.assertIn("PASS: 2 block(s) missing, the manifest skipped 2", out)
        # With AVML's 16 MiB (no record_block_bytes), the whole range is one block, and it is not missing.
        rc, out = self.run_cli("--image", img, "--zero-blocks", self.manifest(2), "--min-coverage", "0.999")
        self.assertEqual(rc, 1, out)
        rc, out = self.run_cli("--image", img, "--zero-blocks", self.manifest(2, block=0), "--min-coverage", "0.999")
        self.assertEqual(rc, 2, out)  # a bad record_block_bytes is an input error

    def test_zero_blocks_are_cut_from_the_captured_ranges_and_counted(self):
        # Blocks of 1.25 MiB from 0x100000: 0x100000, 0x240000, 0x380000 and a partial
        # last one at 0x4c0000. A grid of absolute multiples (0x3c0000) or one that
        # ignored the partial block would count 1 missing block, not 2.
        saved, compare.BLOCK = compare.BLOCK, 0x140000
        self.addCleanup(setattr, compare, "BLOCK", saved)
        recs = self.full_records()
        start, data = recs[1]
        img = self.image([recs[0], (start, data[: 0x380000 - start])])
        rc, out = self.run_cli("--image", img, "--zero-blocks", self.manifest(2),
                               "--require-kernel-equal", "--min-coverage", "0.999")
        self.assertEqual(rc, 0, out)
        self.assertIn("PASS: 2 block(s) missing, the manifest skipped 2", out)
        rep = compare.compare(compare.load_iomem(self.iomem), self.truth, img,
                              captured=[(0x1000, 0x9fbff), (0x100000, 0x4fffff)])
        self.assertEqual((rep.zero_blocks, rep.ram[1].zero_block_bytes), (2, 0x180000))
        rc, out = self.run_cli("--image", img, "--zero-blocks", self.manifest(1), "--min-coverage", "0.999")
        self.assertEqual(rc, 1, out)
        self.assertIn("FAIL: 2 block(s) missing, the manifest skipped 1", out)
        rc, out = self.run_cli("--image", img, "--min-coverage", "0.999")
        self.assertEqual(rc, 1, out)
        # Blocks follow the captured ranges, not iomem's: cut from 0x140000, the
        # same gap holds one block (0x3c0000) and part of another.
        rc, out = self.run_cli("--image", img, "--zero-blocks",
                               self.manifest(2, [(0x1000, 0x9fbff), (0x140000, 0x4fffff)]))
        self.assertEqual(rc, 1, out)
        # Part of a block missing is not a skipped block: coverage fails.
        img = self.image([recs[0], (start, data[: 0x440000 - start])], "part.lime")
        rc, out = self.run_cli("--image", img, "--zero-blocks", self.manifest(1), "--min-coverage", "0.999")
        self.assertEqual(rc, 1, out)
        self.assertIn("PASS: 1 block(s) missing", out)
        self.assertIn("FAIL: coverage with the skipped blocks", out)

    def test_a_manifest_without_the_counts_is_bad_input(self):
        img = self.image(self.full_records())
        for content in ({"format": "lime"}, [], {"zero_blocks_skipped": True, "ranges": {"captured": []}},
                        {"zero_blocks_skipped": 0, "ranges": {"captured": [{"start": "x"}]}}):
            path = os.path.join(self.dir, "bad.json")
            with open(path, "w") as f:
                json.dump(content, f)
            rc, out = self.run_cli("--image", img, "--zero-blocks", path)
            self.assertEqual(rc, 2, (content, out))

    def test_overlap_and_outside_ram(self):
        recs = self.full_records()
        start, data = recs[1]
        img = self.image(recs + [(start + 0x1000, data[0x1000:0x2000])])
        rc, out = self.run_cli("--image", img)
        self.assertEqual(rc, 1, out)
        self.assertIn("overlaps", out)
        img = self.image(recs + [(0xA0000, b"\0" * 0x1000)], "out.lime")
        rc, out = self.run_cli("--image", img)
        self.assertEqual(rc, 1, out)
        rc, out = self.run_cli("--image", img, "--allow-outside-ram")
        self.assertEqual(rc, 0, out)

    def test_malformed_images(self):
        good = self.image(self.full_records())
        with open(good, "rb") as f:
            blob = f.read()
        cases = {
            "magic": b"XXXX" + blob[4:],
            "version": blob[:4] + struct.pack("<I", 2) + blob[8:],
            "truncated": blob[:-1],
            "short-header": blob[:20],
        }
        for name, content in cases.items():
            path = os.path.join(self.dir, name + ".lime")
            with open(path, "wb") as f:
                f.write(content)
            rc, out = self.run_cli("--image", path)
            self.assertEqual(rc, 2, name)
            self.assertIn("RESULT: ERROR", out)

    def test_missing_truth(self):
        os.remove(os.path.join(self.truth, compare.truth_name(0x1000, 0x9fbff)))
        rc, _ = self.run_cli("--image", self.image(self.full_records()))
        self.assertEqual(rc, 2)

    def test_json_report(self):
        img = self.image(self.full_records())
        js = os.path.join(self.dir, "r.json")
        rc, _ = self.run_cli("--image", img, "--require-kernel-equal", "--json", js)
        self.assertEqual(rc, 0)
        with open(js) as f:
            d = json.load(f)
        self.assertTrue(d["passed"])
        self.assertEqual(d["coverage"], 1.0)
        self.assertEqual([k["name"] for k in d["kernel"]], ["Kernel code", "Kernel rodata"])
        self.assertTrue(all(k["equal"] for k in d["kernel"]))


if __name__ == "__main__":
    unittest.main()
