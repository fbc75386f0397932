#!/usr/bin/env python3
"""Host side of the acquisition-test guest: wait, stop, dump (stdlib only).

Usage: guestctl.py --qmp SOCK --signal FILE --pid QEMU_PID --out OUT_DIR
                   [--boot-timeout S] [--timeout S]

Follows the guest's signal port (a QEMU `-serial file:` log written by
guest-init.sh) and QEMU's QMP socket:

 1. waits for "AVML-GUEST-IOMEM-BEGIN" ... "AVML-GUEST-IOMEM-END" (the
    guest's /proc/iomem, read as root) within --boot-timeout seconds and
    writes it to OUT_DIR/iomem.txt (and OUT_DIR/logs/iomem-signal.txt);
 2. waits for "AVML-GUEST-DONE" (all steps ran, data disk synced and
    unmounted) within --timeout seconds of start;
 3. QMP `stop`, checks `query-status` says paused, then `pmemsave`s every
    top-level "System RAM" range of that iomem into
    OUT_DIR/truth/ram-<start>-<end>.bin (16 hex digits each, end inclusive)
    and lists them in OUT_DIR/truth/ranges.tsv;
 4. QMP `quit`.

A step may ask for a snapshot of the guest's memory while it runs by writing
"AVML-GUEST-SNAPSHOT NAME" to the signal port (then sleeping a moment): the guest is
stopped, every System RAM range is dumped and reduced to one 8-byte BLAKE2b digest
per 4 KiB page in OUT_DIR/snapshots/NAME.pages (the dump itself is deleted), and
the guest continues. footprint.py compares two snapshots.

Exit status: 0 done; 3 guest reported AVML-GUEST-FAIL; 4 timeout;
5 QEMU exited early; 6 QMP error.  Timings are printed on stdout.
"""
import argparse
import hashlib
import json
import os
import socket
import sys
import time

T0 = time.monotonic()


def log(msg):
    print(f"guestctl: [{time.monotonic() - T0:7.2f}s] {msg}", flush=True)


class Failure(Exception):
    def __init__(self, code, msg):
        super().__init__(msg)
        self.code = code


def pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie child of our parent still "exists": check /proc state
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


class QMP:
    def __init__(self, path, pid, timeout=30.0):
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                self.sock.connect(path)
                break
            except OSError as e:
                self.sock.close()
                if not pid_alive(pid):
                    raise Failure(5, "QEMU exited before its QMP socket came up")
                if time.monotonic() > deadline:
                    raise Failure(6, f"cannot connect to QMP socket {path}: {e}")
                time.sleep(0.1)
        self.buf = b""
        greeting = self._read(timeout)
        if "QMP" not in greeting:
            raise Failure(6, f"unexpected QMP greeting {greeting}")
        self.cmd("qmp_capabilities")

    def _read(self, timeout):
        self.sock.settimeout(timeout)
        while b"\n" not in self.buf:
            try:
                chunk = self.sock.recv(65536)
            except socket.timeout:
                raise Failure(6, f"QMP: no answer within {timeout:.0f}s")
            if not chunk:
                raise Failure(6, "QMP connection closed")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return json.loads(line)

    def cmd(self, name, timeout=60.0, **args):
        msg = {"execute": name}
        if args:
            msg["arguments"] = args
        self.sock.sendall(json.dumps(msg).encode() + b"\n")
        while True:
            r = self._read(timeout)
            if "event" in r:
                continue
            if "error" in r:
                raise Failure(6, f"QMP {name} failed: {r['error']}")
            if "return" in r:
                return r["return"]


class Signal:
    """Incremental line reader of the signal-port log file."""

    def __init__(self, path):
        self.path = path
        self.pos = 0
        self.partial = b""

    def lines(self):
        try:
            with open(self.path, "rb") as f:
                f.seek(self.pos)
                data = f.read()
        except FileNotFoundError:
            return []
        self.pos += len(data)
        data = self.partial + data
        *full, self.partial = data.split(b"\n")
        return [l.decode("utf-8", "replace").rstrip("\r") for l in full]


def system_ram_ranges(iomem_text):
    out = []
    for line in iomem_text.splitlines():
        if not line or line[0] == " ":
            continue  # only top-level entries, like AVML
        rng, _, name = line.partition(" : ")
        if name.strip() == "System RAM":
            a, b = rng.split("-")
            out.append((int(a, 16), int(b, 16)))
    return out


