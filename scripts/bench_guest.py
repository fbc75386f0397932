#!/usr/bin/env python3
"""Acquisition speed inside a real kernel: ours against LiME, in the QEMU test guest.

  scripts/bench_guest.py [--kernel SERIES ...] [--rounds N] [--cache DIR] [--out DIR] [--keep-images]
                         [--no-sha256-ssse3]

For each kernel series asked for (--kernel 5.10 6.1 6.12, or `all`; default 6.1: the series of
tests/guest/kernels), boots the guest of tests/guest with that Debian kernel (512 MiB, 2 vCPUs,
TCG here) once and times, inside it, four writers of a whole-RAM image to the guest's ext4
data disk:
  1. LiME 1.9.1 (Debian's lime-forensics-dkms) `format=lime digest=sha256`: image + PATH.sha256;
  2. the same module without digest;
  3. `avml acquire ours.lime` (ours: LiME output plus the SHA-256 manifest ours.lime.json);
  4. `avml acquire --compress ours.avml`.
--rounds rounds (default 3), the order rotated by one writer each round.  Before each timed
capture (untimed): the previous image is deleted, `sync`, `echo 3 > drop_caches`.  Timed on the
guest's /proc/uptime: the command alone, and the command plus a `sync` after it.  The targets
are judged on command + sync for all four, because LiME writes through the page cache and
returns with the image partly unwritten, while ours fsyncs before it exits.  LiME is loaded
with `timeout=0` (its default, 1000 ms, silently zero-fills the rest of a range after one slow
page), and the kernel's sha256-ssse3 module (SSSE3/AVX/AVX2/SHA-NI code) is loaded first, as
udev does on a Debian system from its CPU-feature alias, so LiME hashes with the kernel's best
SHA-256 (--no-sha256-ssse3: sha256-generic, plain C).

Checked, so that every writer is measured doing the real work: every capture exits 0 and its
image has the expected size (LiME: every System RAM range + 32-byte headers; ours: the size in
its manifest); LiME wrote a 64-hex-digit PATH.sha256.  The images of the last round are kept
and copied out: LiME's digest equals the SHA-256 of its image, ours equals its manifest
(`avml verify`, run on the host), and the LiME images (LiME's and ours) match QEMU's own dump
of the guest's RAM (tests/guest/compare.py: Kernel code and rodata byte-equal).

Prints Markdown: per-writer medians and min–max, ratios against LiME with digest with the
targets of issue 12 (ours LiME ≤ 0.65×, ours compressed ≤ 0.45×), where our time goes (the
manifest's `timings`: read, zero_check, compress, hash, write, seconds summed over threads),
guest CPU use (the guest's own /proc/stat: under TCG on a busy host it is only a hint), and
the host's load (CPU of other processes than QEMU, per capture and overall).

Ours are timed with their symbol table, which `avml acquire` makes before reading memory; the
manifests' `symbols.seconds` and `reading_seconds` show the two apart.  With more than one
kernel, a last table gives each kernel's medians side by side.

Needs root and Debian 12.  Installs what it needs with apt (under `flock /tmp/apt.lock`):
the guest's packages (tests/guest/setup.sh) and debootstrap.  LiME 1.9.1's source comes from
`apt-get download lime-forensics-dkms` + `dpkg-deb -x` (the package is not installed, so dkms
never tries to build it for the host kernel), and is built for each kernel in a minimal root
of the kernel's own Debian suite (.build-cache/lime-root-SUITE, made once by debootstrap,
about 0.6–1.1 GB), with that suite's linux-headers and compiler.  The static avml comes from
AVML_BIN, or else from `flock /tmp/avml-build.lock scripts/build-static` (several minutes).

A benchmark, not a test: exits 0 when everything ran and checked out, whether or not the
targets were met; 1 when something could not run or an image failed its checks.
Environment: AVML_BIN; AVML_GUEST_MEM (512M), AVML_GUEST_SMP (2), AVML_GUEST_DISK_SIZE (3G),
AVML_GUEST_TIMEOUT (3600) and the other knobs of tests/guest/run.sh.
"""
import argparse
import glob
import os
import subprocess
import sys
import tempfile
import time

