#!/usr/bin/env bash
# test_refusals.sh CACHE_DIR AVML_STATIC_BINARY [OUT]
#
# Refusals that name their real cause (issue 25), as root in the guest, each with
# `avml check` agreeing with what `avml acquire` then does:
#   - booted with lockdown=confidentiality: kcore and /dev/mem closed to everyone;
#     before securityfs is mounted the cause is "may be kernel lockdown", after, it is named;
#     the message says what could still capture the host, and no image is left;
#   - booted with lockdown=integrity: kcore works (check says so, a capture reads it),
#     /dev/mem is refused, naming lockdown;
#   - root without CAP_SYS_RAWIO (tests/guest/testdata/without_rawio.c, built static):
#     named, with the advice for containers.
# None of them may tell root to run as root.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
[ $# -ge 2 ] || { echo "usage: $0 CACHE_DIR AVML_STATIC_BINARY [OUT]" >&2; exit 2; }
CACHE_DIR=$1 AVML=$2
OUT=${3:-$(mktemp -d /tmp/avml-refusals-XXXXXX)}
rm -rf "$OUT"
mkdir -p "$OUT"
fail() { echo "test_refusals: FAIL: $*" >&2; exit 1; }

helper="$OUT/without_rawio"
gcc -static -O2 -o "$helper" "$HERE/testdata/without_rawio.c" || fail "cannot build the without_rawio helper (gcc -static)"

# One guest run: $1 = name, $2 = kernel command-line addition, stdin = the steps.
run_guest() {
    local steps
    steps=$(mktemp)
    cat > "$steps"
    AVML_GUEST_APPEND="$2" AVML_GUEST_EXTRA_FILES="$helper:/bin/without_rawio" \
        "$HERE/run.sh" "$CACHE_DIR" "$AVML" "$OUT/$1" "$steps" >/dev/null 2>"$OUT/$1.log" \
        || { rm -f "$steps"; fail "guest run $1 failed: $(tail -n 5 "$OUT/$1.log")"; }
    rm -f "$steps"
    rm -rf "$OUT/$1/truth"  # QEMU's RAM dump: not needed here
}
step_file() { echo "$OUT/$1/guest-run/steps/$(printf %03d "$2").$3"; }
rc() { cat "$(step_file "$1" "$2" rc)"; }
out() { cat "$(step_file "$1" "$2" stdout)" "$(step_file "$1" "$2" stderr)"; }
# expect RUN STEP RC TEXT...: the step exited RC, said each TEXT, and never "run as root".
expect() {
    local run=$1 step=$2 want=$3 text
    shift 3
    [ "$(rc "$run" "$step")" = "$want" ] || fail "$run step $step exited $(rc "$run" "$step"), not $want: $(out "$run" "$step")"
    for text in "$@"; do
        out "$run" "$step" | grep -qF -- "$text" || fail "$run step $step does not say '$text': $(out "$run" "$step")"
    done
    if out "$run" "$step" | grep -qi "run as root"; then fail "$run step $step tells root to run as root: $(out "$run" "$step")"; fi
}

run_guest confidentiality lockdown=confidentiality <<'STEPS'
avml check unmounted.lime
avml acquire unmounted.lime
mount -t securityfs securityfs /sys/kernel/security && cat /sys/kernel/security/lockdown
avml check locked.lime
avml acquire locked.lime
STEPS
run=confidentiality
expect $run 1 1 "/proc/kcore: no: cannot open /proc/kcore: Operation not permitted" "may be kernel lockdown" \
    "securityfs is not mounted" "no memory source can be read"
expect $run 2 1 "may be kernel lockdown" "What can still capture this host"
expect $run 3 0 "[confidentiality]"
expect $run 4 1 "/proc/kcore: no: cannot open /proc/kcore: Operation not permitted (the kernel is locked down (lockdown=confidentiality" \
    "/dev/mem: no: cannot open /dev/mem: Operation not permitted (the kernel is locked down (lockdown=confidentiality"
expect $run 5 1 "lockdown=confidentiality" "What can still capture this host" "signed with a key this kernel trusts"
for image in unmounted.lime locked.lime; do
    [ ! -e "$OUT/$run/$image" ] || fail "$run: a refused capture left $image behind"
done
python3 - "$OUT/$run/locked.lime.json" <<'PY' || fail "$run: the manifest does not record the cause per source"
import json, sys
manifest = json.load(open(sys.argv[1]))
failures = manifest["source_failures"] if manifest.get("source_failures") else manifest["error"].splitlines()[1:3]
text = "\n".join(failures)
assert manifest["exit_status"] != 0, manifest
for source in ("/proc/kcore", "/dev/mem"):
    assert any(source in line and "lockdown=confidentiality" in line for line in failures), text
PY
echo "test_refusals: lockdown=confidentiality: named (and 'may be kernel lockdown' without securityfs), no image, check agrees"

run_guest integrity lockdown=integrity <<'STEPS'
mount -t securityfs securityfs /sys/kernel/security
avml check integrity.lime
avml acquire --source /dev/mem mem.lime
avml acquire --no-symbols integrity.lime
without_rawio avml check norawio.lime
without_rawio avml acquire norawio.lime
STEPS
run=integrity
expect $run 2 0 "/proc/kcore: yes" "/dev/mem: no: cannot open /dev/mem: Operation not permitted (the kernel is locked down (lockdown=integrity" \
    "acquire would read /proc/kcore"
expect $run 3 1 "lockdown=integrity" "closes /dev/mem (not /proc/kcore)"
expect $run 4 0
grep -q '"source" *: *"/proc/kcore"' "$OUT/$run/integrity.lime.json" || fail "$run: the capture did not read /proc/kcore as check said"
expect $run 5 1 "/proc/kcore: no" "lacks CAP_SYS_RAWIO" "no memory source can be read"
expect $run 6 1 "lacks CAP_SYS_RAWIO" "--cap-add SYS_RAWIO"
for image in mem.lime norawio.lime; do
    [ ! -e "$OUT/$run/$image" ] || fail "$run: a refused capture left $image behind"
done
echo "test_refusals: lockdown=integrity: kcore captured as check said, /dev/mem refused naming lockdown; without CAP_SYS_RAWIO named"
echo "test_refusals: passed"
