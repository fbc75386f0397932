#!/usr/bin/env bash
# setup.sh CACHE_DIR [SERIES]
#
# Idempotent preparation of the QEMU acquisition-test guest:
#   * makes sure qemu-system-x86, busybox-static, e2fsprogs, cpio, xz-utils and
#     python3 are installed on the host (apt-get install -y, needs root);
#   * downloads (apt-get download, NOT installed) the guest's Debian kernel package
#     and unpacks it with dpkg-deb -x into CACHE_DIR/kernel/<version>/, recording the
#     choice in CACHE_DIR/kernel.env.
#
# SERIES (or AVML_GUEST_KERNEL) picks the kernel generation, as responders meet them:
# 5.10 (Debian 11), 6.1 (Debian 12, the default) or 6.12 (Debian 13); 6.12-arm64 and
# 5.10-arm64 are Debian 13's and 11's arm64 kernels, 6.12-arm64-16k Debian 13's with 16 KiB
# pages, booted by qemu-system-aarch64 with an arm64 busybox (also downloaded, from bookworm)
# in their initramfs. The exact build of
# each is pinned in tests/guest/kernels; if Debian's archive no longer has it, this fails
# and names the newest build of the series (no silent switch to another build).
# The packages come from Debian's archive through apt sources of the project's own
# (CACHE_DIR/../apt, for bookworm, bullseye and trixie), read with a private apt
# state: the host's sources and package lists are left as they are.
# 6.12 ships its modules as .ko.xz, which busybox's insmod cannot load: they are
# decompressed once here, and modules.dep is made for the .ko files.
#
# Environment:
#   AVML_GUEST_KERNEL      a series of tests/guest/kernels (default 6.1; the argument wins)
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
die() { echo "setup.sh: error: $*" >&2; exit 1; }
log() { echo "setup.sh: $*" >&2; }

[ $# -ge 1 ] && [ $# -le 2 ] || die "usage: $0 CACHE_DIR [SERIES of $HERE/kernels]"
CACHE_DIR=$1
SERIES=${2:-${AVML_GUEST_KERNEL:-6.1}}
mkdir -p "$CACHE_DIR"
CACHE_DIR=$(cd "$CACHE_DIR" && pwd)

SUDO=
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then SUDO=sudo; else die "must run as root (or have sudo)"; fi
fi
export DEBIAN_FRONTEND=noninteractive

APT_UPDATED=0
apt_update_once() {
    if [ "$APT_UPDATED" -eq 0 ]; then
        log "apt-get update"
        $SUDO apt-get update -qq >&2 || die "apt-get update failed"
        APT_UPDATED=1
    fi
}

# --- host packages ---------------------------------------------------------
# The guest's architecture: the pinned package's flavour (linux-image-...-amd64, -arm64 or
# -arm64-16k, arm64 with 16 KiB pages).
read -r _ PKG SUITE SERIES_REGEX < <(awk -v series="$SERIES" '$1 == series' "$HERE/kernels") \
    || die "no series $SERIES in $HERE/kernels (known: $(awk '!/^#/ && NF { printf "%s ", $1 }' "$HERE/kernels"))"
KVER=${PKG#linux-image-}
case "$KVER" in
    *-amd64) ARCH=amd64 ;;
    *-arm64 | *-arm64-16k) ARCH=arm64 ;;
    *) ARCH=${KVER##*-} ;;
esac
case "$ARCH" in
    amd64) QEMU_PACKAGE=qemu-system-x86 QEMU_BINARY=qemu-system-x86_64 ;;
    arm64) QEMU_PACKAGE=qemu-system-arm QEMU_BINARY=qemu-system-aarch64 ;;
    *) die "$PKG in $HERE/kernels: unknown architecture $ARCH (amd64 or arm64)" ;;
esac

need=()
pkg_ok() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'; }
for p in "$QEMU_PACKAGE" busybox-static e2fsprogs cpio xz-utils python3; do
    pkg_ok "$p" || need+=("$p")
