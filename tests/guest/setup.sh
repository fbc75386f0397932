#!/usr/bin/env bash
# setup.sh CACHE_DIR
#
# Idempotent preparation of the QEMU acquisition-test guest:
#   * makes sure qemu-system-x86, busybox-static, e2fsprogs, cpio and python3
#     are installed on the host (apt-get install -y, needs root);
#   * downloads (apt-get download, NOT installed) the newest Debian
#     linux-image-6.1.*-amd64 package and unpacks it with dpkg-deb -x into
#     CACHE_DIR/kernel/<version>/, recording the choice in CACHE_DIR/kernel.env.
#
# Environment:
#   AVML_GUEST_KERNEL_PKG  force a package name (e.g. linux-image-6.1.0-56-amd64)
set -euo pipefail

die() { echo "setup.sh: error: $*" >&2; exit 1; }
log() { echo "setup.sh: $*" >&2; }

[ $# -eq 1 ] || die "usage: $0 CACHE_DIR"
CACHE_DIR=$1
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
need=()
pkg_ok() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'; }
for p in qemu-system-x86 busybox-static e2fsprogs cpio python3; do
    pkg_ok "$p" || need+=("$p")
done
if [ ${#need[@]} -gt 0 ]; then
    apt_update_once
    log "apt-get install -y ${need[*]}"
    $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >&2 \
        || die "apt-get install ${need[*]} failed"
fi
for b in qemu-system-x86_64 busybox mke2fs debugfs cpio python3; do
    command -v "$b" >/dev/null 2>&1 || [ -x "/sbin/$b" ] || [ -x "/usr/sbin/$b" ] \
        || die "$b not found after installing packages"
done

# --- guest kernel ----------------------------------------------------------
newest_kernel_pkg() {
    apt-cache search --names-only '^linux-image-6\.1\.[0-9]+-[0-9]+-amd64$' 2>/dev/null \
        | awk '{print $1}' | sort -V | tail -n1
}

PKG=${AVML_GUEST_KERNEL_PKG:-}
if [ -z "$PKG" ]; then
    PKG=$(newest_kernel_pkg)
    if [ -z "$PKG" ]; then
        apt_update_once
        PKG=$(newest_kernel_pkg)
    fi
fi
[ -n "$PKG" ] || die "no linux-image-6.1.*-amd64 package found by apt-cache (is the Debian 12 archive configured?)"
KVER=${PKG#linux-image-}

KDIR="$CACHE_DIR/kernel/$KVER"
if [ -f "$KDIR/.complete" ]; then
    log "kernel $KVER already unpacked in $KDIR"
else
    DL="$CACHE_DIR/debs"
    mkdir -p "$DL"
    deb=$(find "$DL" -maxdepth 1 -name "${PKG}_*.deb" | sort -V | tail -n1)
    if [ -z "$deb" ]; then
        log "apt-get download $PKG"
        # apt-get download writes to the cwd; _apt needs to be able to write
        # there when running as root, so download in a temp dir we chmod.
        tmpd=$(mktemp -d "$DL/.dl.XXXXXX")
        chmod 0777 "$tmpd"
        if ! (cd "$tmpd" && apt-get download "$PKG" >&2); then
            apt_update_once
            (cd "$tmpd" && apt-get download "$PKG" >&2) || { rm -rf "$tmpd"; die "apt-get download $PKG failed"; }
        fi
        mv "$tmpd"/*.deb "$DL"/
        rm -rf "$tmpd"
        deb=$(find "$DL" -maxdepth 1 -name "${PKG}_*.deb" | sort -V | tail -n1)
    fi
    log "unpacking $(basename "$deb") into $KDIR"
    rm -rf "$KDIR"
    mkdir -p "$KDIR"
    dpkg-deb -x "$deb" "$KDIR"
    [ -f "$KDIR/boot/vmlinuz-$KVER" ] || die "no boot/vmlinuz-$KVER in $deb"
    [ -d "$KDIR/lib/modules/$KVER" ] || die "no lib/modules/$KVER in $deb"
    # The .deb has no modules.dep / modules.alias (depmod runs at install
    # time); generate them with busybox's depmod, no kmod needed.
    log "busybox depmod -b $KDIR $KVER"
    busybox depmod -b "$KDIR" "$KVER" || die "busybox depmod failed"
    [ -s "$KDIR/lib/modules/$KVER/modules.dep" ] || die "depmod produced no modules.dep"
    touch "$KDIR/.complete"
fi

cat > "$CACHE_DIR/kernel.env.tmp" <<ENV
KVER=$KVER
KDIR=$KDIR
VMLINUZ=$KDIR/boot/vmlinuz-$KVER
KCONFIG=$KDIR/boot/config-$KVER
MODDIR=$KDIR/lib/modules/$KVER
ENV
mv "$CACHE_DIR/kernel.env.tmp" "$CACHE_DIR/kernel.env"
log "ready: kernel $KVER ($CACHE_DIR/kernel.env)"
