#!/usr/bin/env bash
# selftest.sh CACHE_DIR [OUT_DIR]
#
# End-to-end check of the guest harness without avml: compiles
# testdata/kcore2lime.c statically (needs gcc/cc and libc.a), boots the guest
# with it as /bin/avml, makes a full and a kernel-only LiME image from
# /proc/kcore inside the guest, then checks with compare.py that
#   * both images have Kernel code/rodata byte-equal to QEMU's dump,
#   * the full image covers >= 99% of System RAM,
#   * a copy of the full image with one kernel-code byte flipped FAILS,
#   * the recorded exit code of a failing step is non-zero.
# OUT_DIR defaults to a temp dir that is removed on success.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
die() { echo "selftest.sh: FAIL: $1" >&2; exit 1; }
log() { echo "selftest.sh: $*" >&2; }

[ $# -ge 1 ] && [ $# -le 2 ] || { echo "usage: $0 CACHE_DIR [OUT_DIR]" >&2; exit 2; }
CACHE_DIR=$1
if [ $# -eq 2 ]; then OUT=$2; KEEP=1; else OUT=$(mktemp -d /tmp/avml-selftest.XXXXXX); KEEP=0; fi
TMP=$(mktemp -d /tmp/avml-selftest-bin.XXXXXX)
trap 'rm -rf "$TMP"' EXIT

"$HERE/setup.sh" "$CACHE_DIR"
CC=${CC:-$(command -v gcc || command -v cc || true)}
if [ -z "$CC" ] || [ ! -f /usr/lib/x86_64-linux-gnu/libc.a ]; then
    log "installing gcc and libc6-dev (for a static kcore2lime)"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq gcc libc6-dev >&2 \
        || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq gcc libc6-dev >&2; } \
        || die "cannot install gcc libc6-dev"
    CC=$(command -v gcc)
fi
"$CC" -static -O2 -Wall -o "$TMP/kcore2lime" "$HERE/testdata/kcore2lime.c" \
    || die "cannot build a static kcore2lime (is libc6-dev installed?)"

cat > "$TMP/script" <<'SCRIPT'
# full image and kernel-only image through /proc/kcore
avml full.lime
avml kernel.lime kernel
# a failing step: its exit code must be recorded
ls /nonexistent
SCRIPT

rm -rf "$OUT"
"$HERE/run.sh" "$CACHE_DIR" "$TMP/kcore2lime" "$OUT" "$TMP/script"

[ "$(cat "$OUT/guest-run/steps/001.rc")" = 0 ] || die "step 1 (full image) failed"
[ "$(cat "$OUT/guest-run/steps/002.rc")" = 0 ] || die "step 2 (kernel image) failed"
[ "$(cat "$OUT/guest-run/steps/003.rc")" != 0 ] || die "failing step 3 recorded exit code 0"
grep -q nonexistent "$OUT/guest-run/steps/003.stderr" || die "stderr of step 3 not recorded"

C=(python3 "$HERE/compare.py" --iomem "$OUT/iomem.txt" --truth "$OUT/truth")
"${C[@]}" --image "$OUT/full.lime" --require-kernel-equal --min-coverage 0.99 --json "$OUT/full.json" \
    || die "full image does not match"
"${C[@]}" --image "$OUT/kernel.lime" --require-kernel-equal || die "kernel image does not match"

# negative check: flip one byte in the middle of Kernel code
HERE="$HERE" python3 - "$OUT/iomem.txt" "$OUT/full.lime" "$OUT/bad.lime" <<'PY'
import os, shutil, sys
sys.path.insert(0, os.environ["HERE"])
import compare
iomem, src, dst = sys.argv[1:]
k = [e for e in compare.kernel_ranges(compare.load_iomem(iomem)) if e.name == "Kernel code"][0]
addr = (k.start + k.end) // 2
shutil.copyfile(src, dst)
for r in compare.read_lime(dst):
    if r.start <= addr <= r.end:
        with open(dst, "r+b") as f:
            f.seek(r.offset + addr - r.start)
            b = f.read(1)
            f.seek(-1, 1)
            f.write(bytes([b[0] ^ 0xFF]))
        break
else:
    sys.exit("kernel code not in image")
PY
if "${C[@]}" --image "$OUT/bad.lime" --require-kernel-equal --quiet; then
    die "compare.py accepted an image with a modified kernel-code byte"
fi
rm -f "$OUT/bad.lime"

log "timing: $(tr '\n' ' ' < "$OUT/logs/timing.txt")"
log "PASS"
[ "$KEEP" = 1 ] || rm -rf "$OUT"
