#!/usr/bin/env python3
"""Side-by-side benchmark of swift-avml against its references, on a seeded memory-like corpus.

  scripts/bench.py [--size-mib N] [--runs N] [--seed N] [--quick] [--no-settle]

Measures, in one run:
  1. single-thread Snappy on 64 KiB chunks: `avml-bench` (ours) against Google's libsnappy
     (scripts/bench-snappy.cc, compiled here with g++ -O2 -lsnappy), timed the same way
     (best of --runs rounds, reused buffers): compress and decompress MB/s, compressed size;
  2. `avml convert` raw -> lime_compressed (default threads, --threads 1, --threads 2) and
     raw -> lime, wall time including a final `sync`, against `cp` to the same disk (+ `sync`),
     alternating ours and cp, --runs runs each, medians; before each timed run an untimed
     corpus-sized dd write + sync + delete gives both the same page-cache state (--no-settle);
  3. peak resident memory of each convert (GNU time's %M, as /usr/bin/time -v prints it, or
     VmHWM polled from /proc/PID/status without GNU time) against the pipeline's memory budget
     (256 MiB by default, `--memory-budget`), also with `--threads 64`;
  4. `avml symbols` offline (median wall time of 3, peak RSS, .json.gz size) for the Debian 6.1
     guest kernel (its BTF, kallsyms and banner as tests/guest/test_symbols.sh copies them out:
     AVML_GUEST_SYMBOLS, default .build-cache/guest-out-6.1-symbols/sym) and for this machine's
     /sys/kernel/btf/vmlinux, against <= 3 s, <= 300 MiB and <= 6 MB (--only-symbols: just this);
  5. the sizes of the measured `avml` and the `avml-minimal` beside it, against <= 20 MB and
     <= 8 MB: the shipped ones when AVML_BIN names what scripts/build-static printed.
Prints a Markdown table (measurement, ours, reference, ratio, target, met) and details.

The corpus comes from scripts/bench-corpus.py and is cached in .build-bench/ (git-ignored).
Builds `avml` and `avml-bench` with `swift build -c release --scratch-path .build-bench`.
Exits 0 when everything ran, whether or not targets were met; 1 if something could not run.
Environment: AVML_BIN / AVML_BENCH_BIN use prebuilt binaries instead of building them.
"""
import argparse
import json
import os
import platform
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import benchlib
from benchlib import ROOT, ForeignLoad, log, problem, problems

SCRATCH = os.path.join(ROOT, ".build-bench")
MIB = 1 << 20
BUDGET_MIB = 256  # the pipeline's default --memory-budget
CHUNK_NOTE = "64 KiB chunks, 1 thread"


def run_quiet(command, **kwargs):
    return subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kwargs)


def describe_machine():
    cpu = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / (1 << 30)
    except (ValueError, OSError):
        memory = 0
    commit = run_quiet(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"]).stdout.strip() or "unknown"
    dirty = run_quiet(["git", "-C", ROOT, "status", "--porcelain", "--untracked-files=no"]).stdout.strip()
    snappy = run_quiet(["dpkg-query", "-W", "-f=${Version}", "libsnappy-dev"]).stdout.strip() or "unknown"
    swift = run_quiet(["swift", "--version"]).stdout.strip().splitlines()
    filesystem = run_quiet(["findmnt", "-no", "FSTYPE,SOURCE", "-T", SCRATCH]).stdout.strip() or "unknown"
    return [
        f"machine: {cpu}, {len(os.sched_getaffinity(0))} CPUs usable, {memory:.1f} GiB RAM, {platform.release()}",
        f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}",
        f"commit: {commit}{' + uncommitted changes' if dirty else ''}; "
        f"{swift[0] if swift else 'swift: unknown'}; libsnappy-dev {snappy}",
        f"output disk (same as corpus): {filesystem}",
    ]


# --- building ---------------------------------------------------------------------------------


def build(product, override):
    """The path of product's release binary, building it in .build-bench, or None."""
    if os.environ.get(override):
        path = os.environ[override]
        if os.access(path, os.X_OK):
            log(f"bench: using {override}={path}")
            return path
        problem(f"{override}={path} is not executable")
        return None
    command = ["swift", "build", "-c", "release", "--product", product, "--scratch-path", SCRATCH]
    log("bench: " + shlex.join(command))
    started = time.monotonic()
    result = run_quiet(command, cwd=ROOT)
    if result.returncode != 0:
        tail = "\n".join(result.stdout.splitlines()[-40:])
        log(tail)
        problem(f"`{shlex.join(command)}` failed (exit {result.returncode})")
        return None
    log(f"bench: built {product} in {time.monotonic() - started:.0f} s")
    bin_dir = run_quiet(command + ["--show-bin-path"], cwd=ROOT).stdout.strip().splitlines()[-1]
    return os.path.join(bin_dir, product)


