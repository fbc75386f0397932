"""bench_guest's run: the timed captures in the guest, and what they left, checked.

Writes the guest's script (bench-step, one timed capture per call, in the rotated order of
schedule()), boots the guest once through tests/guest/run.sh while HostWatch notes the host's
other CPU use per step, then reads the samples back (parse_samples: one dict per capture) and
checks them (check_samples) and the last round's images copied out (check_kept).  What fails
a check goes to benchlib.problems; the numbers themselves are bench_guest_report's business.
"""
import glob
import hashlib
import json
import os
import re
import shlex
import shutil
import subprocess
import threading
import time

from benchlib import GUEST, log, problem, run_logged

USER_HZ = 100  # the guest's /proc/stat unit

# name, label, image file, how to run it in the guest ($out is the image path)
WRITERS = [
    ("lime-digest", "LiME `digest=sha256`", "lime-digest.lime",
     'insmod /lib/lime.ko "path=$out" format=lime digest=sha256 timeout=0'),
    ("lime", "LiME, no digest", "lime.lime", 'insmod /lib/lime.ko "path=$out" format=lime timeout=0'),
    ("ours", "ours: `avml acquire ours.lime`", "ours.lime", 'avml acquire "$out"'),
    ("ours-compressed", "ours: `avml acquire --compress ours.avml`", "ours.avml", 'avml acquire --compress "$out"'),
]


STEP_HELPER = r"""#!/bin/sh
# bench-step WRITER ROUND KEEP: one timed capture of scripts/bench_guest.py, run in the guest.
# Untimed first: the previous image goes, then sync and drop_caches, so every capture starts
# from the same state.  Prints one BENCH line (uptime before, after the command, after the
# sync) and /proc/stat's cpu line before and after the command; keeps the image in
# /data/keep when KEEP is 1.
writer=$1 round=$2 keep=$3
rm -rf /data/cur
mkdir -p /data/cur /data/keep /data/manifests
sync
echo 3 > /proc/sys/vm/drop_caches
case $writer in
@CASES@
    *) echo "bench-step: unknown writer $writer" >&2; exit 2 ;;
esac
s0=$(head -n 1 /proc/stat); read -r u0 _ < /proc/uptime
eval "$command" < /dev/null
rc=$?
read -r u1 _ < /proc/uptime; s1=$(head -n 1 /proc/stat)
sync
read -r u2 _ < /proc/uptime
case $writer in lime*) rmmod lime ;; esac
size=$(stat -c %s "$out" 2>/dev/null || echo -1)
digest=-
[ -f "$out.sha256" ] && digest=$(cat "$out.sha256")
[ -f "$out.json" ] && cp "$out.json" "/data/manifests/$round-$writer.json"
echo "BENCH $writer $round $rc $u0 $u1 $u2 $size $digest"
echo "STAT0 ${s0#cpu }"
echo "STAT1 ${s1#cpu }"
[ "$keep" = 1 ] && mv /data/cur/* /data/keep/
exit $rc
"""


def step_helper():
    cases = "\n".join(f"    {name}) out=/data/cur/{image}; command='{command}' ;;"
                      for name, _, image, command in WRITERS)
    return STEP_HELPER.replace("@CASES@", cases)


def schedule(rounds):
    """(round, writer) in run order: each round the order rotated by one writer."""
    names = [name for name, *_ in WRITERS]
    return [(r + 1, names[(i + r) % len(names)]) for r in range(rounds) for i in range(len(names))]


def guest_steps(rounds, load_ssse3):
    info = ("mkdir -p info; " + ("insmod /lib/sha256-ssse3.ko > info/sha256-ssse3.txt 2>&1; " if load_ssse3 else "")
            + "grep -m 1 '^flags' /proc/cpuinfo > info/cpuflags.txt; nproc > info/nproc.txt; "
            "cat /proc/crypto > info/crypto.txt; free > info/free.txt; df /data > info/df.txt")
    lines = [info]
    for round_number, writer in schedule(rounds):
        lines.append(f"bench-step {writer} {round_number} {1 if round_number == rounds else 0}")
    return "\n".join(lines) + "\n"


