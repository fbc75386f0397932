"""`avml symbols` against an independent BTF reader: Debian's bpftool.

For every struct and union of a kernel's BTF, the ISF that `avml symbols` writes
offline must give the size, every member's byte offset, bitfield position and
width, and every member's type (pointers, arrays, base types, named and unnamed
structs, unions and enums, with typedefs and qualifiers resolved) exactly as
`bpftool btf dump file F format raw` prints them; enums and base types too.

Kernels checked:
  - this machine's /sys/kernel/btf/vmlinux (with a made-up kallsyms: types do not
    depend on addresses);
  - with AVML_GUEST_SYMBOLS=DIR, the BTF, kallsyms and banner copied out of the QEMU
    guest (tests/guest/test_acquire.sh sets it), so the Debian 6.1 kernel too.

Run:  AVML_BIN=.build/debug/avml python3 -m pytest tests/interop/test_btf_bpftool.py
"""

from __future__ import annotations

import base64
import gzip
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

import interop_util as u

HOST_BTF = Path("/sys/kernel/btf/vmlinux")
QUALIFIERS = {"TYPEDEF", "CONST", "VOLATILE", "RESTRICT", "TYPE_TAG"}
FLOATING = {"float", "double", "long double"}

TYPE_LINE = re.compile(r"^\[(\d+)\] (\w+) '([^']*)'(.*)$")
MEMBER_LINE = re.compile(r"^\t'([^']*)' type_id=(\d+) bits_offset=(\d+)(?: bitfield_size=(\d+))?$")
ENUM_LINE = re.compile(r"^\t'([^']*)' val=(-?\d+)(?:ULL|LL)?$")


def parse_raw(text: str) -> dict[int, dict]:
    """bpftool's raw dump: {id: {kind, name, fields..., members/values}}."""
    types: dict[int, dict] = {}
    current = None
    for line in text.splitlines():
        if line.startswith("\t"):
            if current is None:
                raise AssertionError(f"member line before any type: {line!r}")
            if current["kind"] in ("STRUCT", "UNION"):
                match = MEMBER_LINE.match(line)
                assert match, f"unexpected member line {line!r}"
                name, type_id, bits, width = match.groups()
                current["members"].append(
                    {"name": "" if name == "(anon)" else name, "type": int(type_id), "bits": int(bits),
                     "width": int(width or 0)})
            elif current["kind"] in ("ENUM", "ENUM64"):
                match = ENUM_LINE.match(line)
                assert match, f"unexpected enum line {line!r}"
                current["values"][match.group(1)] = int(match.group(2))
            continue
        match = TYPE_LINE.match(line)
        assert match, f"unexpected type line {line!r}"
        type_id, kind, name, rest = match.groups()
        fields = dict(re.findall(r"(\w+)=([^\s,]+)", rest))
        current = {"kind": kind, "name": "" if name == "(anon)" else name, **fields, "members": [], "values": {}}
        types[int(type_id)] = current
    return types