done
if [ ${#need[@]} -gt 0 ]; then
    apt_update_once
    log "apt-get install -y ${need[*]}"
    $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >&2 \
        || die "apt-get install ${need[*]} failed"
fi
for b in "$QEMU_BINARY" busybox mke2fs debugfs cpio xz python3; do
    command -v "$b" >/dev/null 2>&1 || [ -x "/sbin/$b" ] || [ -x "/usr/sbin/$b" ] \
        || die "$b not found after installing packages"
done

# --- guest kernel ----------------------------------------------------------
# The pinned build of the series: "series package suite regex" in tests/guest/kernels.
KDIR="$CACHE_DIR/kernel/$KVER"
# An arm64 guest's busybox: the host's is amd64.
if [ "$ARCH" = amd64 ]; then
    GUEST_BUSYBOX=$(command -v busybox)
else
    GUEST_BUSYBOX="$CACHE_DIR/busybox-$ARCH/bin/busybox"
fi
if [ -f "$KDIR/.complete" ] && [ -x "$GUEST_BUSYBOX" ]; then
    log "kernel $KVER already unpacked in $KDIR"
else
    # A private apt: the project's sources list, its own state and cache, the host's keyring;
    # one per architecture, so that amd64's lists are not made anew for arm64.
    if [ "$ARCH" = amd64 ]; then
        APT_DIR=$(dirname "$CACHE_DIR")/apt
        ARCH_OPTS=()
    else
        APT_DIR=$(dirname "$CACHE_DIR")/apt-$ARCH
        ARCH_OPTS=(-o "APT::Architecture=$ARCH" -o "APT::Architectures::=$ARCH")
    fi
    mkdir -p "$APT_DIR/lists/partial" "$APT_DIR/cache/archives/partial"
    keyring=/usr/share/keyrings/debian-archive-keyring.gpg
    {
        for suite in bookworm bullseye trixie; do
            echo "deb [signed-by=$keyring] http://deb.debian.org/debian $suite main"
            echo "deb [signed-by=$keyring] http://deb.debian.org/debian-security $suite-security main"
        done
    } > "$APT_DIR/sources.list"
    APT_OPTS=(-o "Dir::State=$APT_DIR" -o "Dir::State::Lists=$APT_DIR/lists" -o "Dir::Cache=$APT_DIR/cache"
        -o "Dir::Etc::SourceList=$APT_DIR/sources.list" -o Dir::Etc::SourceParts=/dev/null "${ARCH_OPTS[@]}")
    KERNEL_APT_UPDATED=0
    kernel_apt_update() {
        [ "$KERNEL_APT_UPDATED" -eq 0 ] || return 0
        log "apt-get update (bookworm, bullseye, trixie; private lists in $APT_DIR)"
        flock /tmp/apt.lock apt-get "${APT_OPTS[@]}" update -qq >&2 || die "apt-get update of $APT_DIR/sources.list failed"
        KERNEL_APT_UPDATED=1
    }
    [ -n "$(ls -A "$APT_DIR/lists" 2>/dev/null | grep -v partial)" ] || kernel_apt_update

    in_archive() { apt-cache "${APT_OPTS[@]}" show "$1" >/dev/null 2>&1; }
    # The private lists may predate a change in the archive: refresh them once before failing.
    in_archive "$PKG" || { kernel_apt_update; in_archive "$PKG"; } || {
        newest=$(apt-cache "${APT_OPTS[@]}" search --names-only "$SERIES_REGEX" 2>/dev/null | awk '{ print $1 }' | sort -V | tail -n1)
        die "the pinned $SERIES kernel $PKG is no longer in Debian's archive ($SUITE); the newest build" \
            "of the series is ${newest:-not found either}. Pin it in $HERE/kernels, with a" \
            "reference table in tests/guest/testdata/isf made from it (dwarf2json, the build's -dbg vmlinux)"
    }
    DL="$CACHE_DIR/debs"
    mkdir -p "$DL"
    # download PACKAGE[=VERSION]: the path of its .deb in DL, downloaded once.
    download() {
        local name=${1%%=*} deb tmpd
        deb=$(find "$DL" -maxdepth 1 -name "${name}_*.deb" | sort -V | tail -n1)
        if [ -z "$deb" ]; then
            log "apt-get download $1"
            # apt-get download writes to the cwd; _apt needs to be able to write
            # there when running as root, so download in a temp dir we chmod.
            tmpd=$(mktemp -d "$DL/.dl.XXXXXX")
            chmod 0777 "$tmpd"
            if ! (cd "$tmpd" && apt-get "${APT_OPTS[@]}" download "$1" >&2); then
                kernel_apt_update
                (cd "$tmpd" && apt-get "${APT_OPTS[@]}" download "$1" >&2) \
                    || { rm -rf "$tmpd"; die "apt-get download $1 failed"; }
            fi
            mv "$tmpd"/*.deb "$DL"/
            rm -rf "$tmpd"
            deb=$(find "$DL" -maxdepth 1 -name "${name}_*.deb" | sort -V | tail -n1)
        fi
        echo "$deb"
    }
    if [ "$ARCH" != amd64 ]; then
        # bookworm's, like the host's: the newest build in the private lists.
        version=$(apt-cache "${APT_OPTS[@]}" madison busybox-static | awk '$6 == "bookworm/main" { print $3; exit }')
        [ -n "$version" ] || die "no $ARCH busybox-static in bookworm's lists ($APT_DIR)"
        bb_deb=$(download "busybox-static=$version")
        rm -rf "$CACHE_DIR/busybox-$ARCH"
        dpkg-deb -x "$bb_deb" "$CACHE_DIR/busybox-$ARCH"
        [ -x "$GUEST_BUSYBOX" ] || die "no bin/busybox in $bb_deb"
    fi
    deb=$(download "$PKG")
    log "unpacking $(basename "$deb") into $KDIR"
    rm -rf "$KDIR"
    mkdir -p "$KDIR"
    dpkg-deb -x "$deb" "$KDIR"
    [ -f "$KDIR/boot/vmlinuz-$KVER" ] || die "no boot/vmlinuz-$KVER in $deb"
    # Debian 13 is merged-/usr: its modules are in usr/lib/modules.
    if [ ! -e "$KDIR/lib" ] && [ -d "$KDIR/usr/lib/modules/$KVER" ]; then ln -s usr/lib "$KDIR/lib"; fi
    [ -d "$KDIR/lib/modules/$KVER" ] || die "no lib/modules/$KVER or usr/lib/modules/$KVER in $deb"
    # 6.12's modules are .ko.xz: busybox insmod takes only plain ELF, so decompress them.
    if find "$KDIR/lib/modules/$KVER" -name '*.ko.xz' -print -quit | grep . >/dev/null; then
        log "decompressing the .ko.xz modules"
        find "$KDIR/lib/modules/$KVER" -name '*.ko.xz' -print0 | xargs -0 -r -P "$(nproc)" -n 64 xz -d \
            || die "xz -d of the modules in $KDIR failed"
    fi
    # The .deb has no modules.dep / modules.alias (depmod runs at install
    # time); generate them with busybox's depmod, no kmod needed.
    log "busybox depmod -b $KDIR $KVER"
    busybox depmod -b "$KDIR" "$KVER" || die "busybox depmod failed"
    [ -s "$KDIR/lib/modules/$KVER/modules.dep" ] || die "depmod produced no modules.dep"
    # Debian's arm64 5.10 is built without KALLSYMS_ALL, so a table needs the System.map; the
    # package's is a placeholder, the build's own is in the -dbg package (727 MB: downloaded,
    # the map taken out, the rest deleted), whose map a host's responder would give avml.
    if [ "$ARCH" != amd64 ] && ! grep -q '^CONFIG_KALLSYMS_ALL=y' "$KDIR/boot/config-$KVER"; then
        dbg_deb=$(download "$PKG-dbg")
        member=./usr/lib/debug/boot/System.map-$KVER
        # tar stops after the one member, so dpkg-deb's pipe breaks: its status says nothing.
        (set +o pipefail; dpkg-deb --fsys-tarfile "$dbg_deb" 2>/dev/null | tar -x -O --occurrence=1 "$member") \
            > "$KDIR/boot/System.map-$KVER.dbg" || true
        grep -q ' T _text$' "$KDIR/boot/System.map-$KVER.dbg" || die "no System.map-$KVER with _text in $dbg_deb"
        rm -f "$dbg_deb"
    fi
    touch "$KDIR/.complete"
fi

cat > "$CACHE_DIR/kernel.env.tmp" <<ENV
ARCH=$ARCH
BUSYBOX=$GUEST_BUSYBOX
KVER=$KVER
KDIR=$KDIR
VMLINUZ=$KDIR/boot/vmlinuz-$KVER
KCONFIG=$KDIR/boot/config-$KVER
MODDIR=$KDIR/lib/modules/$KVER
SYSTEM_MAP=$([ -f "$KDIR/boot/System.map-$KVER.dbg" ] && echo "$KDIR/boot/System.map-$KVER.dbg")
ENV
mv "$CACHE_DIR/kernel.env.tmp" "$CACHE_DIR/kernel.env"
log "ready: kernel $KVER ($CACHE_DIR/kernel.env)"
