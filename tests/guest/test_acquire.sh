#!/usr/bin/env bash
# test_acquire.sh CACHE_DIR AVML_STATIC_BINARY [OUT]
#
# `avml acquire` inside a real Debian kernel (QEMU), checked against QEMU's own
# dump of the guest's RAM taken afterwards with the guest stopped:
#   - default source order (no /dev/crash, so /proc/kcore), LiME and --compress;
#   - --source /proc/kcore; streaming to /dev/stdout;
#   - --source /dev/mem, which STRICT_DEVMEM refuses above 1 MiB: it must fail
#     with a message that says so, exit 1, and leave no image behind;
#   - --iomem with a saved map that claims device memory and reserved pages as
#     System RAM: they are dropped (warning, manifest), never read;
#   - every compressed record readable by Volatility 3 (an independent walk);
#   - a basic acquire in a second, 256 MiB guest (the binary must fit its initramfs);
#   - then test_symbols.sh (Volatility 3 with the table written beside the image) and
#     test_refusals.sh (kernel lockdown, no CAP_SYS_RAWIO: the cause named, avml check agreeing)
#     and test_footprint.sh (how much of the guest's memory each kind of capture changes).
# Kernel code and rodata must be byte-equal to the truth; every System RAM byte
# kcore exposes (all but the partial page at the top of the low range) present,
# or in a whole 16 MiB block the manifest counts as skipped for being all zeros.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
[ $# -ge 2 ] || { echo "usage: $0 CACHE_DIR AVML_STATIC_BINARY [OUT]" >&2; exit 2; }
CACHE_DIR=$1 AVML=$2
OUT=${3:-$(mktemp -d /tmp/avml-guest-XXXXXX)}
rm -rf "$OUT"
fail() { echo "test_acquire: FAIL: $*" >&2; exit 1; }

steps=$(mktemp)
cat > "$steps" <<'STEPS'
avml acquire auto.lime
avml acquire --compress auto.avml
avml acquire --source /proc/kcore --threads 1 kcore.lime
avml acquire /dev/stdout > stdout.lime
avml acquire --source /dev/mem mem.lime
cp /proc/iomem saved-iomem.txt && echo "fd000000-fdffffff : System RAM" >> saved-iomem.txt && echo "00000000-00000fff : System RAM" >> saved-iomem.txt
avml acquire --iomem saved-iomem.txt --source /proc/kcore iomem-cut.lime
ls -l
STEPS
AVML_GUEST_SMP=${AVML_GUEST_SMP:-2} "$HERE/run.sh" "$CACHE_DIR" "$AVML" "$OUT" "$steps"
rm -f "$steps"

rc() { cat "$OUT/guest-run/steps/$(printf %03d "$1").rc"; }
stderr() { cat "$OUT/guest-run/steps/$(printf %03d "$1").stderr"; }
for step in 1 2 3 4; do
    [ "$(rc $step)" = 0 ] || fail "step $step exited $(rc $step): $(stderr $step)"
done
[ "$(rc 5)" = 1 ] || fail "--source /dev/mem should fail under STRICT_DEVMEM, exited $(rc 5)"
stderr 5 | grep -q "STRICT_DEVMEM" || fail "the /dev/mem error does not name STRICT_DEVMEM: $(stderr 5)"
[ ! -e "$OUT/mem.lime" ] || fail "a failed capture left mem.lime behind"
echo "test_acquire: /dev/mem refused as expected: $(stderr 5 | head -1)"

# A saved map is cut down to the live System RAM: the device range and the
# reserved first page are named, recorded as dropped, and not in the image.
[ "$(rc 7)" = 0 ] || fail "acquire --iomem exited $(rc 7): $(stderr 7)"
stderr 7 | grep -q "2 ranges (the first 0x0-0xfff) of --iomem saved-iomem.txt are not System RAM" \
    || fail "acquire --iomem did not name the dropped ranges: $(stderr 7)"
python3 - "$OUT/iomem-cut.lime.json" <<'PY' || fail "the manifest does not record the dropped ranges"
import json, sys
dropped = json.load(open(sys.argv[1]))["ranges"]["dropped"]
assert {"start": "0xfd000000", "end": "0xfdffffff"} in dropped and {"start": "0x0", "end": "0xfff"} in dropped, dropped
PY
python3 "$HERE/check_records.py" --iomem "$OUT/iomem.txt" "$OUT/iomem-cut.lime" || fail "iomem-cut.lime holds memory outside System RAM"
echo "test_acquire: --iomem ranges outside the live System RAM were dropped and named"

# Every compressed record opens in Volatility 3 (an independent walk, cramjam's Snappy).
python3 "$HERE/check_records.py" --iomem "$OUT/iomem.txt" "$OUT/auto.avml" || fail "auto.avml has a record Volatility cannot open"

# The compressed image must decode; the host runs the same static binary.
"$AVML" convert "$OUT/auto.avml" "$OUT/auto-from-avml.lime"

# Captures skip all-zero 16 MiB blocks, as AVML does (a small guest has much untouched
# RAM): a missing whole block counts as covered only if the manifest skipped as many.
stdout_manifests=("$OUT"/avml-*.json)
[ ${#stdout_manifests[@]} = 1 ] && [ -f "${stdout_manifests[0]}" ] \
    || fail "want one manifest avml-*.json for the capture to stdout, found: ${stdout_manifests[*]}"
stdout_manifest=$(basename "${stdout_manifests[0]}")
passed=0
for pair in auto.lime:auto.lime.json auto-from-avml.lime:auto.avml.json kcore.lime:kcore.lime.json \
    "stdout.lime:$stdout_manifest"; do
    image=${pair%%:*} manifest=${pair#*:}
    python3 "$HERE/compare.py" --iomem "$OUT/iomem.txt" --truth "$OUT/truth" --image "$OUT/$image" \
        --zero-blocks "$OUT/$manifest" --require-kernel-equal --min-coverage 0.999 \
        || fail "$image does not match the guest's RAM"
    passed=$((passed + 1))
done
echo "test_acquire: $passed images match the guest's kernel code and rodata; output in $OUT"

# The same static binary in a 256 MiB guest: its initramfs is unpacked into RAM, and
# the 141 MB binary of before made the kernel fail "Initramfs unpacking failed".
small="$OUT/guest-256M"
small_steps=$(mktemp)
echo "avml acquire small.lime" > "$small_steps"
AVML_GUEST_MEM=256M AVML_GUEST_SMP=${AVML_GUEST_SMP:-2} "$HERE/run.sh" "$CACHE_DIR" "$AVML" "$small" "$small_steps"
rm -f "$small_steps"
[ "$(cat "$small/guest-run/steps/001.rc")" = 0 ] ||
    fail "256 MiB guest: avml acquire exited $(cat "$small/guest-run/steps/001.rc"): $(cat "$small/guest-run/steps/001.stderr")"
python3 "$HERE/compare.py" --iomem "$small/iomem.txt" --truth "$small/truth" --image "$small/small.lime" \
    --zero-blocks "$small/small.lime.json" --require-kernel-equal --min-coverage 0.999 || fail "the 256 MiB guest's image does not match its RAM"
passed=$((passed + 1))
echo "test_acquire: the $(stat -c %s "$AVML")-byte binary acquires in a 256 MiB guest too"

# --- Symbol tables (issue 9) -------------------------------------------------
# `avml symbols` in a guest run of its own, then Volatility 3 on images captured
# right after it, against /proc snapshots (test_symbols.sh, check_symbols.py).
"$HERE/test_symbols.sh" "$CACHE_DIR" "$AVML" "$OUT-symbols" || fail "symbol tables (see check_symbols lines above)"
passed=$((passed + 1))
# --- end of symbol tables ----------------------------------------------------
# Refusals under kernel lockdown and without CAP_SYS_RAWIO, each named, with avml check agreeing.
"$HERE/test_refusals.sh" "$CACHE_DIR" "$AVML" "$OUT-refusals" || fail "refusals (see test_refusals lines above)"
passed=$((passed + 1))
# What the captures change of the guest's own memory (printed: issue 27's measurement).
"$HERE/test_footprint.sh" "$CACHE_DIR" "$AVML" "$OUT-footprint" || fail "footprint measurement"
echo "$((passed + 4)) passed, 0 failed"