def run(args):
    sig = Signal(args.signal)
    qmp = QMP(args.qmp, args.pid)
    log("QMP connected")
    iomem = None
    collecting = None
    boot_deadline = T0 + args.boot_timeout
    deadline = T0 + args.timeout
    t_iomem = None
    while True:
        for line in sig.lines():
            if collecting is not None:
                if line == "AVML-GUEST-IOMEM-END":
                    iomem = "\n".join(collecting) + "\n"
                    collecting = None
                    t_iomem = time.monotonic()
                    for path in ("iomem.txt", os.path.join("logs", "iomem-signal.txt")):
                        with open(os.path.join(args.out, path), "w") as f:
                            f.write(iomem)
                    log(f"guest is up, /proc/iomem received ({len(system_ram_ranges(iomem))} System RAM ranges)")
                else:
                    collecting.append(line)
                continue
            if line.startswith("AVML-GUEST-BOOTED"):
                log(f"guest init started (kernel {line.split()[-1]})")
            elif line == "AVML-GUEST-IOMEM-BEGIN":
                collecting = []
            elif line.startswith("AVML-GUEST-SNAPSHOT ") and iomem is not None:
                snapshot(qmp, iomem, line.split()[1], args)
            elif line.startswith("AVML-GUEST-STEP"):
                log("guest " + line[len("AVML-GUEST-"):].lower())
            elif line.startswith("AVML-GUEST-FAIL"):
                raise Failure(3, "guest failed: " + line[len("AVML-GUEST-FAIL"):].strip())
            elif line == "AVML-GUEST-DONE":
                if iomem is None:
                    raise Failure(3, "guest said DONE without sending /proc/iomem")
                log("guest done" + (f" (steps took {time.monotonic() - t_iomem:.2f}s)" if t_iomem else ""))
                return finish(qmp, iomem, args)
        now = time.monotonic()
        if not pid_alive(args.pid):
            raise Failure(5, "QEMU exited before the guest was done (kernel panic? see console.log)")
        if iomem is None and now > boot_deadline:
            raise Failure(4, f"guest did not come up within {args.boot_timeout:.0f}s (see console.log)")
        if now > deadline:
            raise Failure(4, f"guest not done within {args.timeout:.0f}s (see console.log)")
        time.sleep(0.05)


def snapshot(qmp, iomem, name, args):
    """Pages of the running guest's System RAM, as digests: stop, dump, digest, continue."""
    if not name.replace("-", "").replace("_", "").isalnum():
        raise Failure(3, f"bad snapshot name {name!r}")
    started = time.monotonic()
    qmp.cmd("stop")
    folder = os.path.join(args.out, "snapshots")
    os.makedirs(folder, exist_ok=True)
    dump = os.path.abspath(os.path.join(folder, f".{name}.bin"))
    digests = bytearray()
    for start, end in system_ram_ranges(iomem):
        size = end - start + 1
        qmp.cmd("pmemsave", timeout=max(120.0, size / 50e6), val=start, size=size, filename=dump)
        with open(dump, "rb") as f:
            while page := f.read(4096):
                digests += hashlib.blake2b(page, digest_size=8).digest()
        os.unlink(dump)
    qmp.cmd("cont")
    with open(os.path.join(folder, f"{name}.pages"), "wb") as f:
        f.write(digests)
    log(f"snapshot {name}: {len(digests) // 8} pages, guest stopped {time.monotonic() - started:.2f}s")


def finish(qmp, iomem, args):
    qmp.cmd("stop")
    st = qmp.cmd("query-status")
    if st.get("running") or st.get("status") != "paused":
        raise Failure(6, f"guest not paused after stop: {st}")
    log("guest stopped")
    truth = os.path.join(args.out, "truth")
    os.makedirs(truth, exist_ok=True)
    rows = []
    for start, end in system_ram_ranges(iomem):
        name = f"ram-{start:016x}-{end:016x}.bin"
        path = os.path.abspath(os.path.join(truth, name))
        size = end - start + 1
        qmp.cmd("pmemsave", timeout=max(120.0, size / 50e6), val=start, size=size, filename=path)
        got = os.path.getsize(path)
        if got != size:
            raise Failure(6, f"pmemsave wrote {got} bytes to {path}, expected {size}")
        rows.append(f"{start:#x}\t{end:#x}\t{name}\n")
    with open(os.path.join(truth, "ranges.tsv"), "w") as f:
        f.write("start\tend\tfile\n")
        f.writelines(rows)
    log(f"ground truth saved: {len(rows)} System RAM ranges in {truth}")
    try:
        qmp.cmd("quit", timeout=10)
    except Failure:
        pass  # QEMU may close the socket before answering
    log("QEMU told to quit")
    return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--qmp", required=True)
    ap.add_argument("--signal", required=True)
    ap.add_argument("--pid", type=int, required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--boot-timeout", type=float, default=180)
    ap.add_argument("--timeout", type=float, default=900)
    args = ap.parse_args()
    try:
        return run(args)
    except Failure as e:
        print(f"guestctl: error: {e}", file=sys.stderr, flush=True)
        return e.code


if __name__ == "__main__":
    sys.exit(main())
