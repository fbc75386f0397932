#!/usr/bin/env bash
# test_footprint.sh CACHE_DIR AVML_STATIC_BINARY [OUT]
#
# How much of the examined host's memory a capture changes (issue 27): in a fresh guest,
# guestctl.py snapshots System RAM (one digest per 4 KiB page, the guest stopped) before
# and after the guest idles, and before and after `avml acquire` to LiME, `--compress`,
# and `avml stream tcp` to a local nc; footprint.py counts the pages that changed. The
# numbers are printed, each capture's against the 16 MiB target, not judged (they move by a
# MiB or two between runs): the run fails only if a capture or a snapshot does.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
[ $# -ge 2 ] || { echo "usage: $0 CACHE_DIR AVML_STATIC_BINARY [OUT]" >&2; exit 2; }
CACHE_DIR=$1 AVML=$2
OUT=${3:-$(mktemp -d /tmp/avml-footprint-XXXXXX)}
rm -rf "$OUT"
fail() { echo "test_footprint: FAIL: $*" >&2; exit 1; }

snap() { echo "echo AVML-GUEST-SNAPSHOT $1 > /dev/ttyS1; sleep 1"; }
steps=$(mktemp)
{
    echo "sleep 2"
    snap idle-before; echo "sleep 12"; snap idle-after
    snap lime-before; echo "avml acquire --quiet mem.lime"; snap lime-after
    echo "rm -f mem.lime mem.lime.json mem.lime.isf.json.gz && sync"
    snap compressed-before; echo "avml acquire --quiet --compress mem.avml"; snap compressed-after
    echo "rm -f mem.avml mem.avml.json mem.avml.isf.json.gz && sync"
    echo "cd / && { nc -l -p 5555 > /dev/null & } </dev/null >/dev/null 2>&1; sleep 1"
    snap stream-before; echo "avml stream tcp --quiet --manifest stream.json 127.0.0.1:5555"; snap stream-after
} > "$steps"
AVML_GUEST_SMP=${AVML_GUEST_SMP:-2} AVML_GUEST_REQUIRE_STEPS_OK=1 "$HERE/run.sh" "$CACHE_DIR" "$AVML" "$OUT" "$steps" \
    >"$OUT.log" 2>&1 || { rm -f "$steps"; fail "guest run failed: $(tail -n 5 "$OUT.log")"; }
rm -f "$steps"
rm -rf "$OUT/truth"
python3 "$HERE/footprint.py" "$OUT" 16 | sed "s/^footprint: /test_footprint: $(cat "$OUT/guest-run/uname.txt" 2>/dev/null | awk '{print $3}'): /" \
    || fail "footprint.py"
