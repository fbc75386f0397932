"""bench_guest's set-up: what the guest benchmark needs before the guest boots.

The guest (tests/guest/setup.sh, idempotent), the headers of its kernel and build tools (apt,
under `flock /tmp/apt.lock`), LiME's source from Debian's package (downloaded and unpacked,
never installed, so dkms leaves the host alone) built against those headers, and the static
avml (AVML_BIN, or scripts/build-static).  Kept apart from the run and the report because it
is slow, cached under CACHE and touches the host's packages.  Failures raise (RuntimeError,
OSError, KeyError); bench_guest reports them as a problem and stops.
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

# What prepare() found or made: the guest kernel's release, LiME's source folder and module, the
# kernel's sha256-ssse3.ko to load before LiME (None: use sha256-generic), the static avml.
Prepared = collections.namedtuple("Prepared", "kver source lime_ko ssse3 avml")


def prepare(cache, logfile, load_ssse3):
    """Everything the guest run needs, in order; raises RuntimeError, OSError or KeyError."""
    kernel = guest_kernel(cache, logfile)
    kver = kernel["KVER"]
    headers = kernel_headers(kver, logfile)
    source = lime_source(cache, logfile)
    lime_ko = build_lime(source, headers, kver, cache, logfile)
    ssse3 = os.path.join(kernel["MODDIR"], "kernel", "arch", "x86", "crypto", "sha256-ssse3.ko")
    ssse3 = ssse3 if load_ssse3 and os.path.isfile(ssse3) else None
    avml = static_avml(logfile)
    return Prepared(kver, source, lime_ko, ssse3, avml)


def apt_get(arguments, logfile, cwd=None):
    """apt-get under the machine's apt lock, waiting for dpkg's own lock too."""
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    run_logged(["flock", "/tmp/apt.lock", "apt-get", "-o", "DPkg::Lock::Timeout=600", *arguments], logfile,
               env=env, cwd=cwd)


def package_installed(name):
    status = subprocess.run(["dpkg-query", "-W", "-f=${Status}", name], capture_output=True, text=True).stdout
    return "install ok installed" in status


def guest_kernel(cache, logfile):
    """tests/guest/setup.sh (idempotent), then the guest's kernel.env as a dict."""
    run_logged([os.path.join(GUEST, "setup.sh"), cache], logfile)
    env = {}
    with open(os.path.join(cache, "kernel.env")) as f:
        for line in f:
            key, _, value = line.strip().partition("=")
            env[key] = value
    return env


def kernel_headers(kver, logfile):
    """/usr/src/linux-headers-KVER, installing the Debian package when it is missing."""
    headers = f"/usr/src/linux-headers-{kver}"
    package = f"linux-headers-{kver}"
    if not package_installed(package) or not os.path.isfile(os.path.join(headers, "Makefile")):
        log(f"bench-guest: apt-get install {package}")
        try:
            apt_get(["install", "-y", "-qq", "--no-install-recommends", package], logfile)
        except RuntimeError:
            apt_get(["update", "-qq"], logfile)
            apt_get(["install", "-y", "-qq", "--no-install-recommends", package], logfile)
    missing = [tool for tool in ("make", "gcc") if shutil.which(tool) is None]
    if missing:
        log(f"bench-guest: apt-get install build-essential (no {', '.join(missing)})")
        apt_get(["install", "-y", "-qq", "--no-install-recommends", "build-essential"], logfile)
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


def build_lime(source, headers, kver, cache, logfile):
    """lime.ko for the guest kernel: the source copied to CACHE/lime/build-*, built with kbuild."""
    build = os.path.join(cache, "lime", f"build-{os.path.basename(source)}-{kver}")
    module = os.path.join(build, "lime.ko")
    if not os.path.isfile(module):
        shutil.rmtree(build, ignore_errors=True)
        shutil.copytree(source, build)
        log(f"bench-guest: building {os.path.basename(source)} against {headers}")
        run_logged(["make", "-C", headers, f"M={build}", "modules"], logfile)
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
