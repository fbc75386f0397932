#!/usr/bin/env python3
"""check_symbols.py OUT: checks what tests/guest/test_symbols.sh brought out of the guest.

OUT/sym holds the guest's BTF, kallsyms and banner (btf, kallsyms, version), the table
`avml symbols` made live (guest.isf.json.gz), LiME and compressed images
(mem.lime, mem.avml) and /proc snapshots taken right before and after each capture
(before-lime, after-lime, after-avml; see snapshot.sh).

Checks, each printed as one line:
  1. the live table validates against volatility3's schemas (6.2.0, its format, and 6.3.0);
  2. the same table made offline on the host from the copied files has the same types and
     symbols;
  3. tests/interop/test_btf_bpftool.py and test_typed_symbols.py on the guest's files;
  4. Volatility 3, with -s holding only the table `avml acquire` wrote beside the image
     (mem.lime.isf.json.gz, recorded in the manifest) and a fresh cache, on mem.lime:
     banners.Banners finds the banner; linux.pslist.PsList lists every process alive in
     both snapshots with the same pid, ppid and comm, and nothing else but the capture
     itself (avml, its shell) and kernel threads; linux.lsmod.Lsmod gives /proc/modules'
     names; linux.psaux.PsAux gives each user process's /proc/PID/cmdline; linux.lsof.Lsof
     gives /proc/PID/fd's targets of every process whose descriptors did not change over the
     capture; linux.sockstat.Sockstat gives the same sockets, with /proc/net's ports and
     TCP states; linux.capabilities.Capabilities gives every process, root with every
     capability; linux.mountinfo.MountInfo gives /proc/1/mountinfo; linux.kmsg.Kmsg gives
     every kernel log line (text and timestamp) that dmesg showed before the capture; the
     ASLR shift Volatility finds equals the KASLR offset `avml symbols` reported;
  5. linux.pslist.PsList on mem.avml, with the table written beside it, within a time
     limit (compressed records whose stream outgrew their memory used to make Volatility's
     AVML layer loop forever: issue 13), listing the processes alive around that capture;
     and every record of mem.avml readable by Volatility (check_records.py).
Exits 1 if any check fails.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
VOLATILITY_TIMEOUT = int(os.environ.get("AVML_VOLATILITY_TIMEOUT", "600"))
COMPRESSED_TIMEOUT = int(os.environ.get("AVML_VOLATILITY_COMPRESSED_TIMEOUT", "300"))

failures: list[str] = []


def check(ok: bool, what: str, detail: str = "") -> bool:
    print(f"check_symbols: {'ok  ' if ok else 'FAIL'} {what}{': ' + detail if detail else ''}", flush=True)
    if not ok:
        failures.append(what)
    return ok


def steps(out: Path) -> dict[str, tuple[int, str, str]]:
    """Command text -> (exit status, stdout, stderr) of each guest step."""
    result = {}
    for cmd in sorted((out / "guest-run" / "steps").glob("*.cmd")):
        base = cmd.with_suffix("")
        result[cmd.read_text().strip()] = (int(Path(f"{base}.rc").read_text()), Path(f"{base}.stdout").read_text(),
                                           Path(f"{base}.stderr").read_text())
    return result


def step(all_steps, prefix: str) -> tuple[int, str, str]:
    for command, outcome in all_steps.items():
        if command.startswith(prefix):
            return outcome
    raise SystemExit(f"check_symbols: no guest step starting with {prefix!r}")


def snapshot(directory: Path) -> tuple[dict[int, tuple[int, str]], dict[int, str], set[str]]:
    """({pid: (ppid, comm)}, {pid: command line}, module names) from snapshot.sh's files."""
    processes, cmdlines = {}, {}
    for entry in directory.iterdir():
        if not entry.name.isdigit():
            continue
        stat = (entry / "stat").read_bytes().decode("utf-8", "replace")
        if not stat:
            continue  # exited between the glob and the read
        head, _, tail = stat.rpartition(")")
        comm = head.split("(", 1)[1]
        ppid = int(tail.split()[1])
        processes[int(entry.name)] = (ppid, comm)
        argv = (entry / "cmdline").read_bytes().split(b"\0")
        if argv and argv[-1] == b"":
            argv.pop()
        cmdlines[int(entry.name)] = " ".join(a.decode("utf-8", "replace") for a in argv)
    modules = {line.split()[0] for line in (directory / "modules").read_text().splitlines() if line.strip()}
    return processes, cmdlines, modules