class Expected:
    """What the ISF must say, derived from bpftool's dump alone (plus avml's naming rule)."""

    def __init__(self, types: dict[int, dict]):
        self.types = types
        self.user_names: dict[int, str] = {}
        self.enum_names: dict[int, str] = {}
        taken_user: set[str] = set()
        taken_enum: set[str] = set()
        # A type without a tag takes the name of the first typedef that names it (dwarf2json's
        # kernel_cap_t); tags are given out first.
        typedef_names: dict[int, str] = {}
        for type_id in sorted(types):
            t = types[type_id]
            if t["kind"] == "TYPEDEF" and t["name"]:
                target = types.get(int(t["type_id"]))
                if target and not target["name"] and target["kind"] in ("STRUCT", "UNION", "ENUM", "ENUM64"):
                    typedef_names.setdefault(int(t["type_id"]), t["name"])
        # A tag defined several times is the name of its most used definition (members and
        # variables, through pointers, qualifiers and arrays; the first of a tie), the others
        # TAG__ID.
        first_of: dict[tuple[str, str], int] = {}
        preferred: dict[tuple[str, str], int] = {}
        uses = self._uses()
        for type_id in sorted(types):
            t = types[type_id]
            space = {"STRUCT": "user", "UNION": "user", "ENUM": "enum", "ENUM64": "enum"}.get(t["kind"])
            if space and t["name"]:
                key = (space, t["name"])
                first_of.setdefault(key, type_id)
                if uses.get(type_id, 0) > uses.get(preferred.get(key, first_of[key]), 0):
                    preferred[key] = type_id
        for key, type_id in preferred.items():
            names, taken = (self.user_names, taken_user) if key[0] == "user" else (self.enum_names, taken_enum)
            names[type_id] = self._unique(key[1], type_id, taken)
        for tags in (True, False):
            for type_id in sorted(types):
                t = types[type_id]
                if bool(t["name"]) != tags:
                    continue
                if t["kind"] in ("STRUCT", "UNION") and type_id not in self.user_names:
                    base = t["name"] or typedef_names.get(type_id) or f"unnamed_{t['kind'].lower()}_{type_id}"
                    self.user_names[type_id] = self._unique(base, type_id, taken_user)
                elif t["kind"] in ("ENUM", "ENUM64") and type_id not in self.enum_names:
                    base = t["name"] or typedef_names.get(type_id) or f"unnamed_enum_{type_id}"
                    self.enum_names[type_id] = self._unique(base, type_id, taken_enum)

    def _uses(self) -> dict[int, int]:
        """How many members and variables have each type, through qualifiers, pointers and arrays."""
        counts: dict[int, int] = {}

        def use(type_id: int) -> None:
            for _ in range(32):
                t = self.types.get(type_id)
                if not t or t["kind"] not in QUALIFIERS | {"PTR", "ARRAY"}:
                    break
                type_id = int(t["type_id"])
            counts[type_id] = counts.get(type_id, 0) + 1

        for t in self.types.values():
            if t["kind"] in ("STRUCT", "UNION"):
                for member in t["members"]:
                    use(member["type"])
            elif t["kind"] == "VAR":
                use(int(t["type_id"]))
        return counts

    @staticmethod
    def _unique(name: str, type_id: int, taken: set[str]) -> str:
        while name in taken:
            name += f"__{type_id}"
        taken.add(name)
        return name

    def strip(self, type_id: int) -> int:
        while type_id and self.types[type_id]["kind"] in QUALIFIERS:
            type_id = int(self.types[type_id]["type_id"])
        return type_id

    def descriptor(self, type_id: int) -> dict:
        type_id = self.strip(type_id)
        if type_id == 0:
            return {"kind": "base", "name": "void"}
        t = self.types[type_id]
        kind = t["kind"]
        if kind in ("INT", "FLOAT"):
            return {"kind": "base", "name": t["name"]}
        if kind == "PTR":
            return {"kind": "pointer", "subtype": self.descriptor(int(t["type_id"]))}
        if kind == "ARRAY":
            return {"kind": "array", "count": int(t["nr_elems"]), "subtype": self.descriptor(int(t["type_id"]))}
        if kind in ("STRUCT", "UNION"):
            return {"kind": kind.lower(), "name": self.user_names[type_id]}
        if kind == "FWD":
            return {"kind": t["fwd_kind"], "name": t["name"]}
        if kind in ("ENUM", "ENUM64"):
            return {"kind": "enum", "name": self.enum_names[type_id]}
        if kind in ("FUNC_PROTO", "FUNC"):
            return {"kind": "function"}
        raise AssertionError(f"type {type_id} ({kind}) used as a data type")

    def member_bits(self, member: dict) -> tuple[int, int]:
        """(absolute bit offset, bitfield width or 0), folding in an INT's own bit offset (BTF without kind_flag)."""
        bits, width = member["bits"], member["width"]
        if width == 0:
            resolved = self.strip(member["type"])
            t = self.types.get(resolved)
            if t and t["kind"] == "INT":
                nr_bits, int_offset, size = int(t["nr_bits"]), int(t["bits_offset"]), int(t["size"])
                if nr_bits < size * 8 or int_offset:
                    return bits + int_offset, nr_bits
        return bits, width


