"""bench_guest's report: the Markdown it prints from the samples bench_guest_run checked.

report_title() and report_setup() head it (the command, the host, the guest and what was
prepared); report() gives the per-writer table, the ratios against LiME with digest and issue
12's targets, where our time goes (the manifests' `timings`) and every capture with the host's
noise; report_after() the checks of the kept images, the guest's CPU and SHA-256 driver, the
run's timing and noise.  Reads only what it is given and what the run left in OUT; runs nothing.
"""
import os
import statistics
import time

import benchlib
from benchlib import read_first_line
from bench_guest_run import WRITERS
from bench_guest_setup import LIME_PACKAGE

TARGETS = {"ours": 0.65, "ours-compressed": 0.45}  # × LiME with digest, issue 12
STAGES = ["read", "zero_check", "compress", "hash", "write"]


def report_title(commit):
    print(f"# swift-avml guest benchmark\n\ncommand: `{benchlib.command_line()}`; commit {commit}  ")
    print(f"host: {len(os.sched_getaffinity(0))} CPUs, load average at start {read_first_line('/proc/loadavg')}  ")


def report_setup(prepared, rounds, smp):
    """What bench_guest_setup.prepare() found, and how the captures are run."""
    print(f"guest: kernel {prepared.kver}, {os.environ.get('AVML_GUEST_MEM', '512M')} RAM, {smp} vCPUs, "
          f"data disk {os.environ.get('AVML_GUEST_DISK_SIZE', '3G')} ext4  ")
    print(f"LiME: {os.path.basename(prepared.source)} (Debian {LIME_PACKAGE}), {prepared.lime_ko}; "
          f"avml: {prepared.avml}  ")
    print(f"rounds: {rounds}, order rotated each round; untimed before each capture: delete the previous "
          f"image, sync, drop_caches; timed on the guest's /proc/uptime (10 ms)  ")
    print(flush=True)


def by_writer(samples):
    return {name: [s for s in samples if s["writer"] == name and s["rc"] == 0] for name, *_ in WRITERS}


def med(values):
    return statistics.median(values) if values else float("nan")


def report(samples, rounds, smp, watch):
    groups = by_writer(samples)
    print(f"| writer (guest, {smp} vCPUs) | command + sync: median s | min–max | command alone: median s | "
          f"sync after: median s | guest CPU busy in the command: median s (% of {smp} vCPUs) | image MiB |")
    print("|---|---|---|---|---|---|---|")
    for name, label, *_ in WRITERS:
        s = groups[name]
        if not s:
            print(f"| {label} | not run | | | | | |")
            continue
        totals = [x["total"] for x in s]
        busy = med([x["busy"] for x in s])
        command = med([x["command"] for x in s])
        share = busy / (command * smp) if command else 0
        print(f"| {label} | {med(totals):.2f} | {min(totals):.2f}–{max(totals):.2f} | "
              f"{command:.2f} | {med([x['sync'] for x in s]):.2f} | "
              f"{busy:.1f} ({100 * share:.0f} %) | {med([x['size'] for x in s]) / (1 << 20):.1f} |")
    print()
    reference = groups["lime-digest"]
    print(f"| ratio (medians of {rounds} rounds) | writer s | LiME `digest=sha256` s | ratio | target | met |")
    print("|---|---|---|---|---|---|")
    for name, label, *_ in WRITERS[1:]:
        s = groups[name]
        if not s or not reference:
            continue
        for field, what in (("total", "command + sync"), ("command", "command alone")):
            ours, theirs = med([x[field] for x in s]), med([x[field] for x in reference])
            ratio = ours / theirs
            target = TARGETS.get(name) if field == "total" else None
            met = "n/a" if target is None else ("yes" if ratio <= target else "no")
            target_text = f"≤ {target:.2f}×" if target else "—"
            print(f"| {label} / LiME digest, {what} | {ours:.2f} | {theirs:.2f} | {ratio:.2f}× | "
                  f"{target_text} | {met} |")
    print()
    print("Where our time goes (manifest `timings`, seconds summed over threads, median of the rounds; "
          "`symbol table` and `reading memory` are the manifest's wall times of the two, "
          "`command` that of the whole capture):")
    print()
    print("| ours | " + " | ".join(STAGES) + " | sum | symbol table | reading memory | command |")
    print("|---|" + "---|" * (len(STAGES) + 4))
    for name, label, *_ in WRITERS[2:]:
        s = [x for x in groups[name] if x["manifest"] and isinstance(x["manifest"].get("timings"), dict)]
        if not s:
            continue
        stage = {key: med([x["manifest"]["timings"].get(key, 0.0) for x in s]) for key in STAGES}
        total = med([sum(x["manifest"]["timings"].get(key, 0.0) for key in STAGES) for x in s])
        print(f"| {label} | " + " | ".join(f"{stage[key]:.2f}" for key in STAGES)
              + f" | {total:.2f} | {seconds(s, table_seconds)} | {seconds(s, reading_seconds)} | "
              f"{med([x['command'] for x in s]):.2f} |")
    print()
    print("Every capture, in run order (s; host: CPU of other processes than QEMU meanwhile, user / system, "
          "% of all host CPUs):")
    print()
    print("| round | writer | command | sync | command + sync | guest CPU busy | guest iowait | host others |")
    print("|---|---|---|---|---|---|---|---|")
    for s in samples:
        other = watch.other(s["step"])
        host = f"{other[0]:.0f} % / {other[1]:.0f} %" if other else "?"
        print(f"| {s['round']} | {s['writer']} | {s['command']:.2f} | {s['sync']:.2f} | {s['total']:.2f} | "
              f"{s['busy']:.1f} | {s['iowait']:.1f} | {host} |")