import benchlib
from benchlib import ROOT, ForeignLoad, problem, problems, read_first_line
from bench_guest_report import report, report_after, report_setup, report_title
from bench_guest_run import check_kept, check_samples, parse_samples, run_guest
from bench_guest_report import report_kernels
from bench_guest_setup import known_series, prepare


def main():
    benchlib.program = "bench-guest"
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    series = list(known_series())
    parser.add_argument("--kernel", nargs="+", default=["6.1"], choices=series + ["all"], metavar="SERIES",
                        help=f"kernel series to run on, in turn: {', '.join(series)} or all (default 6.1)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of the four writers (default 3)")
    parser.add_argument("--cache", help="the guest cache of tests/guest/setup.sh (one kernel only; "
                        "default .build-cache/guest-SERIES)")
    parser.add_argument("--out", help="the guest run's output, replaced each run (one kernel only; "
                        "default .build-cache/bench-guest-SERIES)")
    parser.add_argument("--keep-images", action="store_true",
                        help="keep the copied-out images and RAM dump (about 2.2 GiB) after the checks")
    parser.add_argument("--no-sha256-ssse3", action="store_true",
                        help="do not load sha256-ssse3 in the guest: LiME then hashes with sha256-generic")
    args = parser.parse_args()
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    kernels = series if "all" in args.kernel else list(dict.fromkeys(args.kernel))
    if len(kernels) > 1 and (args.cache or args.out):
        parser.error("--cache and --out name one kernel's folders: give one --kernel with them")
    commit = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip() or "unknown"
    report_title(commit)
    results = {}
    for kernel in kernels:
        cache = os.path.abspath(args.cache or os.path.join(ROOT, ".build-cache", f"guest-{kernel}"))
        out = os.path.abspath(args.out or os.path.join(ROOT, ".build-cache", f"bench-guest-{kernel}"))
        print(f"## Kernel series {kernel}\n")
        results[kernel] = bench_kernel(kernel, cache, out, args)
    if len(kernels) > 1:
        report_kernels(results, args.rounds)
    if problems:
        print("\nproblems (the numbers above may not measure what they claim):")
        for message in problems:
            print(f"- {message}")
        return 1
    return 0


def bench_kernel(kernel, cache, out, args):
    """One kernel's guest run, reported; returns (kernel release, samples), or None if it could not run."""
    started = time.monotonic()
    os.makedirs(os.path.dirname(out), exist_ok=True)
    logfile = out + ".log"
    open(logfile, "w").close()
    smp = int(os.environ.get("AVML_GUEST_SMP", "2"))
    try:
        prepared = prepare(kernel, cache, logfile, load_ssse3=not args.no_sha256_ssse3)
    except (RuntimeError, OSError, KeyError) as error:
        problem(f"{kernel}: preparation failed: {error}")
        print(f"could not run: {problems[-1]}\n")
        return None
    report_setup(prepared, args.rounds, smp)

    load = ForeignLoad()
    with tempfile.TemporaryDirectory(prefix="avml-bench-guest-") as workdir:
        try:
            watch = run_guest(cache, prepared.avml, prepared.lime_ko, prepared.ssse3, out, args.rounds, workdir,
                              logfile)
        except RuntimeError as error:
            problem(f"{kernel}: the guest run failed: {error}")
            watch = None
    noise = load.summary()
    load_after = read_first_line("/proc/loadavg")
    if watch is None:
        print(f"could not run: {problems[-1]}\n")
        return None

    samples = parse_samples(out)
    check_samples(samples, out, args.rounds)
    kept = check_kept(out, prepared.avml, logfile)
    report(samples, args.rounds, smp, watch)
    report_after(out, kept, noise, load_after, started, logfile)
    if not args.keep_images:
        for pattern in ("keep/*", "truth/*.bin"):
            for path in glob.glob(os.path.join(out, pattern)):
                os.unlink(path)
    print()
    return prepared.kver, samples


if __name__ == "__main__":
    sys.exit(main())