def run_guest(cache, avml, lime_ko, ssse3_ko, out, rounds, workdir, logfile):
    helper = os.path.join(workdir, "bench-step")
    with open(helper, "w") as f:
        f.write(step_helper())
    os.chmod(helper, 0o755)
    steps = os.path.join(workdir, "steps.sh")
    with open(steps, "w") as f:
        f.write(guest_steps(rounds, ssse3_ko is not None))
    extra = [f"{helper}:/bin/bench-step", f"{lime_ko}:/lib/lime.ko"]
    if ssse3_ko:
        extra.append(f"{ssse3_ko}:/lib/sha256-ssse3.ko")
    env = dict(os.environ, AVML_GUEST_EXTRA_FILES=" ".join(extra))
    env.setdefault("AVML_GUEST_SMP", "2")
    env.setdefault("AVML_GUEST_TIMEOUT", "3600")
    shutil.rmtree(out, ignore_errors=True)
    log(f"bench-guest: booting the guest for {rounds} rounds × {len(WRITERS)} writers (log: {logfile})")
    watch = HostWatch(out)
    watch.start()
    try:
        run_logged([os.path.join(GUEST, "run.sh"), cache, avml, out, steps], logfile, env=env)
    finally:
        watch.done.set()
        watch.join()
    return watch


