#!/usr/bin/env python3
"""plugin_matrix.py OUT...: every Volatility 3 Linux plugin, with our table and the reference's.

    python3 tests/guest/plugin_matrix.py OUT [OUT ...] [--plugins P ... | --workload] [--require-rows]
                                         [--jobs N] [--timeout S] [--markdown FILE]

OUT is what tests/guest/test_symbols.sh left for one guest kernel: the capture sym/mem.lime,
the table `avml acquire` wrote beside it (sym/mem.lime.isf.json.gz) and the kernel's banner
(sym/version), taken after the small workload test_symbols.sh starts (processes with
arguments, connected and listening TCP sockets, a pipe, a fifo, a file held open on tmpfs,
bash with a history line, an eBPF program on a perf event, a writable and executable
mapping, a traced process, an ftrace filter, a tracepoint probe, a keyboard notifier and a
framebuffer: see WORKLOAD_PLUGINS).
Each plugin of the installed volatility3 whose name starts with `linux.` runs twice on the
same image, `vol -r json`, offline, each time with one table alone: ours, and the one
Volatility's dwarf2json made from Debian's debug vmlinux of the same build
(testdata/isf/debian-RELEASE.json.xz). The rows are compared as multisets of whole rows
(children flattened), and each plugin gets one verdict:

  equal      both gave the same rows, at least one
  differs    both ran and the rows differ (counts and a sample of each side's own rows)
  no rows    both ran and gave none: nothing for the plugin to find on this guest
  ours fails / reference fails / both fail   with the first error line

Prints a Markdown table (plugin × kernel) and, per kernel, the differences; --markdown also
writes it to FILE. Exits 1 when any plugin differs or fails with ours alone, or, with
--require-rows, when any gives no rows or fails with either table; 0 otherwise, 2 on bad input.
A full run takes tens of minutes per kernel (each plugin reads the image twice): by hand.
test_symbols.sh runs `--workload` (WORKLOAD_PLUGINS, rows required) on every kernel it tests.
"""
from __future__ import annotations

import argparse
import collections
import concurrent.futures
import json
import os
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from check_symbols import Volatility, flatten  # noqa: E402


# What test_symbols.sh's workload is there for, each of which gives rows on it with either table.
WORKLOAD_PLUGINS = [
    "linux.bash.Bash",  # bash with a history line
    "linux.ebpf.EBPF",  # workload.c's program
    "linux.tracing.perf_events.PerfEvents",  # its perf event, which has the program
    "linux.malware.malfind.Malfind",  # its writable and executable mapping
    "linux.ptrace.Ptrace",  # its traced child
    "linux.library_list.LibraryList",  # bash's libc and ld.so
    "linux.tracing.ftrace.CheckFtrace",  # the function tracer filtered to vfs_read
    "linux.tracing.tracepoints.CheckTracepoints",  # sched_switch's event probe
    "linux.malware.keyboard_notifiers.Keyboard_notifiers",  # speakup's notifier
    "linux.graphics.fbdev.Fbdev",  # vesafb
    "linux.pagecache.InodePages",  # the file test_symbols.sh holds open on tmpfs
]

# Plugins that need arguments to give rows.
PLUGIN_ARGUMENTS = {
    "linux.pagecache.InodePages": ["--find", "/tmp/avml-held"],
    "linux.vmaregexscan.VmaRegExScan": ["--pattern", "avml-history-test"],  # bash's history line
}


def linux_plugins() -> list[str]:
    """The names `vol` knows the installed volatility3's Linux plugins by."""
    import volatility3.plugins
    from volatility3 import framework

    framework.import_files(volatility3.plugins, True)
    names = sorted(name for name in framework.list_plugins() if name.startswith("linux."))
    # Older names kept as aliases (linux.check_idt.Check_idt for linux.malware.check_idt...) run once.
    newer = {name.rsplit(".", 1)[1].lower() for name in names if name.startswith("linux.malware.")}
    return [name for name in names
            if name.startswith("linux.malware.") or name.rsplit(".", 1)[1].lower() not in newer]


def canonical(rows) -> collections.Counter:
    out = collections.Counter()
    for row in flatten(rows):
        out[json.dumps({k: v for k, v in row.items() if k != "__children"}, sort_keys=True)] += 1
    return out