def compile_reference(workdir):
    source = os.path.join(ROOT, "scripts", "bench-snappy.cc")
    binary = os.path.join(workdir, "bench-snappy")
    if not shutil.which("g++") or not os.path.exists("/usr/include/snappy.h"):
        problem("g++ or libsnappy-dev is missing (scripts/setup-test-deps installs them)")
        return None
    shutil.copy(source, workdir)
    command = ["g++", "-O2", "-o", binary, os.path.join(workdir, "bench-snappy.cc"), "-lsnappy"]
    result = run_quiet(command)
    if result.returncode != 0:
        log(result.stdout)
        problem(f"`{shlex.join(command)}` failed")
        return None
    return binary


# --- corpus -----------------------------------------------------------------------------------


def corpus_path(size_mib, seed):
    path = os.path.join(SCRATCH, f"corpus-{size_mib}-seed{seed}.raw")
    if os.path.exists(path) and os.path.getsize(path) == size_mib * MIB:
        log(f"bench: reusing {os.path.relpath(path, ROOT)}")
        return path
    os.makedirs(SCRATCH, exist_ok=True)
    partial = path + ".partial"
    log(f"bench: generating a {size_mib} MiB corpus (seed {seed}) in {os.path.relpath(path, ROOT)}")
    started = time.monotonic()
    generator = os.path.join(ROOT, "scripts", "bench-corpus.py")
    result = subprocess.run([sys.executable, generator, partial, str(size_mib), str(seed)])
    if result.returncode != 0 or os.path.getsize(partial) != size_mib * MIB:
        problem("the corpus generator failed")
        return None
    os.replace(partial, path)
    log(f"bench: corpus ready in {time.monotonic() - started:.0f} s")
    return path


def warm(path):
    """Reads the file once so every timed run starts with it in the page cache."""
    with open(path, "rb", buffering=0) as f:
        while f.read(16 * MIB):
            pass


# --- 1. codec ---------------------------------------------------------------------------------


def codec_run(binary, corpus, rounds):
    result = subprocess.run([binary, corpus, str(rounds)], stdout=subprocess.PIPE, text=True)
    if result.returncode != 0:
        problem(f"`{binary} {corpus} {rounds}` failed (exit {result.returncode})")
        return None
    try:
        return json.loads(result.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        problem(f"`{binary}` printed no JSON line: {result.stdout!r}")
        return None


def codec(ours_bin, ref_bin, corpus, rounds, passes=2):
    """Best of `passes` alternating invocations, each itself the best of `rounds` rounds."""
    best = {"ours": None, "ref": None}
    for index in range(passes):
        for side, binary in (("ours", ours_bin), ("ref", ref_bin)):
            if binary is None:
                continue
            result = codec_run(binary, corpus, rounds)
            if result is None:
                continue
            log(f"bench: codec pass {index + 1} {side}: {json.dumps(result)}")
            previous = best[side]
            if previous is None:
                best[side] = result
            else:
                if previous["compressed_bytes"] != result["compressed_bytes"]:
                    problem(f"{side} compressed size changed between passes")
                for key in ("compress_MBps", "decompress_MBps"):
                    previous[key] = max(previous[key], result[key])
    return best["ours"], best["ref"]


# --- 2, 3. conversion -------------------------------------------------------------------------


TIME = "/usr/bin/time"  # GNU time (Debian package `time`)


def run_measured(command, workdir):
    """Runs command; returns (exit status, user s, sys s, peak RSS MiB) of that command alone.

    Peak RSS comes from GNU time's %M (the wait4 ru_maxrss of a child forked from the small
    `time` process).  Python's own wait4 is no good here: a child forked from this Python
    process keeps Python's resident size as its ru_maxrss floor across exec.  Without GNU
    time, VmHWM in /proc/PID/status is polled every 2 ms instead.
    """
    if os.access(TIME, os.X_OK):
        report = os.path.join(workdir, "time.out")
        process = subprocess.run([TIME, "-f", "%x %U %S %M", "-o", report, *command], stdout=subprocess.DEVNULL)
        with open(report) as f:
            status, user, system, rss_kib = f.read().split("\n")[-2].split()
        return int(status), float(user), float(system), int(rss_kib) / 1024
    before = os.times()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL)
    peak_kib = 0
    while process.poll() is None:
        try:
            with open(f"/proc/{process.pid}/status") as f:
                for line in f:
                    if line.startswith("VmHWM:"):
                        peak_kib = max(peak_kib, int(line.split()[1]))
        except OSError:
            pass
        time.sleep(0.002)
    after = os.times()
    return (process.returncode, after.children_user - before.children_user,
            after.children_system - before.children_system, peak_kib / 1024)


