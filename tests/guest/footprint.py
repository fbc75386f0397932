#!/usr/bin/env python3
"""footprint.py OUT [TARGET_MIB]: how much of the guest's memory each measured step changed (issue 27).

OUT is a run.sh output whose steps asked guestctl.py for snapshots around each measured
command: "AVML-GUEST-SNAPSHOT NAME-before", the command, "AVML-GUEST-SNAPSHOT NAME-after"
(each snapshot one 8-byte digest per 4 KiB page of System RAM). The command of a pair is
the step between its two snapshot steps; "idle" is the guest doing nothing for a while.
Prints, per pair, the pages that differ, in MiB and as a share of System RAM, the window's
length (the steps' own timing), and, for commands, what they changed beyond the idle rate
for as long, and with TARGET_MIB whether an `avml acquire` stayed within it (said, not judged:
the rows move by a MiB or two between runs). Exits 1 when a pair or its timing is missing.
"""
import sys
from pathlib import Path

PAGE = 4096


def changed(before: bytes, after: bytes) -> int:
    if len(before) != len(after):
        raise SystemExit(f"footprint: snapshots of different sizes ({len(before)} and {len(after)} bytes)")
    return sum(1 for i in range(0, len(before), 8) if before[i:i + 8] != after[i:i + 8])


def steps(out: Path) -> list[tuple[str, float]]:
    """(command, seconds) of every step, in order."""
    folder = out / "guest-run"
    result = []
    for line in (folder / "steps.tsv").read_text().splitlines()[1:]:
        number, _, seconds = line.split("\t")
        result.append(((folder / "steps" / f"{number}.cmd").read_text().strip(), float(seconds)))
    return result


def main() -> int:
    out = Path(sys.argv[1])
    target = float(sys.argv[2]) if len(sys.argv) > 2 else None
    snapshots = out / "snapshots"
    all_steps = steps(out)
    marker = "AVML-GUEST-SNAPSHOT "
    # Each window: from the step that takes NAME-before to the one that takes NAME-after.
    windows = {}
    opened = {}
    for index, (command, _) in enumerate(all_steps):
        if marker in command:
            name = command.split(marker, 1)[1].split()[0]
            label, _, side = name.rpartition("-")
            if side == "before":
                opened[label] = index
            elif side == "after" and label in opened:
                inside = all_steps[opened[label] + 1:index]
                # The snapshot step's own pause after its signal belongs to the window too.
                seconds = sum(s for _, s in all_steps[opened[label]:index])
                windows[label] = (" && ".join(c for c, _ in inside) or "(nothing)", seconds)
    if "idle" not in windows or len(windows) < 2:
        print(f"footprint: want an idle window and at least one command, found {sorted(windows)}", file=sys.stderr)
        return 1
    results = {}
    for label, (command, seconds) in windows.items():
        before = (snapshots / f"{label}-before.pages").read_bytes()
        after = (snapshots / f"{label}-after.pages").read_bytes()
        results[label] = (command, seconds, changed(before, after), len(before) // 8)
    _, idle_seconds, idle_pages, total = results["idle"]
    idle_rate = idle_pages / max(idle_seconds, 0.01)
    print(f"footprint: System RAM {total * PAGE / 2**20:.1f} MiB; idle {idle_seconds:.1f} s: {idle_pages} pages "
          f"({idle_pages * PAGE / 2**20:.1f} MiB, {100 * idle_pages / total:.2f}%) changed")
    for label, (command, seconds, pages, _) in results.items():
        if label == "idle":
            continue
        beyond = max(0.0, pages - idle_rate * seconds)
        print(f"footprint: `{command}` ({seconds:.1f} s): {pages} pages ({pages * PAGE / 2**20:.1f} MiB, "
              f"{100 * pages / total:.2f}%) changed; {beyond * PAGE / 2**20:.1f} MiB beyond idle for as long"
              + (f" (target {target:g} MiB: {'met' if beyond * PAGE / 2**20 <= target else 'NOT met'})"
                 if target is not None and "avml acquire" in command else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
