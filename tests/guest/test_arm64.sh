#!/usr/bin/env bash
# test_arm64.sh CACHE_DIR AVML_AARCH64 AVML_X86_64 [OUT]
#
# The static aarch64 binary (scripts/build-aarch64) in a real arm64 Debian kernel
# (tests/guest/kernels' 6.12-arm64, or AVML_GUEST_KERNEL=5.10-arm64 or 6.12-arm64-16k (16 KiB
# pages): qemu-system-aarch64, virt, TCG; one CACHE_DIR per series), checked like
# test_acquire.sh checks x86-64, against QEMU's own dump of the guest's RAM:
#   - the default capture (no /dev/crash on arm64, so /proc/kcore) and --compress,
#     `avml verify` of the compressed image inside the guest, `avml check` naming the
#     source the capture read, and without a System.map saying whether kallsyms alone
#     can give the table (not on 5.10, built without KALLSYMS_ALL);
#   - --source /dev/mem refused (STRICT_DEVMEM), named, no image left behind;
#   - every compressed record readable by Volatility 3's walk (check_records.py);
#   - the kernel image byte-equal to the truth: on arm64 /proc/iomem's "Kernel code"
#     runs from _stext to __init_begin, so it holds the rodata too;
#   - `info`, `verify` and `convert` of the aarch64 binary under qemu-aarch64-static
#     on an image the x86-64 binary made, and the x86-64 binary's `verify` of the
#     guest's compressed image with its manifest: the formats agree across both.
# Volatility 3 2.28.2, the newest, has no AArch64 layer, so no Linux plugin can read an
# arm64 image yet: check_arm64_table.py walks the image with the table written beside it
# (banner, KASLR offset, the task list against /proc, the module list against /proc/modules),
# and Volatility's banners.Banners (a scan) must find the table's banner.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
[ $# -ge 3 ] || { echo "usage: $0 CACHE_DIR AVML_AARCH64 AVML_X86_64 [OUT]" >&2; exit 2; }
CACHE_DIR=$1 AVML_ARM=$2 AVML_X86=$3
OUT=${4:-$(mktemp -d /tmp/avml-arm64-XXXXXX)}
rm -rf "$OUT"
fail() { echo "test_arm64: FAIL: $*" >&2; exit 1; }
command -v qemu-aarch64-static >/dev/null || fail "qemu-aarch64-static not found (apt-get install qemu-user-static)"
file_machine=$(od -A n -t u2 -j 18 -N 2 "$AVML_ARM" | tr -d ' ')
[ "$file_machine" = 183 ] || fail "$AVML_ARM is not an aarch64 ELF (e_machine $file_machine)"

series=${AVML_GUEST_KERNEL:-6.12-arm64}
case "$series" in *-arm64 | *-arm64-16k) ;; *) fail "AVML_GUEST_KERNEL=$series is not an arm64 series" ;; esac
"$HERE/setup.sh" "$CACHE_DIR" "$series"

steps=$(mktemp)
cat > "$steps" <<'STEPS'
dd if=/proc/kcore of=kcore-head bs=4096 count=16 2>/dev/null; cat /proc/[0-9]*/stat > stat-before.txt 2>/dev/null; true
avml acquire auto.lime
cat /proc/[0-9]*/stat > stat-after.txt 2>/dev/null; cat /proc/modules > modules.txt
avml acquire --compress auto.avml
avml verify auto.avml
avml acquire --source /dev/mem mem.lime
avml check checked.lime
mv "/boot/System.map-$(uname -r)" /tmp/ 2>/dev/null; avml check without-map.lime
STEPS
# shellcheck disable=SC1091
. "$CACHE_DIR/kernel.env"
# Debian's arm64 5.10 is built without KALLSYMS_ALL: /proc/kallsyms has no data symbols, and
# the table needs the build's System.map (setup.sh took it from the -dbg package) in /boot,
# where a responder would put it for `avml acquire`.
extra=
kallsyms_all=1
if ! grep -q '^CONFIG_KALLSYMS_ALL=y' "$KCONFIG"; then
    kallsyms_all=0
    [ -n "${SYSTEM_MAP:-}" ] || fail "$KVER lacks KALLSYMS_ALL and setup.sh gave no System.map"
    extra="$SYSTEM_MAP:/boot/System.map-$KVER"
fi
AVML_GUEST_EXTRA_FILES="${AVML_GUEST_EXTRA_FILES:-} $extra" AVML_GUEST_SMP=${AVML_GUEST_SMP:-2} \
    "$HERE/run.sh" "$CACHE_DIR" "$AVML_ARM" "$OUT" "$steps"
rm -f "$steps"

rc() { cat "$OUT/guest-run/steps/$(printf %03d "$1").rc"; }
stderr() { cat "$OUT/guest-run/steps/$(printf %03d "$1").stderr"; }
for step in 1 2 3 4 5 7 8; do
    [ "$(rc $step)" = 0 ] || fail "step $step exited $(rc $step): $(stderr $step)"