def make_isf(tmp: Path, btf: Path, kallsyms: Path, banner: Path) -> dict:
    out = tmp / "table.isf.json.gz"
    result = subprocess.run(
        [u.AVML_BIN, "symbols", "--btf", str(btf), "--kallsyms", str(kallsyms), "--banner", str(banner), str(out)],
        capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    with gzip.open(out) as f:
        return json.load(f)


def host_files(tmp: Path) -> tuple[Path, Path, Path]:
    # Types do not depend on addresses: this machine's kallsyms may list functions only,
    # so the symbols Volatility needs are made up.
    kallsyms = tmp / "kallsyms"
    kallsyms.write_text("ffffffff81000000 T _text\nffffffff82000000 D init_task\nffffffff82001000 D init_mm\n"
                        "ffffffff82002000 D init_files\nffffffff82003000 R linux_banner\n"
                        "ffffffff82004000 D init_top_pgt\n")
    banner = tmp / "version"
    banner.write_text(Path("/proc/version").read_text())
    return HOST_BTF, kallsyms, banner


def kernels() -> list:
    cases = [pytest.param("host", id="host-sys-kernel-btf")]
    guest = os.environ.get("AVML_GUEST_SYMBOLS")
    if guest:
        cases.append(pytest.param(guest, id="qemu-guest-debian-6.1"))
    return cases


@pytest.fixture(scope="module", params=kernels())
def kernel(request, tmp_path_factory):
    if shutil.which("bpftool") is None:
        pytest.fail("bpftool is not installed (scripts/setup-test-deps installs it)")
    tmp = tmp_path_factory.mktemp("btf")
    if request.param == "host":
        if not HOST_BTF.exists():
            pytest.skip("this machine has no /sys/kernel/btf/vmlinux")
        btf, kallsyms, banner = host_files(tmp)
    else:
        directory = Path(request.param)
        btf, kallsyms, banner = directory / "btf", directory / "kallsyms", directory / "version"
    raw = subprocess.run(["bpftool", "btf", "dump", "file", str(btf), "format", "raw"], capture_output=True, text=True,
                         check=True, timeout=300).stdout
    types = parse_raw(raw)
    return types, Expected(types), make_isf(tmp, btf, kallsyms, banner)


def test_every_struct_and_union_matches_bpftool(kernel):
    types, expected, isf = kernel
    user_types = isf["user_types"]
    checked = members = bitfields = 0
    problems = []
    for type_id, t in types.items():
        if t["kind"] not in ("STRUCT", "UNION"):
            continue
        name = expected.user_names[type_id]
        entry = user_types.get(name)
        if entry is None:
            problems.append(f"[{type_id}] {name}: missing from the ISF")
            continue
        checked += 1
        if entry["kind"] != t["kind"].lower() or entry["size"] != int(t["size"]):
            problems.append(f"[{type_id}] {name}: {entry['kind']} size {entry['size']}, bpftool {t['kind']} size {t['size']}")
        fields = entry["fields"]
        if len(fields) != len(t["members"]):
            problems.append(f"[{type_id}] {name}: {len(fields)} fields, bpftool {len(t['members'])} members")
        for index, member in enumerate(t["members"]):
            key = member["name"] or f"unnamed_field_{index}"
            field = fields.get(key)
            if field is None:
                problems.append(f"[{type_id}] {name}.{key}: missing")
                continue
            members += 1
            bits, width = expected.member_bits(member)
            ftype = field["type"]
            if width:
                bitfields += 1
                got = (field["offset"] * 8 + ftype.get("bit_position", -10**9), ftype.get("bit_length"))
                want_type = expected.descriptor(member["type"])
                if ftype.get("kind") != "bitfield" or got != (bits, width) or ftype["type"] != want_type:
                    problems.append(f"[{type_id}] {name}.{key}: bitfield {got} {ftype}, bpftool bits {bits} width {width}")
                # Volatility reads the base type at `offset`: the field must lie inside it.
                size = int(types[expected.strip(member["type"])]["size"])
                if not 0 <= ftype["bit_position"] <= size * 8 - width:
                    problems.append(f"[{type_id}] {name}.{key}: bits outside the {size}-byte unit at {field['offset']}")
            else:
                want = expected.descriptor(member["type"])
                if field["offset"] * 8 != bits or ftype != want:
                    problems.append(f"[{type_id}] {name}.{key}: offset {field['offset']} {ftype}, bpftool bits {bits} {want}")
            anonymous = not member["name"] and types.get(expected.strip(member["type"]), {}).get("kind") in ("STRUCT",
                                                                                                              "UNION")
            if field.get("anonymous", False) != anonymous:
                problems.append(f"[{type_id}] {name}.{key}: anonymous={field.get('anonymous')}, expected {anonymous}")
    assert not problems, f"{len(problems)} differences, first: " + "\n".join(problems[:20])
    assert checked == len(user_types), "the ISF holds user types bpftool does not list"
    assert checked > 1000 and members > 10000 and bitfields > 100, (checked, members, bitfields)
    print(f"{checked} structs and unions, {members} members, {bitfields} bitfields match bpftool")


def test_enums_and_base_types_match_bpftool(kernel):
    types, expected, isf = kernel
    enums = isf["enums"]
    problems = []
    # pahole before 1.22 wrote 1-byte integers without their sign, `signed char` too (5.10's BTF):
    # then `signed char` is signed by its name and `char` as the kernel was built
    sign_lost = any(t["kind"] == "INT" and t["name"] == "signed char" and "SIGNED" not in t["encoding"]
                    for t in types.values())
    banner = base64.b64decode(isf["symbols"]["linux_banner"]["constant_data"])
    found = re.match(rb"Linux version (\d+)\.(\d+)", banner)
    version = (int(found.group(1)), int(found.group(2))) if found else (0, 0)
    for type_id, t in types.items():
        if t["kind"] in ("ENUM", "ENUM64"):
            entry = enums.get(expected.enum_names[type_id])
            if entry is None or entry["size"] != int(t["size"]) or entry["constants"] != t["values"]:
                problems.append(f"[{type_id}] {t['kind']} {t['name']!r}: {entry and entry['size']}, bpftool {t['size']}")
            elif isf["base_types"].get(entry["base"], {}).get("size") != int(t["size"]) \
                    or isf["base_types"][entry["base"]]["kind"] not in ("int", "char"):
                problems.append(f"[{type_id}] enum base {entry['base']!r} is not a {t['size']}-byte integer")
        elif t["kind"] == "INT":
            base = isf["base_types"].get(t["name"])
            signed, kind = "SIGNED" in t["encoding"], base and base["kind"]
            if t["name"] in FLOATING:  # pahole before 1.21 wrote floats as INTs (5.10's double)
                signed, kind = True, "float"
            elif sign_lost and t["name"] == "signed char":
                signed = True
            elif sign_lost and t["name"] == "char":
                signed = version < (6, 2)  # x86-64 builds with -funsigned-char since 6.2
            if base is None or base["size"] != int(t["size"]) or base["signed"] != signed or base["kind"] != kind:
                problems.append(f"[{type_id}] INT {t['name']!r}: {base}")
    assert not problems, f"{len(problems)} differences, first: " + "\n".join(problems[:20])
    assert isf["base_types"]["pointer"]["size"] == 8 and isf["base_types"]["void"]["kind"] == "void"
    assert len(enums) == sum(1 for t in types.values() if t["kind"] in ("ENUM", "ENUM64"))


def test_validates_against_volatility_schema(kernel):
    """As Volatility checks a table when it loads it: jsonschema against the schema of its format
    (tests/guest/check_symbols.py also checks the newest, 6.3.0)."""
    import warnings

    import jsonschema
    import volatility3

    _, _, isf = kernel
    schema = json.loads((Path(volatility3.__file__).parent / "schemas" / f"schema-{isf['metadata']['format']}.json").read_text())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # the schemas name no draft
        jsonschema.validate(isf, schema)