def settle(directory, size_mib):
    """Writes, syncs and deletes a file of zeros as large as the corpus, untimed.

    On this kind of VM guest (seen on a Firecracker guest, Linux 6.18, ext4), the first
    write()-based writer after a deleted `cp` copy pays up to ~2-3 s extra per GiB
    (kernel time in copy_folio_from_iter_atomic) while cp itself never does, so
    without this step whichever command follows cp in the alternation is penalised.
    A plain dd write before every timed run gives cp and ours the same starting state.
    """
    path = os.path.join(directory, "settle.tmp")
    subprocess.run(["dd", "if=/dev/zero", f"of={path}", "bs=16M", f"count={(size_mib + 15) // 16}",
                    "status=none"], check=True)
    os.sync()
    os.unlink(path)


def timed(command, output, workdir, settle_mib, corpus):
    """Runs command then `sync`; returns wall seconds (command + sync) and the command's usage."""
    if os.path.exists(output):
        os.unlink(output)
    if settle_mib:
        settle(os.path.dirname(output), settle_mib)
    warm(corpus)  # untimed: the guest may have reclaimed some of the corpus's page cache
    os.sync()  # untimed: start without other dirty data waiting
    started = time.monotonic()
    status, user, system, rss_mib = run_measured(command, workdir)
    finished = time.monotonic()
    subprocess.run(["sync"], check=True)
    synced = time.monotonic()
    if status != 0:
        raise RuntimeError(f"`{shlex.join(command)}` exited {status}")
    sample = {
        "wall": synced - started,
        "command": finished - started,
        "sync": synced - finished,
        "user": user,
        "sys": system,
        "rss_mib": rss_mib,
        "bytes": os.path.getsize(output),
    }
    os.unlink(output)
    os.sync()  # untimed: the deletion's writeback stays out of the next run
    return sample


def convert_cases(avml, corpus, threads_default):
    def avml_convert(fmt, threads=None):
        extra = [] if threads is None else ["--threads", str(threads)]
        return [avml, "convert", "--source-format", "raw", "--format", fmt, *extra, corpus]

    default_note = f"default threads = {threads_default}"
    return [
        # key, label, argv (without DST), threads, ratio target or None
        ("lc", f"convert raw → lime_compressed ({default_note})", avml_convert("lime_compressed"),
         threads_default, 1.05),
        ("lime", f"convert raw → lime ({default_note})", avml_convert("lime"), threads_default, 1.00),
        ("lc1", "convert raw → lime_compressed --threads 1", avml_convert("lime_compressed", 1), 1, None),
        ("lc2", "convert raw → lime_compressed --threads 2", avml_convert("lime_compressed", 2), 2, 1.05),
        ("lc64", "convert raw → lime_compressed --threads 64", avml_convert("lime_compressed", 64), 64, None),
    ]


def conversions(cases, corpus, outdir, runs, workdir, settle_mib):
    ours_out = os.path.join(outdir, "ours.out")
    cp_out = os.path.join(outdir, "cp.out")
    samples = {key: {"ours": [], "cp": []} for key, *_ in cases}
    for run in range(runs):
        for key, label, argv, _, _ in cases:
            pair = [("cp", ["cp", corpus, cp_out], cp_out), ("ours", argv + [ours_out], ours_out)]
            if run % 2:
                pair.reverse()  # alternate which goes first
            for side, command, output in pair:
                try:
                    sample = timed(command, output, workdir, settle_mib, corpus)
                except (RuntimeError, OSError, subprocess.CalledProcessError) as error:
                    problem(str(error))
                    return None
                samples[key][side].append(sample)
                log(f"bench: run {run + 1}/{runs} {key:4} {side:4} {sample['wall']:7.2f} s "
                    f"(command {sample['command']:.2f} + sync {sample['sync']:.2f}; "
                    f"cpu {sample['user']:.2f}u {sample['sys']:.2f}s; rss {sample['rss_mib']:.1f} MiB)")
    return samples


