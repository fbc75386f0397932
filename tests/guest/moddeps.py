#!/usr/bin/env python3
"""Order kernel modules for insmod, without kmod (python3 stdlib only).

Usage: moddeps.py MODDIR MODULE [MODULE...]

MODDIR is an unpacked /lib/modules/<version> directory.  A Debian
linux-image .deb ships no modules.dep (depmod runs at install time), so
setup.sh generates modules.dep and modules.alias there with
`busybox depmod -b`.  This script prints one line per module to load,
dependencies first (the reverse of a modules.dep line, which is the order
modprobe uses):

    hard kernel/drivers/virtio/virtio_ring.ko
    soft kernel/crypto/crc32c_generic.ko

"hard" modules are the requested ones and their modules.dep dependencies;
"soft" ones come from the modules' "softdep=pre:" .modinfo entries (e.g.
ext4 -> crypto-crc32c, resolved through modules.alias to every module
providing it) and may fail to load without harm.  Modules listed in
modules.builtin are skipped (noted on stderr).  Without modules.dep the
"depends=" .modinfo entries are used instead.
"""
import fnmatch
import os
import struct
import sys


def modinfo(path):
    """Return the key=value strings of the .modinfo section of an ELF64 .ko."""
    with open(path, "rb") as f:
        ehdr = f.read(64)
        if ehdr[:4] != b"\x7fELF" or ehdr[4] != 2 or ehdr[5] != 1:
            raise ValueError(f"{path}: not a little-endian ELF64 file")
        e_shoff, = struct.unpack_from("<Q", ehdr, 0x28)
        e_shentsize, e_shnum, e_shstrndx = struct.unpack_from("<HHH", ehdr, 0x3A)
        f.seek(e_shoff)
        table = f.read(e_shentsize * e_shnum)
        shdrs = [struct.unpack_from("<IIQQQQ", table, i * e_shentsize) for i in range(e_shnum)]
        _, _, _, _, stroff, strsize = shdrs[e_shstrndx]
        f.seek(stroff)
        strtab = f.read(strsize)
        for name, _typ, _flags, _addr, offset, size in shdrs:
            if strtab[name:strtab.index(b"\0", name)] == b".modinfo":
                f.seek(offset)
                raw = f.read(size)
                return [s.decode("utf-8", "replace") for s in raw.split(b"\0") if s]
    return []


def norm(name):
    return name.replace("-", "_")


def modname(rel):
    base = os.path.basename(rel)
    for ext in (".ko", ".ko.xz", ".ko.zst", ".ko.gz"):
        if base.endswith(ext):
            return norm(base[: -len(ext)])
    return norm(base)


class Modules:
    def __init__(self, moddir):
        self.moddir = moddir
        self.path = {}  # name -> relative path
        self.deps = None  # name -> [relative paths] from modules.dep
        dep_file = os.path.join(moddir, "modules.dep")
        if os.path.exists(dep_file):
            self.deps = {}
            with open(dep_file) as f:
                for line in f:
                    if ":" not in line:
                        continue
                    mod, _, rest = line.partition(":")
                    mod = mod.strip()
                    name = modname(mod)
                    self.path.setdefault(name, mod)
                    self.deps[name] = [modname(d) for d in rest.split()]
        else:
            for root, _dirs, files in os.walk(os.path.join(moddir, "kernel")):
                for fn in files:
                    if fn.endswith(".ko"):
                        rel = os.path.relpath(os.path.join(root, fn), moddir)
                        self.path.setdefault(modname(rel), rel)
        self.builtin = set()
        try:
            with open(os.path.join(moddir, "modules.builtin")) as f:
                self.builtin = {modname(l.strip()) for l in f if l.strip()}
        except FileNotFoundError:
            pass
        self._aliases = None

    def aliases(self):
        """List of (pattern, module) pairs."""
        if self._aliases is None:
            self._aliases = []
            alias_file = os.path.join(self.moddir, "modules.alias")
            if os.path.exists(alias_file):
                with open(alias_file) as f:
                    for line in f:
                        parts = line.split()
                        if len(parts) == 3 and parts[0] == "alias":
                            self._aliases.append((parts[1], norm(parts[2])))
            else:  # slow path: read every module's .modinfo
                for name, rel in self.path.items():
                    for kv in modinfo(os.path.join(self.moddir, rel)):
                        if kv.startswith("alias="):
                            self._aliases.append((kv[6:], name))
        return self._aliases

    def lookup(self, name):
        """Module names providing NAME (a module name or an alias)."""
        n = norm(name)
        if n in self.path or n in self.builtin:
            return [n]
        exact = {m for pat, m in self.aliases() if pat == name}
        if exact:
            return sorted(exact)
        return sorted({m for pat, m in self.aliases() if fnmatch.fnmatchcase(name, pat)})

    def hard_deps(self, name):
        if self.deps is not None:
            return self.deps.get(name, [])[::-1]
        out = []
        for kv in modinfo(os.path.join(self.moddir, self.path[name])):
            if kv.startswith("depends="):
                out += [norm(d) for d in kv[8:].split(",") if d]
        return out

    def soft_pre(self, name):
        out = []
        for kv in modinfo(os.path.join(self.moddir, self.path[name])):
            if kv.startswith("softdep="):
                mode = None
                for tok in kv[8:].split():
                    if tok.endswith(":"):
                        mode = tok[:-1]
                    elif mode == "pre":
                        out.append(tok)
        return out


def resolve(moddir, wanted):
    mods = Modules(moddir)
    order, state = [], {}

    def visit(name, kind, chain):
        if name in mods.builtin:
            print(f"moddeps: {name} is built in", file=sys.stderr)
            return
        if name not in mods.path:
            raise SystemExit(f"moddeps: module {name} not found in {moddir} "
                             f"(needed by {' -> '.join(chain) or 'the request'})")
        st = state.get(name)
        if st is not None:
            if st == "visiting":
                raise SystemExit(f"moddeps: dependency cycle at {name}")
            return
        state[name] = "visiting"
        for alias in mods.soft_pre(name):
            provs = mods.lookup(alias)
            if not provs:
                print(f"moddeps: soft dependency {alias} of {name} not found, skipped", file=sys.stderr)
            for p in provs:
                visit(p, "soft", chain + [name])
        for d in mods.hard_deps(name):
            visit(d, kind, chain + [name])
        state[name] = "done"
        order.append((kind, mods.path[name]))

    for w in wanted:
        provs = mods.lookup(w)
        if not provs:
            raise SystemExit(f"moddeps: module {w} not found in {moddir}")
        for p in provs:
            visit(p, "hard", [])
    return order


def main(argv):
    if len(argv) < 3:
        print(__doc__, file=sys.stderr)
        return 2
    for kind, rel in resolve(argv[1], argv[2:]):
        print(kind, rel)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
