"""bench_guest's set-up: what the guest benchmark needs before the guest boots.

The guest of the kernel series (tests/guest/setup.sh, idempotent); a minimal Debian root of the
kernel's own suite (debootstrap, cached under .build-cache/lime-root-SUITE) with the kernel's
headers and that suite's compiler; LiME's source from Debian's package (downloaded and unpacked,
never installed, so dkms leaves the host alone) built in that root; and the static avml
(AVML_BIN, or scripts/build-static).  Kept apart from the run and the report because it is slow,
cached, and downloads packages.  Failures raise (RuntimeError, OSError, KeyError); bench_guest
reports them as a problem and stops.
"""
import collections
import glob
import os
import re
import shutil
import subprocess
import tempfile

from benchlib import GUEST, ROOT, log, run_logged

LIME_PACKAGE = "lime-forensics-dkms"
MIRROR = "http://deb.debian.org/debian"
SECURITY_MIRROR = "http://deb.debian.org/debian-security"
KERNELS = os.path.join(GUEST, "kernels")  # series, pinned package, suite

# What prepare() found or made: the guest kernel's release, LiME's source folder and module, the
# kernel's sha256-ssse3.ko to load before LiME (None: use sha256-generic), the static avml.
Prepared = collections.namedtuple("Prepared", "kver source lime_ko ssse3 avml")


def prepare(series, cache, logfile, load_ssse3):
    """Everything the guest run needs, in order; raises RuntimeError, OSError or KeyError."""
    kernel = guest_kernel(series, cache, logfile)
    kver = kernel["KVER"]
    root = build_root(suite_of(series), logfile)
    headers = kernel_headers(root, kver, logfile)
    source = lime_source(cache, logfile)
    lime_ko = build_lime(source, root, headers, kver, logfile)
    ssse3 = os.path.join(kernel["MODDIR"], "kernel", "arch", "x86", "crypto", "sha256-ssse3.ko")
    ssse3 = ssse3 if load_ssse3 and os.path.isfile(ssse3) else None
    avml = static_avml(logfile)
    return Prepared(kver, source, lime_ko, ssse3, avml)


def known_series():
    """The kernel series tests/guest/kernels lists, with their Debian suites, in its order."""
    with open(KERNELS) as f:
        rows = [line.split() for line in f if line.strip() and not line.startswith("#")]
    return {row[0]: row[2] for row in rows}


def suite_of(series):
    suites = known_series()
    if series not in suites:
        raise KeyError(f"no kernel series {series} in {KERNELS} (known: {', '.join(suites)})")
    return suites[series]


def apt_get(arguments, logfile, cwd=None):
    """apt-get under the machine's apt lock, waiting for dpkg's own lock too."""
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    run_logged(["flock", "/tmp/apt.lock", "apt-get", "-o", "DPkg::Lock::Timeout=600", *arguments], logfile,
               env=env, cwd=cwd)


def guest_kernel(series, cache, logfile):
    """tests/guest/setup.sh CACHE SERIES (idempotent), then the guest's kernel.env as a dict."""
    run_logged([os.path.join(GUEST, "setup.sh"), cache, series], logfile)
    env = {}
    with open(os.path.join(cache, "kernel.env")) as f:
        for line in f:
            key, _, value = line.strip().partition("=")
            env[key] = value
    return env


def build_root(suite, logfile):
    """A minimal Debian SUITE under .build-cache/lime-root-SUITE (debootstrap, once), to build LiME in.

    A module is built with its kernel's own headers, kbuild tools and compiler (Debian's 5.10 with
    gcc 10, 6.12 with gcc 14, whose tools need trixie's C library), which only that suite has; in
    a root of its own, the host's packages and apt sources stay as they are.
    """
    root = os.path.join(ROOT, ".build-cache", f"lime-root-{suite}")
    ready = os.path.join(root, ".avml-ready")
    if os.path.isfile(ready):
        return root
    if shutil.which("debootstrap") is None:
        log("bench-guest: apt-get install debootstrap")
        apt_get(["install", "-y", "-qq", "--no-install-recommends", "debootstrap"], logfile)
    shutil.rmtree(root, ignore_errors=True)
    log(f"bench-guest: debootstrap {suite} into {root} (a few minutes, once)")
    run_logged(["debootstrap", "--variant=minbase", "--include=make,gcc,libc6-dev", suite, root, MIRROR],
               logfile)
    for extra in glob.glob(os.path.join(root, "etc", "apt", "sources.list.d", "*")):
        os.unlink(extra)
    with open(os.path.join(root, "etc", "apt", "sources.list"), "w") as f:
        f.write(f"deb {MIRROR} {suite} main\ndeb {SECURITY_MIRROR} {suite}-security main\n")
    open(ready, "w").close()
    return root


