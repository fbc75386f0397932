#!/usr/bin/env bash
# run.sh CACHE_DIR AVML_BINARY OUT_DIR [SCRIPT]
#
# Boots the Debian kernel setup.sh prepared in CACHE_DIR in QEMU (512 MiB RAM) with
# a busybox initramfs holding AVML_BINARY as /bin/avml, runs SCRIPT inside the
# guest, then takes QEMU's own dump of the guest's System RAM as ground truth
# and copies the guest's output files out. An amd64 kernel boots in
# qemu-system-x86_64 (pc), an arm64 one in qemu-system-aarch64 (virt, a Neoverse N1
# as on AWS Graviton2, console on ttyAMA0, signal port on a virtio console).
#
# SCRIPT is a shell snippet; every non-empty, non-comment line is one step
# (a line ending in "\" continues on the next).  Each step runs as
# `sh step.sh` under the guest's busybox, cwd = the data disk (/data, ext4,
# 3 GiB), stdin /dev/null, PATH=/bin:/sbin:/usr/bin:/usr/sbin.  Its exit
# code, stdout and stderr go to guest-run/steps/NNN.{rc,stdout,stderr}
# and guest-run/steps.tsv on the data disk.  Default SCRIPT:
#     cat /proc/iomem > iomem.txt; dd if=/proc/kcore of=kcore-head bs=4096 count=4
#
# OUT_DIR (created; must be empty) receives:
#   iomem.txt          the guest's /proc/iomem (read as root: real addresses)
#   truth/             ram-<start>-<end>.bin per top-level "System RAM" range
#                      (QMP pmemsave, guest stopped after the steps) + ranges.tsv
#   <files>            everything the steps wrote to the data disk
#   guest-run/         iomem.txt, uname.txt, steps.tsv, steps/NNN.*, dmesg.txt
#   logs/              console.log (ttyS0), signal.log (ttyS1), qemu.log,
#                      qemu-cmdline.txt, guestctl.log, iomem-signal.txt,
#                      timing.txt, e2fsck.log (after a failure)
#
# Environment knobs:
#   AVML_GUEST_TIMEOUT       whole run limit, seconds (default 900)
#   AVML_GUEST_BOOT_TIMEOUT  until the guest is up, seconds (default 180)
#   AVML_GUEST_STEP_TIMEOUT  per-step limit inside the guest (default 0: none)
#   AVML_GUEST_MEM           guest RAM (default 512M)
#   AVML_GUEST_SMP           vCPUs (default 1)
#   AVML_GUEST_DISK_SIZE     data disk size (default 3G, sparse)
#   AVML_GUEST_ACCEL         tcg | kvm (default: kvm only for an amd64 kernel, if kvm_intel/
#                            kvm_amd is loaded and /dev/kvm is usable, else tcg)
#   AVML_GUEST_APPEND        extra kernel command-line arguments
#   AVML_GUEST_EXTRA_FILES   "HOSTPATH:GUESTPATH ..." files to add to the initramfs
#   AVML_GUEST_MODULES       more kernel modules to load at boot (names, with their dependencies)
#   AVML_GUEST_QEMU_ARGS     extra QEMU arguments (split on blanks), e.g. "-vga std"
#   AVML_GUEST_REQUIRE_STEPS_OK=1  exit 1 if any step's exit code is non-zero
#   AVML_GUEST_KEEP_WORK=1   keep the work dir (data disk image, initrd) in
#                            CACHE_DIR/runs/ (default: deleted, also on failure;
#                            on failure the disk's files are still copied out)
#
# Exit status: 0 success; 1 usage/setup/step error; 3 guest reported a
# failure; 4 timeout; 5 QEMU died; 6 QMP/ground-truth error; 7 copy-out error.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
die() { echo "run.sh: error: $1" >&2; exit "${2:-1}"; }
log() { echo "run.sh: $*" >&2; }