def descriptors(directory: Path) -> dict[int, dict[int, str]]:
    """{pid: {fd: target}} from snapshot.sh's PID/fds files."""
    result = {}
    for entry in directory.iterdir():
        if entry.name.isdigit() and (entry / "fds").exists():
            lines = (entry / "fds").read_text(errors="replace").splitlines()
            result[int(entry.name)] = {int(fd): target for fd, _, target in (line.partition(" ") for line in lines)}
    return result


TCP_STATES = {1: "ESTABLISHED", 2: "SYN_SENT", 3: "SYN_RECV", 4: "FIN_WAIT1", 5: "FIN_WAIT2", 6: "TIME_WAIT",
              7: "CLOSE", 8: "CLOSE_WAIT", 9: "LAST_ACK", 10: "LISTEN", 11: "CLOSING"}


def tcp_sockets(directory: Path) -> dict[int, tuple[str, str, str]]:
    """{inode: (local port, remote port, state)} from /proc/net/tcp and tcp6."""
    result = {}
    for table in ("tcp", "tcp6"):
        for line in (directory / "net" / table).read_text().splitlines()[1:]:
            fields = line.split()
            local, remote, state, inode = fields[1], fields[2], int(fields[3], 16), int(fields[9])
            result[inode] = (str(int(local.rpartition(":")[2], 16)), str(int(remote.rpartition(":")[2], 16)),
                             TCP_STATES.get(state, str(state)))
    return result


def mountinfo(path: Path) -> set[tuple]:
    """/proc/PID/mountinfo's lines as (id, parent, major:minor, root, mount point, options,
    fstype, source, rw or ro): the columns of linux.mountinfo.MountInfo."""
    rows = set()
    for line in path.read_text().splitlines():
        head, _, tail = line.partition(" - ")
        mount_id, parent, device, root, point, options = head.split()[:6]
        fstype, source, super_options = tail.split(" ", 2)
        # Of the superblock's options Volatility shows rw or ro alone: the rest (size=, mode=) come
        # from each filesystem's show_options code, which an image cannot run.
        rows.add((int(mount_id), int(parent), device, root, point, options, fstype, source, super_options.split(",")[0]))
    return rows


def kernel_log(path: Path) -> list[tuple[str, str]]:
    """(timestamp, text) of each line busybox dmesg printed ("[    1.234567] text")."""
    result = []
    for line in path.read_text(errors="replace").splitlines():
        match = re.match(r"\[\s*(\d+\.\d+)\] ?(.*)$", line)
        if match:
            result.append((match.group(1), match.group(2)))
    return result


def load_isf(path: Path) -> dict:
    with gzip.open(path) as f:
        return json.load(f)


def validate_schema(isf: dict) -> None:
    import warnings

    import jsonschema
    import volatility3

    warnings.simplefilter("ignore", DeprecationWarning)  # the schemas name no draft
    schemas = Path(volatility3.__file__).parent / "schemas"
    for version in (isf["metadata"]["format"], "6.3.0"):
        schema = json.loads((schemas / f"schema-{version}.json").read_text())
        try:
            jsonschema.validate(isf, schema)
            check(True, f"the live table validates against volatility3's schema-{version}.json")
        except jsonschema.ValidationError as error:
            check(False, f"the live table validates against volatility3's schema-{version}.json", error.message[:300])


class Volatility:
    """Volatility 3 with only one symbol table: -s DIR holding it alone, a fresh cache, offline."""

    def __init__(self, table: Path, work: Path):
        self.symbols = work / "symbols"
        self.symbols.mkdir()
        shutil.copy(table, self.symbols / table.name)
        self.cache = work / "cache"
        self.cache.mkdir()

    def run(self, image: Path, plugin: str, timeout: int, verbose: bool = False, stackers: list[str] | None = None,
            arguments: list[str] | None = None):
        """(rows, stderr, seconds), rows None on failure or timeout. `arguments` follow the plugin's name."""
        vol = shutil.which("vol")
        if vol is None:
            raise SystemExit("check_symbols: Volatility 3's `vol` is not on PATH (scripts/setup-test-deps installs it)")
        command = [vol] + (["--stackers", *stackers] if stackers else []) + [
            "-q", "--offline", "--cache-path", str(self.cache), "-s", str(self.symbols), "-f", str(image), "-r", "json"]
        if verbose:
            command.append("-vvvv")
        command.append(plugin)
        command += arguments or []
        started = time.monotonic()
        try:
            result = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired as expired:
            stderr = expired.stderr.decode("utf-8", "replace") if isinstance(expired.stderr, bytes) else (expired.stderr or "")
            return None, f"timed out after {timeout} s\n{stderr[-2000:]}", time.monotonic() - started
        seconds = time.monotonic() - started
        if result.returncode != 0:
            return None, f"exit {result.returncode}\n{result.stderr[-3000:]}", seconds
        try:
            return json.loads(result.stdout), result.stderr, seconds
        except ValueError:
            return None, f"not JSON: {result.stdout[:500]!r}\n{result.stderr[-2000:]}", seconds