def first_error(stderr: str) -> str:
    """The line that says why: an exception or error, else what follows Volatility's
    "Volatility experienced an issue ..." heading, else the last line."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    for line in reversed(lines):
        if "Error" in line or "error" in line or "Unsatisfied" in line or "timed out" in line:
            return line[:160]
    for index, line in enumerate(lines[:-1]):
        if line.startswith("Volatility experienced"):
            return lines[index + 1][:160]
    return (lines[-1] if lines else "no output")[:160]


def verdict(ours, reference) -> tuple[str, str]:
    """(verdict, detail) for one plugin from (rows, stderr, seconds) of each table."""
    (orows, oerr, _), (rrows, rerr, _) = ours, reference
    if orows is None and rrows is None:
        return "both fail", first_error(rerr)
    if orows is None:
        return "ours fails", first_error(oerr)
    if rrows is None:
        return "reference fails", first_error(rerr)
    o, r = canonical(orows), canonical(rrows)
    if o == r:
        count = sum(o.values())
        return ("equal", f"{count} rows") if count else ("no rows", "")
    only_o, only_r = o - r, r - o
    sample = lambda c: next(iter(c), "")[:200]  # noqa: E731
    return "differs", (f"ours {sum(o.values())} rows, reference {sum(r.values())}; only ours "
                       f"{sum(only_o.values())} (e.g. {sample(only_o)}), only the reference {sum(only_r.values())} "
                       f"(e.g. {sample(only_r)})")


def run_kernel(out: Path, plugins: list[str], jobs: int, timeout: int) -> tuple[str, dict[str, tuple[str, str, float]]]:
    image, ours = out / "sym" / "mem.lime", out / "sym" / "mem.lime.isf.json.gz"
    release = (out / "sym" / "version").read_text().split()[2]
    reference = HERE / "testdata" / "isf" / f"debian-{release}.json.xz"
    for path in (image, ours, reference):
        if not path.is_file():
            raise SystemExit(f"plugin_matrix: {path} is missing (run tests/guest/test_symbols.sh; testdata/isf "
                             "has tables for the builds tests/guest/kernels pins)")
    results = {}
    with tempfile.TemporaryDirectory(prefix="avml-plugins-") as work:
        work = Path(work)
        os.chdir(work)  # plugins that write files (module_extract, pagecache.RecoverFs) write them here
        (work / "ours").mkdir()
        (work / "reference").mkdir()
        volatility = {"ours": Volatility(ours, work / "ours"), "reference": Volatility(reference, work / "reference")}
        with concurrent.futures.ThreadPoolExecutor(max_workers=jobs) as pool:
            # Each table's cache first (both at once), so that the runs after do not all build it.
            for warm_up in [pool.submit(side.run, image, "linux.pslist.PsList", timeout) for side in volatility.values()]:
                warm_up.result()
            futures = {(plugin, side): pool.submit(volatility[side].run, image, plugin, timeout,
                                                   arguments=PLUGIN_ARGUMENTS.get(plugin))
                       for plugin in plugins for side in ("ours", "reference")}
            for plugin in plugins:
                o, r = futures[(plugin, "ours")].result(), futures[(plugin, "reference")].result()
                name, detail = verdict(o, r)
                results[plugin] = (name, detail, o[2] + r[2])
                print(f"plugin_matrix: {release} {plugin}: {name} {detail}", file=sys.stderr, flush=True)
    return release, results


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("out", nargs="+", type=Path, help="test_symbols.sh output folders, one per kernel")
    ap.add_argument("--plugins", nargs="+", help="these plugins only (default: every linux.* plugin)")
    ap.add_argument("--workload", action="store_true",
                    help="the plugins test_symbols.sh's workload is for (WORKLOAD_PLUGINS), with --require-rows")
    ap.add_argument("--require-rows", action="store_true",
                    help="fail unless every plugin gives the same rows, at least one, with both tables")
    ap.add_argument("--jobs", type=int, default=2, help="plugins run at once (default 2)")
    ap.add_argument("--timeout", type=int, default=600, help="seconds per plugin run (default 600)")
    ap.add_argument("--markdown", type=Path, help="also write the report here")
    args = ap.parse_args(argv)
    if args.workload:
        args.plugins, args.require_rows = WORKLOAD_PLUGINS, True
    plugins = args.plugins or linux_plugins()
    kernels = [run_kernel(out, plugins, args.jobs, args.timeout) for out in args.out]
    lines = ["| plugin | " + " | ".join(release for release, _ in kernels) + " |",
             "|---|" + "---|" * len(kernels)]
    for plugin in plugins:
        cells = []
        for _, results in kernels:
            name, detail, _ = results[plugin]
            cells.append(f"{name} ({detail})" if name == "equal" else name)
        lines.append(f"| {plugin} | " + " | ".join(cells) + " |")
    totals = [collections.Counter(r[0] for r in results.values()) for _, results in kernels]
    lines.append("")
    for (release, results), total in zip(kernels, totals):
        lines.append(f"{release}: " + ", ".join(f"{n} {k}" for k, n in sorted(total.items())))
        for plugin, (name, detail, seconds) in results.items():
            if name not in ("equal", "no rows"):
                lines.append(f"- {plugin}: {name}: {detail} ({seconds:.0f} s)")
    report = "\n".join(lines) + "\n"
    print(report)
    if args.markdown:
        args.markdown.write_text(report)
    return 1 if failures(totals, args.require_rows) else 0


def failures(totals: list[collections.Counter], require_rows: bool) -> int:
    """Plugins (over every kernel) that fail the run: those that differ or fail with ours alone,
    and with `require_rows` every one that is not equal with at least one row."""
    if require_rows:
        return sum(n for total in totals for name, n in total.items() if name != "equal")
    return sum(total["differs"] + total["ours fails"] for total in totals)


if __name__ == "__main__":
    sys.exit(main())