[ $# -ge 3 ] && [ $# -le 4 ] || die "usage: $0 CACHE_DIR AVML_BINARY OUT_DIR [SCRIPT]"
CACHE_DIR=$1 AVML_BIN=$2 OUT_DIR=$3 SCRIPT=${4:-}
TIMEOUT=${AVML_GUEST_TIMEOUT:-900}
BOOT_TIMEOUT=${AVML_GUEST_BOOT_TIMEOUT:-180}
STEP_TIMEOUT=${AVML_GUEST_STEP_TIMEOUT:-0}
MEM=${AVML_GUEST_MEM:-512M}
SMP=${AVML_GUEST_SMP:-1}
DISK_SIZE=${AVML_GUEST_DISK_SIZE:-3G}

T_START=$(date +%s.%N)
elapsed() { awk -v a="$T_START" -v b="$(date +%s.%N)" 'BEGIN { printf "%.2f", b - a }'; }

[ -f "$AVML_BIN" ] || die "AVML_BINARY $AVML_BIN does not exist"
[ -z "$SCRIPT" ] || [ -f "$SCRIPT" ] || die "SCRIPT $SCRIPT does not exist"
mkdir -p "$CACHE_DIR"
CACHE_DIR=$(cd "$CACHE_DIR" && pwd)
AVML_BIN=$(cd "$(dirname "$AVML_BIN")" && pwd)/$(basename "$AVML_BIN")
mkdir -p "$OUT_DIR"
OUT_DIR=$(cd "$OUT_DIR" && pwd)
[ -z "$(ls -A "$OUT_DIR")" ] || die "OUT_DIR $OUT_DIR is not empty"
mkdir -p "$OUT_DIR/logs"

if [ ! -f "$CACHE_DIR/kernel.env" ]; then
    log "no kernel in $CACHE_DIR yet: running setup.sh"
    "$HERE/setup.sh" "$CACHE_DIR"
fi
# shellcheck disable=SC1091
. "$CACHE_DIR/kernel.env"
[ -f "$VMLINUZ" ] && [ -d "$MODDIR" ] || die "kernel missing in $CACHE_DIR: run setup.sh $CACHE_DIR"
ARCH=${ARCH:-amd64}  # kernel.env of a cache made before arm64 guests
case "$ARCH" in
    amd64) QEMU_BINARY=qemu-system-x86_64 ;;
    arm64) QEMU_BINARY=qemu-system-aarch64 ;;
    *) die "$CACHE_DIR/kernel.env: unknown ARCH $ARCH" ;;
esac
for b in "$QEMU_BINARY" busybox cpio python3; do
    command -v "$b" >/dev/null 2>&1 || die "$b not found: run setup.sh $CACHE_DIR"
done
export PATH="$PATH:/sbin:/usr/sbin"
for b in mke2fs debugfs; do
    command -v "$b" >/dev/null 2>&1 || die "$b not found: run setup.sh $CACHE_DIR"
done
BUSYBOX=${BUSYBOX:-$(command -v busybox)}
[ -x "$BUSYBOX" ] || die "the guest's busybox $BUSYBOX is missing: run setup.sh $CACHE_DIR"

# A dynamically linked AVML_BINARY cannot run in the initramfs (no libc there).
if python3 - "$AVML_BIN" <<'PY'
import struct, sys
d = open(sys.argv[1], "rb").read(1 << 16)
if d[:4] != b"\x7fELF" or d[4] != 2:
    sys.exit(1)
phoff, = struct.unpack_from("<Q", d, 0x20)
phentsize, phnum = struct.unpack_from("<HH", d, 0x36)
for i in range(phnum):
    if struct.unpack_from("<I", d, phoff + i * phentsize)[0] == 3:  # PT_INTERP
        sys.exit(1)
PY
then :; else
    log "warning: $AVML_BIN is not a static ELF64 executable; it will probably not run in the guest"
fi

