#!/bin/busybox sh
# /init of the acquisition-test guest (run by run.sh; PID 1, busybox sh).
#
# Mounts /proc, /sys, /dev, loads the modules listed in /lib/modules/load.list
# (in order), mounts the data disk /dev/vda on /data, saves /proc/iomem,
# prints it on the signal port (/dev/ttyS1), runs every /test/steps/NNN.sh
# with cwd=/data recording exit code, stdout and stderr under
# /data/guest-run/steps/, then syncs, unmounts /data and prints
# "AVML-GUEST-DONE" on the signal port.  On a fatal problem it prints
# "AVML-GUEST-FAIL <reason>".  Afterwards it idles so that the host can
# stop the VM and dump its RAM.

/bin/busybox mkdir -p /proc /sys /dev /tmp /data /sbin /usr/bin /usr/sbin /root
# /proc first: busybox --install (and the Swift static runtime) need /proc/self/exe
/bin/busybox mount -t proc proc /proc
/bin/busybox mount -t sysfs sysfs /sys
/bin/busybox mount -t devtmpfs devtmpfs /dev
/bin/busybox --install -s
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
export HOME=/root
umask 022

mkdir -p /dev/pts /dev/shm
mount -t devpts devpts /dev/pts 2>/dev/null
mount -t tmpfs tmpfs /tmp
ln -sf /proc/self/fd /dev/fd
ln -sf /proc/self/fd/0 /dev/stdin
ln -sf /proc/self/fd/1 /dev/stdout
ln -sf /proc/self/fd/2 /dev/stderr
[ -e /etc/hosts ] || { mkdir -p /etc; echo "127.0.0.1 localhost" > /etc/hosts; }
ip link set lo up 2>/dev/null

SIG=/dev/ttyS1
STEP_TIMEOUT=0
# shellcheck disable=SC1091
[ -f /test/config ] && . /test/config

log() { echo "guest-init: $*"; }
idle() { while :; do sleep 3600; done; }
signal() { echo "AVML-GUEST-$*" > "$SIG"; }
fail() {
    log "FAIL: $*"
    signal "FAIL $*"
    idle
}
uptime_cs() { # uptime in centiseconds
    read -r up _ < /proc/uptime
    echo "${up%.*}${up#*.}" | sed 's/^0*//;s/^$/0/'
}

load_modules() {
    while read -r kind mod; do
        [ -n "$mod" ] || continue
        if ! out=$(insmod "/lib/modules/$(uname -r)/$mod" 2>&1); then
            case "$out" in *"File exists"*) continue ;; esac
            if [ "$kind" = hard ]; then
                fail "insmod $mod: $out"
            else
                log "optional module $mod not loaded: $out"
            fi
        fi
    done < /lib/modules/load.list
}

# The signal port's driver may be a module (arm64 5.10's virtio_console): then the modules
# come first, and a failure among them shows on the console only.
modules_loaded=0
if [ ! -c "$SIG" ]; then
    load_modules
    modules_loaded=1
    i=0
    while [ ! -c "$SIG" ] && [ $i -lt 50 ]; do i=$((i + 1)); sleep 0.1; done
fi
[ -c "$SIG" ] || fail "no signal port $SIG"
stty -F "$SIG" raw -echo 115200 2>/dev/null
signal "BOOTED $(uname -r)"
log "kernel $(uname -r), cmdline: $(cat /proc/cmdline)"
[ "$modules_loaded" = 1 ] || load_modules

i=0
while [ ! -b /dev/vda ]; do
    i=$((i + 1))
    [ $i -le 100 ] || fail "no /dev/vda after 10 s (virtio_blk not working?)"
    sleep 0.1
done
mount -t ext4 /dev/vda /data || fail "cannot mount /dev/vda (ext4) on /data: $(dmesg | tail -n 5 | tr '\n' '|')"

R=/data/guest-run
mkdir -p "$R/steps" || fail "cannot write to /data"
cat /proc/iomem > "$R/iomem.txt"
uname -a > "$R/uname.txt"
cat /proc/cmdline > "$R/cmdline.txt"
cat /proc/meminfo > "$R/meminfo-before.txt"
{ echo "AVML-GUEST-IOMEM-BEGIN"; cat /proc/iomem; echo "AVML-GUEST-IOMEM-END"; } > "$SIG"

printf 'step\trc\tseconds\n' > "$R/steps.tsv"
for f in /test/steps/*.sh; do
    [ -f "$f" ] || continue
    n=$(basename "$f" .sh)
    cp "$f" "$R/steps/$n.cmd"
    log "step $n: $(tr '\n' ' ' < "$f")"
    t0=$(uptime_cs)
    cd /data || fail "cannot cd to /data"
    if [ "$STEP_TIMEOUT" -gt 0 ]; then
        timeout "$STEP_TIMEOUT" sh "$f" < /dev/null > "$R/steps/$n.stdout" 2> "$R/steps/$n.stderr"
    else
        sh "$f" < /dev/null > "$R/steps/$n.stdout" 2> "$R/steps/$n.stderr"
    fi
    rc=$?
    cd /
    t1=$(uptime_cs)
    el=$((t1 - t0))
    secs=$((el / 100)).$(printf '%02d' $((el % 100)))
    echo "$rc" > "$R/steps/$n.rc"
    printf '%s\t%s\t%s\n' "$n" "$rc" "$secs" >> "$R/steps.tsv"
    log "step $n: rc=$rc in ${secs}s"
    sync  # so that a host-side timeout still finds this step's results on the disk
    signal "STEP $n rc=$rc secs=$secs"
done

cat /proc/meminfo > "$R/meminfo-after.txt"
dmesg > "$R/dmesg.txt" 2>&1
cd /
sync
umount /data || { log "umount /data failed, remounting read-only"; mount -o remount,ro /data; sync; }
log "done"
signal "DONE"
idle