# --- 4. symbol tables -------------------------------------------------------------------------

SYMBOL_TARGETS = {"seconds": 3.0, "rss_mib": 300.0, "bytes": 6_000_000}
SIZE_TARGETS = {"avml": 20_000_000, "avml-minimal": 8_000_000}  # bytes, stripped
REQUIRED_SYMBOLS = ("init_task", "init_mm", "init_files", "linux_banner", "init_top_pgt")


def symbol_inputs(workdir):
    """[(label, btf, kallsyms, banner)] for the guest kernel (if its files are there) and this machine."""
    cases = []
    guest = os.environ.get("AVML_GUEST_SYMBOLS") or os.path.join(ROOT, ".build-cache", "guest-out-6.1-symbols", "sym")
    files = [os.path.join(guest, name) for name in ("btf", "kallsyms", "version")]
    if all(os.path.exists(f) for f in files):
        cases.append(("Debian 6.1 guest kernel", *files))
    elif os.environ.get("AVML_GUEST_SYMBOLS"):
        problem(f"AVML_GUEST_SYMBOLS={guest} lacks btf, kallsyms or version")
    else:
        log(f"bench: no guest kernel files in {guest} (tests/guest/test_symbols.sh leaves them there); skipped")
    if os.path.exists("/sys/kernel/btf/vmlinux"):
        # This machine's kallsyms may list functions only: add the symbols Volatility needs
        # (made up; the types are what is measured) so the offline table can be made.
        kallsyms = os.path.join(workdir, "kallsyms")
        with open("/proc/kallsyms") as source, open(kallsyms, "w") as target:
            text = source.read()
            target.write(text)
            names = {line.split()[2] for line in text.splitlines() if len(line.split()) >= 3}
            for index, name in enumerate(REQUIRED_SYMBOLS):
                if name not in names:
                    target.write(f"{0xffffffff82000000 + index * 0x1000:016x} D {name}\n")
        cases.append((f"this machine ({platform.release()})", "/sys/kernel/btf/vmlinux", kallsyms, "/proc/version"))
    return cases


def symbol_tables(avml, workdir, runs=3):
    """[(label, median wall s, max peak RSS MiB, .json.gz bytes)] of `avml symbols` offline."""
    results = []
    for label, btf, kallsyms, banner in symbol_inputs(workdir):
        output = os.path.join(workdir, "table.isf.json.gz")
        walls, peaks = [], []
        for _ in range(runs):
            if os.path.exists(output):
                os.unlink(output)
            started = time.monotonic()
            status, _, _, rss = run_measured(
                [avml, "symbols", "--quiet", "--btf", btf, "--kallsyms", kallsyms, "--banner", banner, output], workdir)
            walls.append(time.monotonic() - started)
            peaks.append(rss)
            if status != 0:
                problem(f"avml symbols for {label} exited {status}")
                break
        else:
            size = os.path.getsize(output)
            log(f"bench: symbols {label}: {', '.join(f'{w:.2f}' for w in walls)} s; peak RSS {max(peaks):.1f} MiB; {size:,} bytes")
            results.append((label, statistics.median(walls), max(peaks), size))
    return results


def report_sizes(avml):
    """The sizes of the measured avml and the avml-minimal beside it, with what `file` says of them."""
    folder = os.path.dirname(avml)
    print(f"\nBinaries measured ({folder}; `scripts/build-static` ships them stripped and static):\n")
    print("| binary | bytes | `file` says | target | met |")
    print("|---|---|---|---|---|")
    for product, target in SIZE_TARGETS.items():
        path = os.path.join(folder, product)
        if not os.path.exists(path):
            print(f"| {product} | not built here | | ≤ {target / 1e6:.0f} MB | n/a |")
            continue
        size = os.path.getsize(path)
        described = run_quiet(["file", "-b", path]).stdout if shutil.which("file") else "(no `file` command)"
        linking = next((part.strip() for part in described.split(",") if "linked" in part), described.strip())
        met = "statically linked" in described and size <= target
        print(f"| {product} | {size:,} | {linking} | ≤ {target / 1e6:.0f} MB | {'yes' if met else 'no'} |")