def table_seconds(sample):
    return ((sample["manifest"] or {}).get("symbols") or {}).get("seconds")


def reading_seconds(sample):
    return (sample["manifest"] or {}).get("reading_seconds")


def seconds(samples, field):
    """The median of a manifest's seconds over the samples that have it, or "—"."""
    values = [value for value in map(field, samples) if isinstance(value, (int, float))]
    return f"{med(values):.2f}" if values else "—"


def report_kernels(results, rounds):
    """Each kernel's medians side by side: ours (with the symbol table) against LiME on that kernel."""
    print(f"## Every kernel (medians of {rounds} rounds, command + sync, s; ratio to LiME `digest=sha256`)\n")
    labels = [label for _, label, *_ in WRITERS]
    print("| kernel | " + " | ".join(labels) + " | ours' symbol table (in ours) |")
    print("|---|" + "---|" * (len(WRITERS) + 1))
    for kernel, result in results.items():
        if result is None:
            print(f"| {kernel} | could not run |" + " |" * len(WRITERS))
            continue
        kver, samples = result
        groups = by_writer(samples)
        reference = [x["total"] for x in groups["lime-digest"]]
        cells = []
        for name, *_ in WRITERS:
            totals = [x["total"] for x in groups[name]]
            if not totals:
                cells.append("—")
            elif reference and name != "lime-digest":
                cells.append(f"{med(totals):.2f} ({med(totals) / med(reference):.2f}×)")
            else:
                cells.append(f"{med(totals):.2f}")
        print(f"| {kver} | " + " | ".join(cells) + f" | {seconds(groups['ours'], table_seconds)} |")
    print()


def run_timing(out):
    """run.sh's logs/timing.txt (prepare_s, vm_s, copy_out_s, total_s) as one phrase."""
    try:
        with open(os.path.join(out, "logs", "timing.txt")) as f:
            times = dict(line.split() for line in f if line.strip())
    except (OSError, ValueError):
        return "timing unknown"
    return f"VM {times.get('vm_s', '?')} s, copy-out {times.get('copy_out_s', '?')} s, total {times.get('total_s', '?')} s"


def sha256_driver(crypto_txt):
    """The sha256 driver the kernel's crypto API picks (highest priority, self-test passed)."""
    best = None
    try:
        with open(crypto_txt) as f:
            blocks = f.read().split("\n\n")
    except OSError:
        return "unknown"
    for block in blocks:
        fields = dict((k.strip(), v.strip()) for k, _, v in (line.partition(":") for line in block.splitlines()))
        if fields.get("name") == "sha256" and fields.get("selftest", "passed") == "passed":
            priority = int(fields.get("priority", "0"))
            if best is None or priority > best[0]:
                best = (priority, fields.get("driver", "?"))
    return f"{best[1]} (priority {best[0]})" if best else "none"


def report_after(out, kept, noise, load_after, started, logfile):
    """The checks of the kept images, the guest's SHA-256 setting, the run's timing and noise."""
    info = os.path.join(out, "info")
    flags = read_first_line(os.path.join(info, "cpuflags.txt"), "")
    features = [f for f in ("ssse3", "avx", "avx2", "sha_ni") if f in flags.split()]
    print()
    print("Checks of the last round's images (copied out of the guest):  ")
    for line in kept:
        print(f"- {line}")
    print()
    print(f"Guest: `nproc` {read_first_line(os.path.join(info, 'nproc.txt'))}; CPU features for SHA-256: "
          f"{', '.join(features) or 'none'}; LiME's SHA-256 (kernel crypto API): "
          f"{sha256_driver(os.path.join(info, 'crypto.txt'))}; tests/guest/run.sh: {run_timing(out)}.  ")
    print(f"Host noise while the guest ran: {noise}; load average at end {load_after}.  ")
    print(f"Whole run {time.monotonic() - started:.0f} s; output in {out}, log {logfile}.")
