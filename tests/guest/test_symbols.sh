#!/usr/bin/env bash
# test_symbols.sh CACHE_DIR AVML_STATIC_BINARY [OUT]
#
# `avml symbols` inside the Debian 6.1 guest, checked with Volatility 3 on images
# captured right after it: the table must let Volatility find the kernel
# (banners.Banners), list the processes /proc showed just before and after the
# capture (linux.pslist.PsList: pid, ppid, comm), the modules of /proc/modules
# (linux.lsmod.Lsmod) and the command lines (linux.psaux.PsAux). The guest's BTF,
# kallsyms and banner are copied out, and the table made from them offline on the
# host must match bpftool's reading of the same BTF (tests/interop/test_btf_bpftool.py).
# Details in check_symbols.py.
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
mkfifo /tmp/avml-fifo && cd / && { sleep 100000 & sh -c 'read line < /tmp/avml-fifo' & nc -l -p 4444 -e cat & } </dev/null >/dev/null 2>&1; echo started
sh /test/snapshot.sh sym/before-lime
avml acquire sym/mem.lime
sh /test/snapshot.sh sym/after-lime
avml acquire --compress sym/mem.avml
sh /test/snapshot.sh sym/after-avml
STEPS
AVML_GUEST_SMP=${AVML_GUEST_SMP:-2} AVML_GUEST_EXTRA_FILES="$HERE/snapshot.sh:/test/snapshot.sh" \
    "$HERE/run.sh" "$CACHE_DIR" "$AVML" "$OUT" "$steps"
rm -f "$steps"
rm -rf "$OUT/truth"  # QEMU's RAM dump: not needed here

AVML_BIN=$AVML timeout "${AVML_SYMBOLS_CHECK_TIMEOUT:-1800}" python3 "$HERE/check_symbols.py" "$OUT"