def in_root(root, command, logfile):
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive", LC_ALL="C")
    run_logged(["chroot", root, *command], logfile, env=env)


def kernel_headers(root, kver, logfile):
    """/usr/src/linux-headers-KVER in ROOT, installed there with the suite's apt when missing."""
    headers = f"/usr/src/linux-headers-{kver}"
    if not os.path.isfile(os.path.join(root, headers.lstrip("/"), "Makefile")):
        log(f"bench-guest: apt-get install linux-headers-{kver} in {root}")
        in_root(root, ["apt-get", "update", "-qq"], logfile)
        in_root(root, ["apt-get", "install", "-y", "-qq", "--no-install-recommends", f"linux-headers-{kver}"],
                logfile)
    return headers


def lime_source(cache, logfile):
    """LiME's source from Debian's package, unpacked (not installed) under CACHE/lime/."""
    base = os.path.join(cache, "lime")
    unpacked = os.path.join(base, "deb")
    found = glob.glob(os.path.join(unpacked, "usr", "src", "lime-forensics-*"))
    if found:
        return found[0]
    os.makedirs(base, exist_ok=True)
    download = tempfile.mkdtemp(prefix=".download.", dir=base)
    os.chmod(download, 0o777)  # apt's _apt user writes the download here
    try:
        try:
            apt_get(["download", LIME_PACKAGE], logfile, cwd=download)
        except RuntimeError:
            apt_get(["update", "-qq"], logfile)
            apt_get(["download", LIME_PACKAGE], logfile, cwd=download)
        debs = glob.glob(os.path.join(download, f"{LIME_PACKAGE}_*.deb"))
        if len(debs) != 1:
            raise RuntimeError(f"apt-get download {LIME_PACKAGE} left {debs} in {download}")
        shutil.rmtree(unpacked, ignore_errors=True)
        run_logged(["dpkg-deb", "-x", debs[0], unpacked], logfile)
        shutil.move(debs[0], os.path.join(base, os.path.basename(debs[0])))
    finally:
        shutil.rmtree(download, ignore_errors=True)
    found = glob.glob(os.path.join(unpacked, "usr", "src", "lime-forensics-*"))
    if not found:
        raise RuntimeError(f"no usr/src/lime-forensics-* in the {LIME_PACKAGE} package")
    return found[0]


def module_vermagic(path):
    with open(path, "rb") as f:
        match = re.search(rb"vermagic=([^\0]*)", f.read())
    return match.group(1).decode(errors="replace") if match else ""


def build_lime(source, root, headers, kver, logfile):
    """lime.ko for the guest kernel: the source copied into ROOT/build/lime-KVER, built there."""
    build = f"/build/{os.path.basename(source)}-{kver}"
    module = os.path.join(root, build.lstrip("/"), "lime.ko")
    if not os.path.isfile(module):
        shutil.rmtree(os.path.dirname(module), ignore_errors=True)
        shutil.copytree(source, os.path.dirname(module))
        log(f"bench-guest: building {os.path.basename(source)} against {headers} in {root}")
        in_root(root, ["make", "-C", headers, f"M={build}", "modules"], logfile)
    vermagic = module_vermagic(module)
    if not vermagic.startswith(kver + " "):
        raise RuntimeError(f"{module} has vermagic {vermagic!r}, not for kernel {kver}")
    return module


def static_avml(logfile):
    if os.environ.get("AVML_BIN"):
        path = os.path.abspath(os.environ["AVML_BIN"])
        if not os.access(path, os.X_OK):
            raise RuntimeError(f"AVML_BIN={path} is not an executable")
        log(f"bench-guest: using AVML_BIN={path}")
        return path
    log("bench-guest: building the static avml (flock /tmp/avml-build.lock scripts/build-static; minutes)")
    with open(logfile, "a") as f:
        result = subprocess.run(["flock", "/tmp/avml-build.lock", os.path.join(ROOT, "scripts", "build-static")],
                                stdout=subprocess.PIPE, stderr=f, text=True, cwd=ROOT)
    lines = result.stdout.strip().splitlines()
    if result.returncode != 0 or not lines:
        raise RuntimeError(f"scripts/build-static exited {result.returncode}; see {logfile}")
    return lines[-1]