def report_symbols(results):
    print()
    print("Symbol tables (`avml symbols` offline, release build):")
    print()
    print("| kernel | wall s (median of 3) | peak RSS MiB | .json.gz bytes | target | met |")
    print("|---|---|---|---|---|---|")
    if not results:
        print("| (none) | not run | - | - | ≤ 3 s, ≤ 300 MiB, ≤ 6 MB | n/a |")
    for label, seconds, rss, size in results:
        met = (seconds <= SYMBOL_TARGETS["seconds"] and rss <= SYMBOL_TARGETS["rss_mib"]
               and size <= SYMBOL_TARGETS["bytes"])
        print(f"| {label} | {seconds:.2f} | {rss:.1f} | {size:,} | ≤ 3 s, ≤ 300 MiB, ≤ 6 MB | {'yes' if met else 'no'} |")


# --- report -----------------------------------------------------------------------------------


def median(samples, field):
    return statistics.median(s[field] for s in samples)


def row(measurement, ours, reference, ratio, target, met):
    met_text = "n/a" if met is None else ("yes" if met else "no")
    return f"| {measurement} | {ours} | {reference} | {ratio} | {target} | {met_text} |"


def report(corpus_bytes, codec_result, cases, samples):
    lines = ["| measurement | ours | reference | ratio | target | met |", "|---|---|---|---|---|---|"]
    ours, ref = codec_result
    if ours and ref:
        for key, label in (("compress_MBps", "compress"), ("decompress_MBps", "decompress")):
            ratio = ours[key] / ref[key]
            lines.append(row(f"Snappy {label}, {CHUNK_NOTE} (MB/s)", f"{ours[key]:.0f}",
                             f"{ref[key]:.0f} (libsnappy)", f"{ratio:.2f}×", "≥ 0.80×", ratio >= 0.8))
            if key == "compress_MBps":
                size_ratio = ours["compressed_bytes"] / ref["compressed_bytes"]
                lines.append(row("Snappy compressed size (bytes, % of input)",
                                 f"{ours['compressed_bytes']:,} ({100 * ours['ratio']:.2f} %)",
                                 f"{ref['compressed_bytes']:,} ({100 * ref['ratio']:.2f} %)",
                                 f"{size_ratio:.4f}×", "≤ 1.01×", size_ratio <= 1.01))
    else:
        for label in ("Snappy compress (MB/s)", "Snappy compressed size", "Snappy decompress (MB/s)"):
            lines.append(row(label, "not run" if not ours else "-", "not run" if not ref else "-", "-",
                             "≥ 0.80× / ≤ 1.01×", None))
    if samples:
        for key, label, _, threads, target in cases:
            ours_s, cp_s = samples[key]["ours"], samples[key]["cp"]
            ours_t, cp_t = median(ours_s, "wall"), median(cp_s, "wall")
            ratio = ours_t / cp_t
            lines.append(row(f"{label}: wall s incl. sync, median of {len(ours_s)}", f"{ours_t:.2f}",
                             f"{cp_t:.2f} (cp + sync)", f"{ratio:.2f}×",
                             f"≤ {target:.2f}× cp" if target else "(scaling, no target)",
                             ratio <= target if target else None))
        for key, label, _, threads, _ in cases:
            peak = max(s["rss_mib"] for s in samples[key]["ours"])
            limit = BUDGET_MIB
            lines.append(row(f"peak RSS, {label} (MiB, max of runs)", f"{peak:.1f}",
                             f"{limit} (the default --memory-budget)", f"{peak / limit:.2f}×", "≤ 1.00× budget",
                             peak <= limit))
    else:
        lines.append(row("convert rows", "not run", "-", "-", "-", None))
    print("\n".join(lines))

    if samples:
        print()
        print("Conversion details (medians; min–max of wall; cpu = user + sys of the command):")
        print()
        print("| run | wall s | min–max | command s | sync s | cpu s (user+sys) | peak RSS MiB | output bytes |")
        print("|---|---|---|---|---|---|---|---|")
        for key, label, *_ in cases:
            for side in ("ours", "cp"):
                s = samples[key][side]
                walls = [x["wall"] for x in s]
                name = label if side == "ours" else f"  cp (paired with {key})"
                print(f"| {name} | {median(s, 'wall'):.2f} | {min(walls):.2f}–{max(walls):.2f} | "
                      f"{median(s, 'command'):.2f} | {median(s, 'sync'):.2f} | "
                      f"{median(s, 'user'):.2f}+{median(s, 'sys'):.2f} | "
                      f"{max(x['rss_mib'] for x in s):.1f} | {s[0]['bytes']:,} |")
        lc1, lc2 = samples["lc1"]["ours"], samples["lc2"]["ours"]
        print()
        print(f"Scaling, lime_compressed command time without sync: --threads 1 "
              f"{median(lc1, 'command'):.2f} s, --threads 2 {median(lc2, 'command'):.2f} s "
              f"(speed-up {median(lc1, 'command') / median(lc2, 'command'):.2f}×); "
              f"input {corpus_bytes / MIB:.0f} MiB → {corpus_bytes / 1e6 / median(lc2, 'command'):.0f} MB/s "
              f"with 2 threads.")


