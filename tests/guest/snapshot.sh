#!/bin/sh
# snapshot.sh DIR: what the guest's /proc shows now, for check_symbols.py to compare
# with Volatility's view of an image: DIR/modules (/proc/modules), DIR/mountinfo
# (/proc/1/mountinfo), DIR/net/{tcp,tcp6,udp,udp6,unix}, DIR/dmesg (the kernel log,
# busybox dmesg) and, per process, DIR/PID/stat, DIR/PID/cmdline (raw, NUL-separated)
# and DIR/PID/fds ("FD TARGET" per open descriptor). Runs under busybox sh.
set -u
dir=$1
mkdir -p "$dir/net"
cat /proc/modules > "$dir/modules"
cat /proc/1/mountinfo > "$dir/mountinfo"
for table in tcp tcp6 udp udp6 unix; do cat "/proc/net/$table" > "$dir/net/$table" 2>/dev/null; done
dmesg > "$dir/dmesg"
for proc in /proc/[0-9]*; do
    pid=${proc#/proc/}
    # A process may exit between the glob and the read; an empty stat is skipped later.
    mkdir -p "$dir/$pid"
    cat "$proc/stat" > "$dir/$pid/stat" 2>/dev/null
    cat "$proc/cmdline" > "$dir/$pid/cmdline" 2>/dev/null
    for fd in "$proc"/fd/*; do
        [ -e "$fd" ] || [ -L "$fd" ] || continue
        echo "${fd##*/} $(readlink "$fd")"
    done > "$dir/$pid/fds" 2>/dev/null
done
exit 0