# ---------------------------------------------------------------------------
# Base initramfs (busybox + modules), cached per kernel/busybox/module list.
# shellcheck disable=SC2206  # a list of names
MODULES=(virtio_pci virtio_blk ext4 ${AVML_GUEST_MODULES:-})
# arm64's signal port is a virtio console, a module on 5.10 (built in on 6.12: skipped).
[ "$ARCH" = amd64 ] || MODULES=(virtio_console "${MODULES[@]}")
key=$( { echo "$KVER"; echo "${MODULES[*]}"; sha256sum "$BUSYBOX" "$HERE/moddeps.py"; } | sha256sum | cut -c1-16)
BASE_CPIO="$CACHE_DIR/initramfs/base-$KVER-$key.cpio"
if [ ! -f "$BASE_CPIO" ]; then
    log "building base initramfs $BASE_CPIO"
    mkdir -p "$CACHE_DIR/initramfs"
    stage=$(mktemp -d "$CACHE_DIR/initramfs/stage.XXXXXX")
    mkdir -p "$stage"/{bin,sbin,dev,proc,sys,tmp,data,root,etc,test/steps,usr/bin,usr/sbin}
    cp "$BUSYBOX" "$stage/bin/busybox"
    ln -s busybox "$stage/bin/sh"
    mknod -m 600 "$stage/dev/console" c 5 1 2>/dev/null || true
    echo "127.0.0.1 localhost" > "$stage/etc/hosts"
    echo "root:x:0:0:root:/root:/bin/sh" > "$stage/etc/passwd"
    echo "root:x:0:" > "$stage/etc/group"
    python3 "$HERE/moddeps.py" "$MODDIR" "${MODULES[@]}" > "$stage/load.list.tmp" \
        || { rm -rf "$stage"; die "module dependency resolution failed"; }
    mkdir -p "$stage/lib/modules/$KVER"
    while read -r _kind rel; do
        mkdir -p "$stage/lib/modules/$KVER/$(dirname "$rel")"
        cp "$MODDIR/$rel" "$stage/lib/modules/$KVER/$rel"
    done < "$stage/load.list.tmp"
    log "modules (load order): $(awk '{ sub(".*/", "", $2); printf "%s%s ", $2, ($1 == "soft" ? "(optional)" : "") }' "$stage/load.list.tmp")"
    mv "$stage/load.list.tmp" "$stage/lib/modules/load.list"
    cp "$MODDIR/modules.dep" "$MODDIR/modules.alias" "$stage/lib/modules/$KVER/" 2>/dev/null || true
    (cd "$stage" && find . -mindepth 1 | LC_ALL=C sort | cpio --quiet -o -H newc -R 0:0) > "$BASE_CPIO.tmp"
    mv "$BASE_CPIO.tmp" "$BASE_CPIO"
    rm -rf "$stage"
fi

