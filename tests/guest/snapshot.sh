#!/bin/sh
# snapshot.sh DIR: what the guest's /proc shows now, for check_symbols.py to compare
# with Volatility's view of an image: DIR/modules (/proc/modules) and, per process,
# DIR/PID/stat and DIR/PID/cmdline (raw, NUL-separated). Runs under busybox sh.
set -u
dir=$1
mkdir -p "$dir"
cat /proc/modules > "$dir/modules"
for proc in /proc/[0-9]*; do
    pid=${proc#/proc/}
    # A process may exit between the glob and the read; an empty stat is skipped later.
    mkdir -p "$dir/$pid"
    cat "$proc/stat" > "$dir/$pid/stat" 2>/dev/null
    cat "$proc/cmdline" > "$dir/$pid/cmdline" 2>/dev/null
done
exit 0