def main():
    benchlib.program = "bench"
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-mib", type=int, help="corpus size in MiB (default 1024; 256 with --quick)")
    parser.add_argument("--runs", type=int, help="runs per conversion and codec rounds (default 5; 3 with --quick)")
    parser.add_argument("--seed", type=int, default=57, help="corpus seed (default 57)")
    parser.add_argument("--quick", action="store_true", help="a fast check: 256 MiB, 3 runs")
    parser.add_argument("--no-settle", action="store_true",
                        help="skip the untimed corpus-sized dd write before each timed conversion")
    parser.add_argument("--only-symbols", action="store_true", help="measure `avml symbols` alone")
    args = parser.parse_args()
    size_mib = args.size_mib if args.size_mib is not None else (256 if args.quick else 1024)
    runs = args.runs if args.runs is not None else (3 if args.quick else 5)
    if size_mib < 1 or runs < 1:
        parser.error("--size-mib and --runs must be at least 1")

    started = time.monotonic()
    print(f"# swift-avml benchmark\n\ncommand: `{benchlib.command_line()}`  ")
    print(f"corpus: {size_mib} MiB, seed {args.seed}; runs: {runs}; codec: best of {runs} rounds × 2 passes; "
          f"settle write before each timed conversion: {'no' if args.no_settle else 'yes'}  ")
    for line in describe_machine():
        print(line + "  ")
    print(flush=True)

    avml = build("avml", "AVML_BIN")
    if args.only_symbols:
        if avml is None:
            return 1
        with tempfile.TemporaryDirectory(prefix="avml-bench-") as workdir:
            load = ForeignLoad()
            report_symbols(symbol_tables(avml, workdir))
            print(f"\nMachine noise: {load.summary()}")
        return 1 if problems else 0
    avml_bench = build("avml-bench", "AVML_BENCH_BIN")
    corpus = corpus_path(size_mib, args.seed)
    if corpus is None:
        print("the corpus could not be made; nothing measured")
        return 1
    warm(corpus)
    threads_default = min(len(os.sched_getaffinity(0)), 8)  # avml's default --threads

    with tempfile.TemporaryDirectory(prefix="avml-bench-") as workdir:
        ref = compile_reference(workdir)
        log("bench: timing the codecs")
        load = ForeignLoad()
        codec_result = codec(avml_bench, ref, corpus, runs)
        noise = [f"codec phase: {load.summary()}"]
        cases = convert_cases(avml, corpus, threads_default) if avml else []
        samples = None
        if avml:
            outdir = os.path.join(SCRATCH, "bench-out")  # the corpus's disk
            os.makedirs(outdir, exist_ok=True)
            log("bench: timing conversions against cp")
            load = ForeignLoad()
            samples = conversions(cases, corpus, outdir, runs, workdir, 0 if args.no_settle else size_mib)
            noise.append(f"conversion phase: {load.summary()}")
            shutil.rmtree(outdir, ignore_errors=True)
        symbols = []
        if avml:
            log("bench: timing avml symbols")
            load = ForeignLoad()
            symbols = symbol_tables(avml, workdir)
            noise.append(f"symbol-table phase: {load.summary()}")

    report(size_mib * MIB, codec_result, cases, samples)
    report_symbols(symbols)
    if avml:
        report_sizes(avml)
    elapsed = time.monotonic() - started
    print()
    print("Machine noise (other work during the timed phases; high values mean noisy numbers):  ")
    for line in noise:
        print(f"- {line}")
    print()
    print(f"load average at end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}; "
          f"whole run: {elapsed:.0f} s ({elapsed / 60:.1f} min)")
    if problems:
        print("\ncould not run:")
        for message in problems:
            print(f"- {message}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
