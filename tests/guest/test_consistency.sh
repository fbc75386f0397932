#!/usr/bin/env bash
# test_consistency.sh CACHE_DIR AVML_STATIC_BINARY [OUT]
#
# The consistency figures of a capture's manifest (issue 23) against QEMU's own view: in a
# fresh guest, `avml acquire` to LiME twice, first idle, then while a writer keeps filling
# 32 MiB of tmpfs with random bytes; right after each capture guestctl.py stops the guest
# and snapshots its RAM (one digest per 4 KiB page). consistency.py compares, on the pages
# avml sampled, the image with the snapshot, and the share that differs with the manifest's.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
[ $# -ge 2 ] || { echo "usage: $0 CACHE_DIR AVML_STATIC_BINARY [OUT]" >&2; exit 2; }
CACHE_DIR=$1 AVML=$2
OUT=${3:-$(mktemp -d /tmp/avml-consistency-XXXXXX)}
rm -rf "$OUT"
fail() { echo "test_consistency: FAIL: $*" >&2; exit 1; }

steps=$(mktemp)
cat > "$steps" <<'STEPS'
sleep 2
avml acquire --no-symbols idle.lime
echo AVML-GUEST-SNAPSHOT idle > /dev/ttyS1; sleep 1
cd / && { while :; do dd if=/dev/urandom of=/tmp/churn bs=1M count=32 2>/dev/null; done & } </dev/null >/dev/null 2>&1; sleep 2; echo writing
avml acquire --no-symbols busy.lime
echo AVML-GUEST-SNAPSHOT busy > /dev/ttyS1; sleep 1
STEPS
AVML_GUEST_SMP=${AVML_GUEST_SMP:-2} AVML_GUEST_REQUIRE_STEPS_OK=1 "$HERE/run.sh" "$CACHE_DIR" "$AVML" "$OUT" "$steps" \
    >"$OUT.log" 2>&1 || { rm -f "$steps"; fail "guest run failed: $(tail -n 5 "$OUT.log")"; }
rm -f "$steps"
rm -rf "$OUT/truth"
release=$(awk '{print $3}' "$OUT/guest-run/uname.txt" 2>/dev/null || echo unknown)
python3 "$HERE/consistency.py" "$OUT" idle=idle busy=busy | sed "s/^consistency: /test_consistency: $release: /" \
    || fail "consistency.py"
grep -h "^avml: .*% of sampled pages changed" "$OUT"/guest-run/steps/*.stderr | sed "s/^/test_consistency: $release: /"