# ---------------------------------------------------------------------------
# Per-run work dir: initramfs overlay (init, avml, steps) and data disk.
mkdir -p "$CACHE_DIR/runs"
WORK=$(mktemp -d "$CACHE_DIR/runs/run.XXXXXX")
SOCKDIR=$(mktemp -d /tmp/avml-guest.XXXXXX)   # short path: unix sockets max 108 chars
QMP_SOCK="$SOCKDIR/qmp.sock"
QEMU_PID=
qemu_running() { # alive and not a zombie
    [ -n "$QEMU_PID" ] && kill -0 "$QEMU_PID" 2>/dev/null \
        && [ "$(awk '{ print $3 }' "/proc/$QEMU_PID/stat" 2>/dev/null)" != Z ]
}
stop_qemu() {
    if qemu_running; then
        log "killing QEMU (pid $QEMU_PID)"
        kill "$QEMU_PID" 2>/dev/null || true
        for _ in $(seq 50); do qemu_running || break; sleep 0.1; done
        kill -9 "$QEMU_PID" 2>/dev/null || true
    fi
    if [ -n "$QEMU_PID" ]; then
        wait "$QEMU_PID" 2>/dev/null || true
        QEMU_PID=
    fi
}
# shellcheck disable=SC2329  # invoked by the EXIT trap
cleanup() {
    local rc=$?
    stop_qemu
    rm -rf "$SOCKDIR"
    if [ "${AVML_GUEST_KEEP_WORK:-0}" = 1 ]; then
        log "work dir kept: $WORK"
    else
        rm -rf "$WORK"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

ov="$WORK/overlay"
mkdir -p "$ov/bin" "$ov/test/steps"
cp "$HERE/guest-init.sh" "$ov/init"
chmod 755 "$ov/init"
cp "$AVML_BIN" "$ov/bin/avml"
chmod 755 "$ov/bin/avml"
{
    echo "STEP_TIMEOUT=$STEP_TIMEOUT"
    [ "$ARCH" = amd64 ] || echo "SIG=/dev/hvc0"
} > "$ov/test/config"
for spec in ${AVML_GUEST_EXTRA_FILES:-}; do
    src=${spec%%:*} dst=${spec#*:}
    [ -f "$src" ] && [ "${dst#/}" != "$dst" ] || die "bad AVML_GUEST_EXTRA_FILES entry $spec (want HOSTFILE:/abs/guest/path)"
    mkdir -p "$ov$(dirname "$dst")"
    cp "$src" "$ov$dst"
done
if [ -n "$SCRIPT" ]; then
    cat "$SCRIPT"
else
    echo 'cat /proc/iomem > iomem.txt; dd if=/proc/kcore of=kcore-head bs=4096 count=4'
fi | awk -v dir="$ov/test/steps" '
    BEGIN { n = 0; cur = "" }
    {
        sub(/\r$/, "")
        if (cur == "" && ($0 ~ /^[ \t]*$/ || $0 ~ /^[ \t]*#/)) next
        if ($0 ~ /\\$/) { cur = cur $0 "\n"; next }
        cur = cur $0
        f = sprintf("%s/%03d.sh", dir, ++n)
        print cur > f
        close(f)
        cur = ""
    }
    END { if (cur != "") { f = sprintf("%s/%03d.sh", dir, ++n); print cur > f; close(f) } }'
nsteps=$(find "$ov/test/steps" -name '*.sh' | wc -l)
[ "$nsteps" -gt 0 ] || die "SCRIPT has no commands"
(cd "$ov" && find . -mindepth 1 | LC_ALL=C sort | cpio --quiet -o -H newc -R 0:0) > "$WORK/overlay.cpio"
cat "$BASE_CPIO" "$WORK/overlay.cpio" > "$WORK/initrd.cpio"

DISK="$WORK/data.img"
truncate -s "$DISK_SIZE" "$DISK"
mke2fs -q -t ext4 -F -L avmldata -E lazy_itable_init=0,lazy_journal_init=0 "$DISK" \
    || die "mke2fs failed"

# ---------------------------------------------------------------------------
ACCEL=${AVML_GUEST_ACCEL:-}
if [ -z "$ACCEL" ]; then
    ACCEL=tcg
    if [ "$ARCH" = amd64 ] && { [ -d /sys/module/kvm_intel ] || [ -d /sys/module/kvm_amd ]; } \
        && [ -r /dev/kvm ] && [ -w /dev/kvm ]; then
        ACCEL=kvm
    fi
fi
# shellcheck disable=SC2054  # the comma belongs to the -cpu value
case "$ARCH-$ACCEL" in
    amd64-kvm) ACCEL_ARGS=(-accel kvm -cpu host) ;;
    amd64-tcg) ACCEL_ARGS=(-accel tcg -cpu max,la57=off) ;;
    arm64-tcg) ACCEL_ARGS=(-accel tcg -cpu neoverse-n1) ;;
    *) die "AVML_GUEST_ACCEL must be tcg (or kvm for amd64), not $ACCEL" ;;
esac

# shellcheck disable=SC2054  # commas belong to QEMU's option values
if [ "$ARCH" = amd64 ]; then
    CONSOLE=ttyS0
    MACHINE=(-machine pc -serial "file:$OUT_DIR/logs/console.log" -serial "file:$OUT_DIR/logs/signal.log")
else
    # virt has one UART: the signal port is a virtio console (hvc0).
    CONSOLE=ttyAMA0
    MACHINE=(-machine virt -serial "file:$OUT_DIR/logs/console.log"
        -device virtio-serial-pci -chardev "file,id=signal,path=$OUT_DIR/logs/signal.log"
        -device virtconsole,chardev=signal)
fi
APPEND="console=$CONSOLE,115200 panic=-1 loglevel=6 ${AVML_GUEST_APPEND:-}"
# shellcheck disable=SC2206  # AVML_GUEST_QEMU_ARGS splits on blanks
QEMU=("$QEMU_BINARY" -nodefaults -no-user-config -no-reboot
    "${MACHINE[@]}" "${ACCEL_ARGS[@]}" -m "$MEM" -smp "$SMP"
    -display none -nic none ${AVML_GUEST_QEMU_ARGS:-}
    -kernel "$VMLINUZ" -initrd "$WORK/initrd.cpio" -append "$APPEND"
    -drive "file=$DISK,format=raw,if=virtio,cache=unsafe"
    -qmp "unix:$QMP_SOCK,server=on,wait=off")
printf '%q ' "${QEMU[@]}" > "$OUT_DIR/logs/qemu-cmdline.txt"
T_PREP=$(elapsed)
log "kernel $KVER, accel $ACCEL, $MEM RAM, $nsteps step(s); prepared in ${T_PREP}s; booting"
"${QEMU[@]}" > "$OUT_DIR/logs/qemu.log" 2>&1 &
QEMU_PID=$!