done
manifest_field() { python3 -c 'import json, sys; m = json.load(open(sys.argv[1])); print(m[sys.argv[2]][sys.argv[3]])' "$@"; }
[ "$(manifest_field "$OUT/auto.lime.json" host machine)" = aarch64 ] || fail "the manifest does not say aarch64"
checked=$(sed -n 's/^avml check: acquire would read //p' "$OUT/guest-run/steps/007.stdout")
read_from=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["source"])' "$OUT/auto.lime.json")
[ -n "$checked" ] && [ "$checked" = "$read_from" ] \
    || fail "avml check said '$checked', the capture read '$read_from': $(cat "$OUT/guest-run/steps/007.stdout")"
# Without the System.map, check must say what acquire would find: a table from kallsyms only
# where it lists data symbols (KALLSYMS_ALL).
if [ "$kallsyms_all" = 1 ]; then
    grep -q "^symbol table: yes: .*addresses from /proc/kallsyms" "$OUT/guest-run/steps/008.stdout" \
        || fail "avml check without a System.map: $(grep '^symbol table' "$OUT/guest-run/steps/008.stdout")"
else
    grep -q "^symbol table: no: /proc/kallsyms lacks init_task.*CONFIG_KALLSYMS_ALL is off" "$OUT/guest-run/steps/008.stdout" \
        || fail "avml check without a System.map: $(grep '^symbol table' "$OUT/guest-run/steps/008.stdout")"
fi
[ "$(rc 6)" = 1 ] || fail "--source /dev/mem should fail under STRICT_DEVMEM, exited $(rc 6)"
stderr 6 | grep -q "STRICT_DEVMEM" || fail "the /dev/mem error does not name STRICT_DEVMEM: $(stderr 6)"
[ ! -e "$OUT/mem.lime" ] || fail "a failed capture left mem.lime behind"
python3 "$HERE/check_records.py" --iomem "$OUT/iomem.txt" "$OUT/auto.avml" || fail "auto.avml has a record Volatility cannot open"

"$AVML_X86" verify --quiet "$OUT/auto.avml" || fail "the x86-64 binary does not verify the guest's auto.avml"
"$AVML_X86" convert --quiet "$OUT/auto.avml" "$OUT/auto-from-avml.lime"
for pair in auto.lime:auto.lime.json auto-from-avml.lime:auto.avml.json; do
    image=${pair%%:*} manifest=${pair#*:}
    python3 "$HERE/compare.py" --iomem "$OUT/iomem.txt" --truth "$OUT/truth" --image "$OUT/$image" \
        --zero-blocks "$OUT/$manifest" --require-kernel-equal --min-coverage 0.999 \
        || fail "$image does not match the guest's RAM"
done

# The aarch64 binary reads what the x86-64 one writes.
arm() { qemu-aarch64-static "$AVML_ARM" "$@"; }
"$AVML_X86" convert --quiet --source-format lime --format lime_compressed "$OUT/auto.lime" "$OUT/x86.avml"
arm info "$OUT/x86.avml" > "$OUT/x86.avml.info" || fail "aarch64 info of x86.avml"
grep -q "^format: *lime_compressed$" "$OUT/x86.avml.info" || fail "aarch64 info does not call x86.avml compressed: $(cat "$OUT/x86.avml.info")"
arm verify --quiet "$OUT/x86.avml" || fail "aarch64 verify of x86.avml"
arm convert --quiet "$OUT/x86.avml" "$OUT/x86-back.lime" || fail "aarch64 convert of x86.avml"
cmp "$OUT/auto.lime" "$OUT/x86-back.lime" || fail "auto.lime through x86-64 compress and aarch64 decompress is not the same"
rm -f "$OUT/x86-back.lime" "$OUT/auto-from-avml.lime"

[ "$(manifest_field "$OUT/auto.lime.json" symbols path)" = auto.lime.isf.json.gz ] && [ -s "$OUT/auto.lime.isf.json.gz" ] \
    || fail "no symbol table beside auto.lime"
python3 "$HERE/check_arm64_table.py" --image "$OUT/auto.lime" --table "$OUT/auto.lime.isf.json.gz" \
    --manifest "$OUT/auto.lime.json" --kcore-head "$OUT/kcore-head" --stat-before "$OUT/stat-before.txt" \
    --stat-after "$OUT/stat-after.txt" --modules "$OUT/modules.txt" || fail "the symbol table does not read the image"
# The one Volatility 3 plugin that needs no address layer finds the banner the table names.
banner=$(manifest_field "$OUT/auto.lime.json" symbols banner)
timeout 600 vol -q -f "$OUT/auto.lime" banners.Banners | grep -F "$banner" >/dev/null \
    || fail "Volatility's banners.Banners does not find the table's banner in auto.lime"
echo "test_arm64: the aarch64 binary captured the arm64 guest (kernel image equal to QEMU's dump), compressed, verified; its table reads the task and module lists; its convert, verify and info agree with the x86-64 binary's; output in $OUT"