def flatten(rows):
    for row in rows or []:
        yield row
        yield from flatten(row.get("__children", []))


def same_task(proc: tuple[int, str], memory: tuple[int, str] | None) -> bool:
    """/proc's (ppid, comm) against task_struct's. For kernel threads /proc shows the full
    thread name and a kworker's current workqueue ("kworker/0:1H-kblockd"), where
    task_struct.comm holds the first 15 bytes of the name alone."""
    if memory is None or proc[0] != memory[0]:
        return False
    kernel_thread = proc[0] == 2 or proc[0] == 0
    return proc[1] == memory[1] or (kernel_thread and len(memory[1]) > 0 and proc[1].startswith(memory[1]))


def sha256_file(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def check_pslist(rows, before, after, label: str) -> None:
    common = {pid: info for pid, info in before.items() if after.get(pid) == info}
    seen = {}
    for row in flatten(rows):
        seen[int(row["PID"])] = (int(row["PPID"]), row["COMM"])
    missing = {pid: (info, seen.get(pid)) for pid, info in common.items() if not same_task(info, seen.get(pid))}
    # Only the capture itself (avml and the shell that ran it) and kernel threads may come and go.
    capture = {pid for pid, (ppid, comm) in seen.items() if comm == "avml"}
    capture |= {ppid for pid, (ppid, comm) in seen.items() if pid in capture}
    extra = {pid: info for pid, info in seen.items()
             if pid not in before and pid not in after and pid not in capture and info[0] != 2}
    user = sum(1 for ppid, _ in common.values() if ppid != 2 and ppid != 0)
    check(not missing and not extra and len(common) > 10 and user >= 3,
          f"linux.pslist.PsList on {label} lists the {len(common)} processes alive before and after the capture "
          f"({user} user processes; pid, ppid, comm)",
          f"missing or different: {missing}; unexpected: {extra}" if missing or extra else "")


def check_descriptors(volatility: Volatility, lime: Path, sym: Path, before, after) -> None:
    """lsof and sockstat against the descriptors of the processes that kept them over the capture."""
    fds_before, fds_after = descriptors(sym / "before-lime"), descriptors(sym / "after-lime")
    stable = {pid: fds for pid, fds in fds_before.items()
              if fds and fds_after.get(pid) == fds and before.get(pid) == after.get(pid) is not None}
    rows, stderr, seconds = volatility.run(lime, "linux.lsof.Lsof", VOLATILITY_TIMEOUT)
    if check(rows is not None, f"linux.lsof.Lsof runs on mem.lime ({seconds:.0f} s)", "" if rows else stderr):
        # An anonymous inode's file: /proc names it by its dentry ("anon_inode:bpf-prog"), Volatility
        # by the inode they all share ("anon_inode:[45]"); compared by kind alone.
        def comparable(fds):
            return {fd: "anon_inode:" if target.startswith("anon_inode:") else target for fd, target in fds.items()}
        seen: dict[int, dict[int, str]] = {}
        for row in flatten(rows):
            seen.setdefault(int(row["PID"]), {})[int(row["FD"])] = row["Path"]
        wrong = {pid: (fds, seen.get(pid)) for pid, fds in stable.items() if comparable(seen.get(pid, {})) != comparable(fds)}
        kinds = {target.split(":")[0] if ":[" in target else "file" for fds in stable.values() for target in fds.values()}
        check(not wrong and {"file", "pipe", "socket"} <= kinds,
              f"linux.lsof.Lsof gives /proc/PID/fd of the {len(stable)} processes whose descriptors did not change "
              f"({sum(map(len, stable.values()))} descriptors: {', '.join(sorted(kinds))})",
              f"different (proc, volatility): {wrong}" if wrong else "" if {"file", "pipe", "socket"} <= kinds else f"kinds: {kinds}")
    tcp_before, tcp_after = tcp_sockets(sym / "before-lime"), tcp_sockets(sym / "after-lime")
    expected = {}
    for pid, fds in stable.items():
        for fd, target in fds.items():
            match = re.fullmatch(r"socket:\[(\d+)\]", target)
            if match:
                inode = int(match.group(1))
                tcp = tcp_before.get(inode) if tcp_before.get(inode) == tcp_after.get(inode) else None
                expected[(pid, fd)] = tcp
    rows, stderr, seconds = volatility.run(lime, "linux.sockstat.Sockstat", VOLATILITY_TIMEOUT)
    if check(rows is not None, f"linux.sockstat.Sockstat runs on mem.lime ({seconds:.0f} s)", "" if rows else stderr):
        seen_sockets = {}
        for row in flatten(rows):
            if int(row["PID"]) in stable:
                tcp = (row["Source Port"], row["Destination Port"], row["State"]) if row["Proto"] == "TCP" else None
                seen_sockets[(int(row["PID"]), int(row["FD"]))] = tcp
        tcp_count = sum(1 for value in expected.values() if value)
        check(seen_sockets == expected and tcp_count >= 3,
              f"linux.sockstat.Sockstat gives the {len(expected)} sockets of those processes, {tcp_count} TCP ones "
              "with /proc/net/tcp's ports and state",
              f"proc {expected}, volatility {seen_sockets}" if seen_sockets != expected else "")


def check_capabilities(volatility: Volatility, lime: Path, before, after) -> None:
    """capabilities: every process alive over the capture, each root with every capability,
    as the guest's processes all are (kernel_cap_t, a typedef of an anonymous struct since
    Linux 6.3, must carry its typedef's name for Volatility to read it)."""
    common = {pid for pid, info in before.items() if after.get(pid) == info}
    rows, stderr, seconds = volatility.run(lime, "linux.capabilities.Capabilities", VOLATILITY_TIMEOUT)
    if check(rows is not None, f"linux.capabilities.Capabilities runs on mem.lime ({seconds:.0f} s)",
             "" if rows is not None else stderr[-3000:]):
        seen = {int(row["Pid"]): (row["EUID"], row["cap_effective"]) for row in flatten(rows)}
        wrong = {pid: seen.get(pid) for pid in common if seen.get(pid) != (0, "all")}
        check(not wrong and len(common) > 10,
              f"linux.capabilities.Capabilities gives the {len(common)} processes alive before and after the capture, "
              "each root with every capability", f"different: {wrong}" if wrong else "")


def check_mounts_and_log(volatility: Volatility, lime: Path, sym: Path) -> None:
    """mountinfo against /proc/1/mountinfo; kmsg against the kernel log dmesg printed before the capture."""
    mounts = mountinfo(sym / "before-lime" / "mountinfo")
    rows, stderr, seconds = volatility.run(lime, "linux.mountinfo.MountInfo", VOLATILITY_TIMEOUT)
    if check(rows is not None, f"linux.mountinfo.MountInfo runs on mem.lime ({seconds:.0f} s)", "" if rows else stderr):
        namespaces: dict[int, set[tuple]] = {}
        for row in flatten(rows):
            namespaces.setdefault(row["MNT_NS_ID"], set()).add((
                row["MOUNT ID"], row["PARENT_ID"], row["MAJOR:MINOR"], row["ROOT"], row["MOUNT_POINT"],
                row["MOUNT_OPTIONS"], row["FSTYPE"], row["MOUNT_SRC"], row["SB_OPTIONS"]))
        # init's namespace is the one holding its root mount; the others are the kernel's own.
        root_id = next(mount[0] for mount in mounts if mount[4] == "/")
        init = next((found for found in namespaces.values() if any(m[0] == root_id and m[4] == "/" for m in found)), set())
        check(init == mounts and len(mounts) >= 5,
              f"linux.mountinfo.MountInfo gives the {len(mounts)} mounts of /proc/1/mountinfo",
              f"only in /proc: {sorted(mounts - init)}; only in the image: {sorted(init - mounts)}" if init != mounts else "")
    log = kernel_log(sym / "before-lime" / "dmesg")
    rows, stderr, seconds = volatility.run(lime, "linux.kmsg.Kmsg", VOLATILITY_TIMEOUT)
    if check(rows is not None, f"linux.kmsg.Kmsg runs on mem.lime ({seconds:.0f} s)", "" if rows else stderr):
        # A record's device properties (" SUBSYSTEM=acpi", as /dev/kmsg shows them) follow its text,
        # one per line; syslog(2), which dmesg reads, leaves them out.
        lines = [(row["timestamp"], text) for row in flatten(rows) for text in row["line"].split("\n")
                 if not re.match(r" [A-Z_]+=", text)]
        first_difference = next((i for i, (a, b) in enumerate(zip(log, lines)) if a != b), None)
        # Volatility 3's walk of the 5.10+ ring buffer (Kmsg_5_10_to_.run) stops before head_id, the
        # newest record: when nothing was logged after dmesg ran, that is dmesg's last line.
        newest_left_out = len(lines) == len(log) - 1
        check(len(log) > 100 and (len(lines) >= len(log) or newest_left_out) and first_difference is None,
              f"linux.kmsg.Kmsg gives the {len(log)} kernel log lines dmesg showed before the capture (text, timestamp)"
              + (", but the newest, which Volatility's walk leaves out" if newest_left_out else ""),
              f"{len(lines)} lines from the image" if first_difference is None else f"line {first_difference}: dmesg {log[first_difference]!r}, "
              f"volatility {lines[first_difference]!r}")


def main() -> int:
    out = Path(sys.argv[1])
    sym = out / "sym"
    all_steps = steps(out)
    for command, (rc, _, stderr) in all_steps.items():
        if command.startswith(("mkdir -p sym", "avml", "sh /test/snapshot.sh")):
            check(rc == 0, f"guest step `{command[:60]}` exits 0", "" if rc == 0 else stderr.strip()[-500:])
    if failures:
        return 1
    _, _, symbols_stderr = step(all_steps, "avml symbols")
    print(f"check_symbols: guest `avml symbols` said: {symbols_stderr.strip()}")
    table = sym / "guest.isf.json.gz"
    isf = load_isf(table)
    version = (sym / "version").read_text()
    check(base64.b64decode(isf["symbols"]["linux_banner"]["constant_data"]) == version.encode() + b"\0",
          "linux_banner's constant_data is /proc/version and a NUL, as the kernel holds it")
    validate_schema(isf)

    # 2. offline on the host, from the copied files
    with tempfile.TemporaryDirectory(prefix="avml-symbols-check-") as work:
        work = Path(work)
        offline = work / "offline.isf.json.gz"
        result = subprocess.run([os.environ["AVML_BIN"], "symbols", "--btf", str(sym / "btf"), "--kallsyms",
                                 str(sym / "kallsyms"), "--banner", str(sym / "version"), str(offline)],
                                capture_output=True, text=True, timeout=300)
        if check(result.returncode == 0, "avml symbols offline on the host from the guest's files",
                 "" if result.returncode == 0 else result.stderr.strip()):
            other = load_isf(offline)
            same = all(other[key] == isf[key] for key in ("base_types", "user_types", "enums", "symbols"))
            check(same, "the offline table has the same types and symbols as the live one")

        # 3. the independent reader and the typed-symbol coverage, on the guest kernel
        environment = dict(os.environ, AVML_GUEST_SYMBOLS=str(sym))
        result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                                 str(ROOT / "tests/interop/test_btf_bpftool.py"),
                                 str(ROOT / "tests/interop/test_typed_symbols.py"), "-k", "guest"],
                                capture_output=True, text=True, env=environment, timeout=900)
        check(result.returncode == 0, "bpftool comparison and typed-symbol coverage on the guest's BTF",
              result.stdout.strip().splitlines()[-1] if result.stdout.strip() else result.stderr[-500:])

        # 4. Volatility on the LiME image, with the table the capture wrote beside it
        captured_table = sym / "mem.lime.isf.json.gz"
        manifest = json.loads((sym / "mem.lime.json").read_text())
        entry = manifest.get("symbols") or {}
        check(entry.get("path") == "sym/mem.lime.isf.json.gz" and entry.get("sha256") == sha256_file(captured_table),
              "avml acquire wrote mem.lime.isf.json.gz before reading memory, and its manifest records it",
              json.dumps(entry)[:500])
        captured = load_isf(captured_table)
        check(all(captured[key] == isf[key] for key in ("base_types", "user_types", "enums", "symbols")),
              "the capture's table has the same types and symbols as `avml symbols`'")
        volatility = Volatility(captured_table, work)
        lime = sym / "mem.lime"
        before, before_cmd, before_modules = snapshot(sym / "before-lime")
        after, after_cmd, after_modules = snapshot(sym / "after-lime")

        rows, stderr, seconds = volatility.run(lime, "banners.Banners", VOLATILITY_TIMEOUT)
        banners = {row.get("Banner", "").strip() for row in flatten(rows)}
        check(version.strip() in banners, f"banners.Banners finds the banner in mem.lime ({seconds:.0f} s)",
              "" if rows is not None else stderr)

        reported = re.search(r"KASLR offset (0x[0-9a-f]+)", symbols_stderr)
        # Volatility finds the kernel through VMCOREINFO when the image holds it, else (the second
        # run) by scanning for init_task with the table's addresses: both must work.
        for label, stackers in (("VMCOREINFO", None), ("init_task scan", ["LimeStacker", "LinuxIntelStacker"])):
            rows, stderr, seconds = volatility.run(lime, "linux.pslist.PsList", VOLATILITY_TIMEOUT, verbose=True,
                                                   stackers=stackers)
            if not check(rows is not None, f"linux.pslist.PsList runs on mem.lime, kernel found by {label} ({seconds:.0f} s)",
                         "" if rows is not None else stderr[-3000:]):
                continue
            check_pslist(rows, before, after, f"mem.lime ({label})")
            match = re.search(r"shift values determined: physical [0-9a-f]+ virtual ([0-9a-f]+)|, ASLR=0x([0-9a-f]+)", stderr)
            if match and reported:
                shift = int(match.group(1) or match.group(2), 16)
                check(shift == int(reported.group(1), 16),
                      f"Volatility's ASLR shift ({label}) {shift:#x} is the KASLR offset avml symbols reported")
            else:
                check(False, f"Volatility's ASLR shift ({label}) and avml's KASLR offset are both known",
                      f"volatility: {bool(match)}, avml: {bool(reported)}")

        rows, stderr, seconds = volatility.run(lime, "linux.lsmod.Lsmod", VOLATILITY_TIMEOUT)
        if check(rows is not None, f"linux.lsmod.Lsmod runs on mem.lime ({seconds:.0f} s)", "" if rows else stderr):
            names = {row["Module Name"] for row in flatten(rows)}
            expected = before_modules & after_modules
            check(names == expected and len(expected) >= 5,
                  f"linux.lsmod.Lsmod lists the {len(expected)} modules of /proc/modules",
                  f"missing {sorted(expected - names)}, unexpected {sorted(names - expected)}" if names != expected else "")

        rows, stderr, seconds = volatility.run(lime, "linux.psaux.PsAux", VOLATILITY_TIMEOUT)
        if check(rows is not None, f"linux.psaux.PsAux runs on mem.lime ({seconds:.0f} s)", "" if rows else stderr):
            args = {int(row["PID"]): row["ARGS"] for row in flatten(rows)}
            wanted = {pid: line for pid, line in before_cmd.items() if line and after_cmd.get(pid) == line}
            wrong = {pid: (line, args.get(pid)) for pid, line in wanted.items() if args.get(pid) != line}
            check(not wrong and len(wanted) >= 3,
                  f"linux.psaux.PsAux gives the command lines of the {len(wanted)} user processes",
                  f"different: {wrong}" if wrong else "")

        check_descriptors(volatility, lime, sym, before, after)
        check_capabilities(volatility, lime, before, after)
        check_mounts_and_log(volatility, lime, sym)

        # 5. the compressed image, with its own table, time-limited
        avml_image = sym / "mem.avml"
        walk = subprocess.run([sys.executable, str(HERE / "check_records.py"), str(avml_image)],
                              capture_output=True, text=True, timeout=600)
        check(walk.returncode == 0, "every record of mem.avml is readable by Volatility (independent walk)",
              (walk.stdout + walk.stderr).strip()[-500:])
        after_avml, _, _ = snapshot(sym / "after-avml")
        (work / "compressed").mkdir()
        compressed = Volatility(sym / "mem.avml.isf.json.gz", work / "compressed")
        rows, stderr, seconds = compressed.run(avml_image, "linux.pslist.PsList", COMPRESSED_TIMEOUT)
        if check(rows is not None, f"linux.pslist.PsList completes on mem.avml ({seconds:.0f} s, limit {COMPRESSED_TIMEOUT} s)",
                 "" if rows is not None else stderr[-3000:]):
            check_pslist(rows, after, after_avml, "mem.avml")

    print(f"check_symbols: {'all checks passed' if not failures else f'{len(failures)} failed'}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