set +e
python3 "$HERE/guestctl.py" --qmp "$QMP_SOCK" --signal "$OUT_DIR/logs/signal.log" \
    --pid "$QEMU_PID" --out "$OUT_DIR" \
    --boot-timeout "$BOOT_TIMEOUT" --timeout "$TIMEOUT" 2>&1 | tee "$OUT_DIR/logs/guestctl.log" >&2
ctl=${PIPESTATUS[0]}
set -e
if [ "$ctl" -ne 0 ]; then
    echo "---- last lines of $OUT_DIR/logs/console.log ----" >&2
    tail -n 25 "$OUT_DIR/logs/console.log" >&2 || true
    echo "---- $OUT_DIR/logs/qemu.log ----" >&2
    tail -n 10 "$OUT_DIR/logs/qemu.log" >&2 || true
    echo "----" >&2
    stop_qemu
    # Best effort: replay the journal and copy out whatever the guest wrote.
    e2fsck -fy "$DISK" > "$OUT_DIR/logs/e2fsck.log" 2>&1 || true
    debugfs -R "rdump / $OUT_DIR" "$DISK" > /dev/null 2>&1 || true
    rmdir "$OUT_DIR/lost+found" 2>/dev/null || true
    [ -d "$OUT_DIR/guest-run" ] && log "partial guest results copied to $OUT_DIR/guest-run"
    die "guest run failed (guestctl exit $ctl, after $(elapsed)s)" "$ctl"
fi

# QEMU was told to quit; give it 30 s.
for _ in $(seq 300); do qemu_running || break; sleep 0.1; done
qemu_running && log "QEMU did not quit within 30 s"
stop_qemu
T_VM=$(elapsed)

# ---------------------------------------------------------------------------
# Copy the data disk's files out (no mount needed).
dbg=$(debugfs -R "rdump / $OUT_DIR" "$DISK" 2>&1) || die "debugfs rdump failed: $dbg" 7
if grep -v '^debugfs [0-9]' <<<"$dbg" | grep -q .; then
    log "debugfs said: $dbg"
fi
rmdir "$OUT_DIR/lost+found" 2>/dev/null || true
[ -f "$OUT_DIR/guest-run/steps.tsv" ] || die "guest-run/steps.tsv missing after rdump" 7
# A step may have written its own iomem.txt at the top of the disk: keep ours.
if ! cmp -s "$OUT_DIR/logs/iomem-signal.txt" "$OUT_DIR/iomem.txt"; then
    log "warning: the guest's own top-level iomem.txt differs; replaced by the signal-port copy"
    cp "$OUT_DIR/logs/iomem-signal.txt" "$OUT_DIR/iomem.txt"
fi
cmp -s "$OUT_DIR/guest-run/iomem.txt" "$OUT_DIR/iomem.txt" \
    || log "warning: guest-run/iomem.txt differs from the iomem sent on the signal port"
T_END=$(elapsed)

{
    echo "prepare_s $T_PREP"
    echo "vm_s $(awk -v a="$T_VM" -v b="$T_PREP" 'BEGIN { printf "%.2f", a - b }')"
    echo "copy_out_s $(awk -v a="$T_END" -v b="$T_VM" 'BEGIN { printf "%.2f", a - b }')"
    echo "total_s $T_END"
} > "$OUT_DIR/logs/timing.txt"

bad=0
while IFS=$'\t' read -r step rc secs; do
    [ "$step" = step ] && continue
    cmdline=$(tr '\n' ' ' < "$OUT_DIR/guest-run/steps/$step.cmd" | cut -c1-100)
    log "step $step rc=$rc ${secs}s: $cmdline"
    if [ "$rc" != 0 ]; then
        bad=1
        sed 's/^/run.sh:     stderr: /' "$OUT_DIR/guest-run/steps/$step.stderr" | tail -n 5 >&2
    fi
done < "$OUT_DIR/guest-run/steps.tsv"
log "done in ${T_END}s (prepare ${T_PREP}s, VM $(sed -n 's/^vm_s //p' "$OUT_DIR/logs/timing.txt")s); results in $OUT_DIR"
if [ "$bad" -ne 0 ] && [ "${AVML_GUEST_REQUIRE_STEPS_OK:-0}" = 1 ]; then
    die "some steps failed"
fi
exit 0