class HostWatch(threading.Thread):
    """The host's CPU use by processes other than the guest's QEMU, per guest step: the noise.

    Polls the guest's signal-port log (run.sh's logs/signal.log), where the guest announces
    each step's end, and snapshots /proc/stat and QEMU's own CPU time then.  A step's share
    runs from the previous step's end to its own, so it includes the step's untimed
    preparation.  User time left over is other work (another build); system time left over
    is partly the host's writeback of the guest's disk file.
    """

    def __init__(self, out):
        super().__init__(daemon=True)
        self.out, self.marks, self.qemu, self.done = out, {}, None, threading.Event()
        self.hz, self.cpus = os.sysconf("SC_CLK_TCK"), os.cpu_count() or 1

    def find_qemu(self):
        needle = os.path.join(self.out, "logs", "console.log").encode()
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    argv = f.read()
            except OSError:
                continue
            if b"qemu-system-x86_64" in argv and needle in argv:
                return pid
        return None

    def snapshot(self):
        with open("/proc/stat") as f:
            user, nice, system, _, _, irq, softirq = (int(x) for x in f.readline().split()[1:8])
        qemu_user = qemu_system = 0
        try:
            with open(f"/proc/{self.qemu}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            qemu_user, qemu_system = int(fields[11]), int(fields[12])
        except (OSError, IndexError, ValueError):
            pass
        return time.monotonic(), (user + nice - qemu_user) / self.hz, (system + irq + softirq - qemu_system) / self.hz

    def run(self):
        signal_log = os.path.join(self.out, "logs", "signal.log")
        while not self.done.wait(0.5):
            if self.qemu is None:
                self.qemu = self.find_qemu()
                if self.qemu is not None:
                    self.marks["000"] = self.snapshot()
                continue
            try:
                with open(signal_log, errors="replace") as f:
                    steps = re.findall(r"^AVML-GUEST-STEP (\d+) ", f.read(), re.M)
            except OSError:
                continue
            for step in steps:
                if step not in self.marks:
                    self.marks[step] = self.snapshot()

    def other(self, step):
        """(user %, system %) of all host CPUs outside QEMU during step, or None."""
        before, after = self.marks.get(f"{int(step) - 1:03d}"), self.marks.get(step)
        if not before or not after or after[0] <= before[0]:
            return None
        span = (after[0] - before[0]) * self.cpus
        # QEMU's and the machine's counters tick apart: a quiet step can come out a little below 0.
        return (max(0.0, 100 * (after[1] - before[1]) / span), max(0.0, 100 * (after[2] - before[2]) / span))


# --- the samples and the images ----------------------------------------------------------------------------------


def system_ram(iomem):
    """Top-level System RAM ranges (start, end inclusive) of a /proc/iomem as root."""
    ranges = []
    with open(iomem) as f:
        for line in f:
            if line[:1].isspace():
                continue
            span, _, name = line.strip().partition(" : ")
            if name == "System RAM":
                start, end = (int(x, 16) for x in span.split("-"))
                ranges.append((start, end))
    return ranges


def cpu_busy(stat_before, stat_after):
    """Guest CPU seconds busy (user+nice+system+irq+softirq) and in iowait between two cpu lines."""
    before, after = ([int(x) for x in s.split()] for s in (stat_before, stat_after))
    delta = [b - a for a, b in zip(before, after)]
    user, nice, system, _idle, iowait, irq, softirq = delta[:7]
    return (user + nice + system + irq + softirq) / USER_HZ, iowait / USER_HZ


def parse_samples(out):
    """One sample per timed step, from guest-run/steps/NNN.stdout."""
    samples = []
    for stdout in sorted(glob.glob(os.path.join(out, "guest-run", "steps", "*.stdout"))):
        with open(stdout, errors="replace") as f:
            text = f.read()
        bench = re.search(r"^BENCH (\S+) (\d+) (\d+) ([\d.]+) ([\d.]+) ([\d.]+) (-?\d+) (\S+)$", text, re.M)
        if not bench:
            continue
        stats = dict(re.findall(r"^(STAT\d) (.*)$", text, re.M))
        writer, round_number, rc = bench.group(1), int(bench.group(2)), int(bench.group(3))
        u0, u1, u2 = (float(bench.group(i)) for i in (4, 5, 6))
        busy, iowait = cpu_busy(stats["STAT0"], stats["STAT1"])
        sample = {"writer": writer, "round": round_number, "rc": rc, "command": u1 - u0, "sync": u2 - u1,
                  "total": u2 - u0, "size": int(bench.group(7)), "digest": bench.group(8), "busy": busy,
                  "iowait": iowait, "step": os.path.basename(stdout)[:3], "manifest": None}
        manifest = os.path.join(out, "manifests", f"{round_number}-{writer}.json")
        if os.path.isfile(manifest):
            with open(manifest) as f:
                sample["manifest"] = json.load(f)
        samples.append(sample)
    return samples


def check_samples(samples, out, rounds):
    """Every capture exited 0 with an image of the right size (and LiME a digest file)."""
    ram = system_ram(os.path.join(out, "iomem.txt"))
    lime_size = sum(end - start + 1 + 32 for start, end in ram)
    expected = len(WRITERS) * rounds
    if len(samples) != expected:
        problem(f"{len(samples)} timed captures finished, not {expected}; see {out}/guest-run/steps")
    for s in samples:
        where = f"round {s['round']} {s['writer']} (step {s['step']})"
        if s["rc"] != 0:
            stderr = os.path.join(out, "guest-run", "steps", f"{s['step']}.stderr")
            with open(stderr, errors="replace") as f:
                problem(f"{where} exited {s['rc']}: {f.read().strip()[-400:]}")
        if s["writer"].startswith("lime"):
            if s["size"] != lime_size:
                problem(f"{where}: image is {s['size']} bytes, not {lime_size} (System RAM + headers)")
            digest_ok = re.fullmatch(r"[0-9a-f]{64}", s["digest"]) is not None
            if s["writer"] == "lime-digest" and not digest_ok:
                problem(f"{where}: no 64-hex-digit digest file, got {s['digest']!r}")
        else:
            manifest = s["manifest"]
            if manifest is None or manifest.get("exit_status") != 0 or manifest.get("size") != s["size"]:
                problem(f"{where}: manifest missing, failed or not matching the image's {s['size']} bytes")
            elif not isinstance(manifest.get("timings"), dict):
                problem(f"{where}: the manifest has no timings")


def sha256_file(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def check_kept(out, avml, logfile):
    """The last round's images, copied out: digests, manifests, and the RAM they hold."""
    keep = os.path.join(out, "keep")
    results = []
    lime_image = os.path.join(keep, "lime-digest.lime")
    try:
        with open(lime_image + ".sha256") as f:
            claimed = f.read().strip()
        actual = sha256_file(lime_image)
        if claimed == actual:
            results.append(f"LiME's digest file equals the SHA-256 of its image ({actual[:16]}…)")
        else:
            problem(f"LiME's digest {claimed!r} is not the image's SHA-256 {actual}")
    except OSError as error:
        problem(f"cannot check LiME's digest: {error}")
    for image in ("ours.lime", "ours.avml"):
        result = subprocess.run([avml, "verify", "--quiet", os.path.join(keep, image)],
                                capture_output=True, text=True)
        if result.returncode == 0:
            results.append(f"`avml verify {image}`: {result.stdout.strip().split(': ', 1)[-1]}")
        else:
            problem(f"`avml verify {image}` exited {result.returncode}: {result.stderr.strip()[-400:]}")
    for image in ("lime-digest.lime", "lime.lime", "ours.lime"):
        command = ["python3", os.path.join(GUEST, "compare.py"), "--iomem", os.path.join(out, "iomem.txt"),
                   "--truth", os.path.join(out, "truth"), "--image", os.path.join(keep, image),
                   "--require-kernel-equal", "--min-coverage", "0.99", "--quiet"]
        if image == "ours.lime":  # ours skips all-zero blocks, as AVML does; its manifest counts them
            command += ["--zero-blocks", os.path.join(keep, "ours.lime.json")]
        result = subprocess.run(command, capture_output=True, text=True)
        with open(logfile, "a") as f:
            f.write(f"$ {shlex.join(command)}\n{result.stdout}{result.stderr}")
        line = (result.stdout.strip().splitlines() or [""])[-1]
        if result.returncode == 0:
            results.append(f"{image} against QEMU's RAM dump: {line}")
        else:
            problem(f"{image} does not match the guest's RAM (compare.py exit {result.returncode}): {line}")
    return results
