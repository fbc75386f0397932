#!/usr/bin/env bash
# test_symbols.sh CACHE_DIR AVML_STATIC_BINARY [OUT]
#
# `avml symbols` inside the guest (any kernel tests/guest/setup.sh prepared: 5.10, 6.1, 6.12),
# checked with Volatility 3 on images captured right after it: the table must let Volatility find the kernel
# (banners.Banners), list the processes /proc showed just before and after the
# capture (linux.pslist.PsList: pid, ppid, comm), the modules of /proc/modules
# (linux.lsmod.Lsmod) and the command lines (linux.psaux.PsAux). The guest's BTF,
# kallsyms and banner are copied out, and the table made from them offline on the
# host must match bpftool's reading of the same BTF (tests/interop/test_btf_bpftool.py).
# Details in check_symbols.py. Then the whole table against the reference table of the same
# build (testdata/isf) with compare_isf.py.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
[ $# -ge 2 ] || { echo "usage: $0 CACHE_DIR AVML_STATIC_BINARY [OUT]" >&2; exit 2; }
CACHE_DIR=$1 AVML=$2
OUT=${3:-$(mktemp -d /tmp/avml-symbols-XXXXXX)}
rm -rf "$OUT"

steps=$(mktemp)
cat > "$steps" <<'STEPS'
mkdir -p sym && cat /sys/kernel/btf/vmlinux > sym/btf && cat /proc/kallsyms > sym/kallsyms && cat /proc/version > sym/version
avml symbols sym/guest.isf.json.gz
# Long-lived processes with arguments, for pslist and psaux, outside /data (which must unmount).
# None forks while memory is read: a forking process's pages change under the capture (smear).
# They hold what lsof and sockstat must find: a listening and two connected TCP sockets (nc),
# a pipe (sleep | nc), a fifo, a file on tmpfs (fd 3).
mkfifo /tmp/avml-fifo && echo held > /tmp/avml-held && cd / && { sleep 100000 & sh -c 'exec 3</tmp/avml-held; read line < /tmp/avml-fifo' & nc -l -p 4444 -e cat & } </dev/null >/dev/null 2>&1; echo started
sleep 1; cd / && { sleep 100000 | nc 127.0.0.1 4444 & } </dev/null >/dev/null 2>&1; sleep 1; echo connected
# What more plugins look for (plugin_matrix.py's WORKLOAD_PLUGINS): workload.c's eBPF program on a perf
# event, writable and executable mapping and traced child; bash (dynamic: its libc's link_map) with a
# history line (`set -H` makes bash stamp it "#TIME", which Volatility looks for); the function tracer on
# vfs_read and sched_switch's event, recording off; speakup (loaded at boot) and vesafb are in the kernel.
cd / && { /test/workload > /tmp/workload.out 2>&1 & bash -c 'set -H; history -s "echo avml-history-test"; sleep 100000 & wait' & } </dev/null >/dev/null 2>&1; sleep 1; cat /tmp/workload.out; grep -q ready /tmp/workload.out
mount -t tracefs nodev /sys/kernel/tracing && cd /sys/kernel/tracing && echo 0 > tracing_on && echo vfs_read > set_ftrace_filter && echo function > current_tracer && echo 1 > events/sched/sched_switch/enable && echo tracing
avml check sym/mem.lime
sh /test/snapshot.sh sym/before-lime
avml acquire sym/mem.lime
sh /test/snapshot.sh sym/after-lime
avml acquire --compress sym/mem.avml
sh /test/snapshot.sh sym/after-avml
STEPS
workload=$(mktemp -d)
gcc -static -O2 -Wall -Werror -o "$workload/workload" "$HERE/workload.c"
libraries=$(ldd /bin/bash | awk '$3 ~ /^\// { printf "%s:%s ", $3, $3 } $1 ~ /^\/.*ld-linux/ { printf "%s:%s ", $1, $1 }')
AVML_GUEST_SMP=${AVML_GUEST_SMP:-2} AVML_GUEST_MODULES=speakup AVML_GUEST_QEMU_ARGS="-vga std" AVML_GUEST_APPEND="vga=0x318" \
    AVML_GUEST_EXTRA_FILES="$HERE/snapshot.sh:/test/snapshot.sh $workload/workload:/test/workload /bin/bash:/bin/bash $libraries" \
    "$HERE/run.sh" "$CACHE_DIR" "$AVML" "$OUT" "$steps"
rm -rf "$steps" "$workload"
fail() { echo "test_symbols: FAIL: $*" >&2; exit 1; }

# The default capture (kcore on every kernel here) against QEMU's dump of the guest's RAM,
# taken after the steps; then both images against their manifests' SHA-256.
python3 "$HERE/compare.py" --iomem "$OUT/iomem.txt" --truth "$OUT/truth" --image "$OUT/sym/mem.lime" \
    --zero-blocks "$OUT/sym/mem.lime.json" --require-kernel-equal --min-coverage 0.999 \
    || fail "mem.lime does not match the guest's RAM"
rm -rf "$OUT/truth"
for image in mem.lime mem.avml; do
    "$AVML" verify "$OUT/sym/$image" || fail "avml verify $image"
done
echo "test_symbols: mem.lime matches the guest's kernel code and rodata; avml verify passes on mem.lime and mem.avml"

# `avml check` named the source the capture then read.
check_step=$(grep -lx "avml check sym/mem.lime" "$OUT"/guest-run/steps/*.cmd) || fail "no avml check step"
checked=$(sed -n 's/^avml check: acquire would read //p' "${check_step%.cmd}.stdout")
read_from=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["source"])' "$OUT/sym/mem.lime.json")
[ -n "$checked" ] && [ "$checked" = "$read_from" ] || fail "avml check said '$checked', the capture read '$read_from': $(cat "${check_step%.cmd}.stdout")"
echo "test_symbols: avml check said acquire would read $checked, and it did"

# The capture's speed: System RAM captured (zero blocks included) over the time avml's summary gives.
python3 - "$OUT" <<'PY' || fail "no capture speed: the summary line or the manifest is missing"
import json, re, sys
from pathlib import Path
out = Path(sys.argv[1])
release = (out / "sym" / "version").read_text().split()[2]
speeds = 0
for step in sorted((out / "guest-run" / "steps").glob("*.cmd")):
    command = step.read_text().strip()
    match = re.fullmatch(r"avml acquire (--compress )?sym/(mem\.\w+)", command)
    if not match:
        continue
    summary = re.search(r"avml: captured .* from (\S+) in ([0-9.]+) s", step.with_suffix(".stderr").read_text())
    manifest = json.loads((out / "sym" / f"{match.group(2)}.json").read_text())
    size = sum(int(r["end"], 16) + 1 - int(r["start"], 16) for r in manifest["ranges"]["captured"]) / 2**20
    seconds = float(summary.group(2))
    print(f"test_symbols: speed on {release}: `{command}` captured {size:.1f} MiB of System RAM from "
          f"{summary.group(1)} in {seconds:.1f} s: {size / seconds:.1f} MiB/s")
    speeds += 1
sys.exit(0 if speeds == 2 else 1)
PY

AVML_BIN=$AVML timeout "${AVML_SYMBOLS_CHECK_TIMEOUT:-1800}" python3 "$HERE/check_symbols.py" "$OUT"

# The whole table the guest made, against the one Volatility's dwarf2json made from Debian's
# debug vmlinux of this very build (testdata/isf): every symbol's address and type, every
# struct's size and members, enums, base types (issue 24). What differs where Volatility reads
# fails; what it cannot read differently is listed with why (compare_isf.py).
release=$(awk '{ print $3 }' "$OUT/sym/version")
reference="$HERE/testdata/isf/debian-$release.json.xz"
[ -f "$reference" ] || fail "no reference table for kernel $release in $HERE/testdata/isf (its README says which builds)"
if python3 "$HERE/compare_isf.py" "$OUT/sym/guest.isf.json.gz" "$reference" --kallsyms "$OUT/sym/kallsyms" \
    --json "$OUT/compare_isf.json" > "$OUT/compare_isf.txt" 2>&1; then
    sed -n 's/^/test_symbols: compare_isf: /p' <(grep -E "^(symbols|user types|enums|base types):" "$OUT/compare_isf.txt")
    echo "test_symbols: the table made in the $release guest gives Volatility what the reference table does (details: $OUT/compare_isf.txt)"
else
    tail -n 30 "$OUT/compare_isf.txt" >&2
    fail "the table made in the $release guest differs from the reference table where Volatility reads (see $OUT/compare_isf.txt)"
fi

# The plugins the workload is for (plugin_matrix.py's WORKLOAD_PLUGINS), with our table and with the
# reference table: each must give rows, the same with both. About 5 minutes; AVML_SYMBOLS_WORKLOAD=0 skips
# it (scripts/test runs it on the kernels of AVML_WORKLOAD_KERNELS, to keep CI under an hour).
if [ "${AVML_SYMBOLS_WORKLOAD:-1}" = 0 ]; then
    echo "test_symbols: workload plugins not run on $release (AVML_SYMBOLS_WORKLOAD=0)"
elif timeout "${AVML_SYMBOLS_CHECK_TIMEOUT:-1800}" python3 "$HERE/plugin_matrix.py" "$OUT" --workload \
    --markdown "$OUT/workload_plugins.md" > "$OUT/workload_plugins.txt" 2>&1; then
    echo "test_symbols: every workload plugin gives the same rows, at least one, with the $release guest's table as with the reference"
else
    sed -n 's/^plugin_matrix: //p' "$OUT/workload_plugins.txt" >&2
    fail "a workload plugin gives no rows, fails or differs on $release (see $OUT/workload_plugins.md)"
fi
