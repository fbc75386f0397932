#!/usr/bin/env python3
"""compare_isf.py OURS REFERENCE: our symbol table, compared whole with dwarf2json's.

    python3 tests/guest/compare_isf.py OURS REFERENCE [--json REPORT] [--list N]
                                       [--kallsyms FILE] [--strict]

OURS is the Volatility 3 symbol table (ISF JSON, plain, .gz or .xz) that `avml symbols`
made in the guest from the live kernel's BTF and kallsyms; REFERENCE is the table
Volatility's own dwarf2json made from the debug vmlinux of the same build (see
tests/guest/testdata/isf/README.md). Our table is what makes a capture analysable without the
debug package, so it must give Volatility the same answers as the reference: a wrong
member offset or symbol address gives wrong rows silently, with no error anywhere. This
script says precisely where the two tables differ (project issue 24).

Compared:
  * symbols in both: the address (after a constant KASLR shift, if one separates them;
    reported) and, when both give one, the type; symbols on one side only are counted and
    grouped by a reason read from the tables (name, address, the other table);
  * structs/unions in both: kind, size, and for each member in both its offset and type;
    members on one side only are listed. Types are compared structurally: base by name,
    pointer/array recursively (array count), bitfield by its first bit (member offset * 8
    + bit_position: dwarf2json and we split that differently between the two), length and
    type; struct/union/enum by name, except where the names differ: anonymous types
    (ours `unnamed_struct_N`/`unnamed_union_N`/`unnamed_enum_N`, dwarf2json `unnamed_` +
    16 hex digits, or the name of a typedef of an anonymous type), typedef names
    dwarf2json uses for a named struct (`spinlock_t` for `struct spinlock`), and our
    `name__BTFID` for a name defined several times: those are compared by layout where they
    sit (size, members, recursively) and the name pairs are reported. Anonymous members
    (`"anonymous": true`, `unnamed_field_*` numbered differently by each) pair by offset;
  * enums in both (anonymous ones paired by their constant names): size and constants, as
    bits of that size (a constant -1 of a signed base equals 0xffffffff of an unsigned
    one; such signedness differences are listed); base types in both: size, signedness.

--kallsyms FILE (the guest's /proc/kallsyms, copied out beside our table) explains
address mismatches of names kallsyms lists several times: which occurrence each took.

Exit status 1 when something that matters to Volatility differs: a symbol kallsyms lists once
with another address; a named struct/union in both with another size, member offset or member
type (inside anonymous members too); an enum's size or constants; a base type's size or
(not bool, not float) signedness. 2 on bad input, including tables of different kernels
(linux_banner). Listed with the reason and not failed (--strict fails them too):
  * the address of a name kallsyms lists several times (static functions, `.LC` labels):
    several objects share it, each table holds one, and none can hold them all;
  * differences in what no volatility3 code names (its Linux code's string constants that
    are names, "task_struct" or "vmlinux!init_task", and attribute names; read from the
    installed volatility3, strict when it is not installed): a symbol's type, a member's
    array flattened by pahole (same bytes, one dimension; fails where volatility3 names both
    the type and the member), a tag defined several times of which dwarf2json kept another
    definition (by compile-unit order, which BTF does not hold), enum values wider than 32
    bits in a BTF without ENUM64 (ours equal to the reference's modulo 2**32);
  * the few in KNOWN, which volatility3 names but cannot read differently, each with why.
Entries on one side only never fail: they are counted and listed for a later decision, like
the differences that do not change what Volatility reads (function typed void by
dwarf2json, enum signedness, bool signedness).
"""

from __future__ import annotations

import argparse
import ast
import base64
import collections
import gzip
import json
import lzma
import re
import sys
from pathlib import Path

# Anonymous type names, as each producer writes them (seen in the 5.10, 6.1, 6.12 tables).
OURS_ANON = re.compile(r"^unnamed_(struct|union|enum)_\d+$")
REF_ANON = re.compile(r"^unnamed_[0-9a-f]{16}$")
# Ours keeps every definition of a name BTF holds several times (two `struct slot` in
# different files) and suffixes the later ones with their BTF id: `slot__34237`.
OURS_DUPLICATE = re.compile(r"^(.+)__\d+$")
# Differences volatility3 names but cannot read differently, each with why (kind, name): reason.
KNOWN = {
    ("symbol type", "idt_desc"):
        "6.12's per-CPU idt_desc is a struct desc_ptr in BTF (its DATASEC gives it 10 bytes); dwarf2json typed "
        "it from another variable of that name (a 16-byte gate_desc); volatility3 names idt_desc only as a "
        "type (check_idt's idt_types), never this symbol",
    ("duplicated type", "node"):
        "volatility3 names \"node\" only as a member (mod_tree_node.node), never looks the type up",
}
NAME = re.compile(r"^(?:[A-Za-z0-9_]+!)?[A-Za-z_][A-Za-z0-9_]*$")
ANON_FIELD = re.compile(r"^unnamed_field_[0-9a-f]+$")
VOID = {"kind": "base", "name": "void"}  # dwarf2json's type of every symbol without DWARF


class BadInput(Exception):
    pass


def load(path: str) -> dict:
    try:
        with open(path, "rb") as f:
            magic = f.read(6)
        opener = gzip.open if magic[:2] == b"\x1f\x8b" else lzma.open if magic == b"\xfd7zXZ\x00" else open
        with opener(path, "rb") as f:
            table = json.load(f)
    except (OSError, ValueError, EOFError, lzma.LZMAError) as e:
        raise BadInput(f"{path}: cannot read an ISF JSON table: {e}") from e
    if not isinstance(table, dict):
        raise BadInput(f"{path}: not an ISF table")
    missing = [k for k in ("base_types", "user_types", "enums", "symbols") if not isinstance(table.get(k), dict)]
    if missing:
        raise BadInput(f"{path}: not an ISF table (no {', '.join(missing)})")
    return table


def banner(table: dict, path: str) -> bytes:
    data = table["symbols"].get("linux_banner", {}).get("constant_data")
    if not data:
        raise BadInput(f"{path}: no symbols.linux_banner.constant_data: cannot tell which kernel it describes")
    return base64.b64decode(data).rstrip(b"\0\n")


def anon(name: str, ours: bool) -> bool:
    return bool((OURS_ANON if ours else REF_ANON).match(name))


def duplicate_of(name: str, table: dict) -> str | None:
    """The plain name if `name` is our `name__BTFID` second definition of a name in table."""
    m = OURS_DUPLICATE.match(name)
    return m.group(1) if m and m.group(1) in table else None


class Comparer:
    """Compares two loaded tables; run() returns the report (plain, JSON-able)."""

    def __init__(self, ours: dict, ref: dict, kallsyms: dict[str, list[int]] | None = None,
                 volatility_names: tuple[set[str], set[str]] | None = None):
        self.o, self.r, self.kallsyms = ours, ref, kallsyms
        self.volatility_names = volatility_names
        self.layout_memo: dict[tuple[str, str], list] = {}
        self.in_progress: set[tuple[str, str]] = set()
        # (kind, ours name, reference name) of differently named types compared by layout
        self.pairs: set[tuple[str, str, str]] = set()

    # --- type descriptors -------------------------------------------------------------

    def desc(self, od: dict, rd: dict) -> list[tuple[str, str, str]]:
        """Differences between two type descriptors: [(path, kind, detail)], path relative,
        kind one of "type", and inside types compared by layout "size", "offset",
        "only-ours", "only-ref"."""
        ok, rk = od.get("kind"), rd.get("kind")
        differ = [("", "type", f"ours {show(od)}, reference {show(rd)}")]
        if ok != rk:
            return differ
        if ok == "base":
            return [] if od.get("name") == rd.get("name") else differ
        if ok == "pointer":
            return self.desc(od["subtype"], rd["subtype"])
        if ok == "array":
            (odims, oelem), (rdims, relem) = dims(od), dims(rd)
            if odims == rdims:
                return self.desc(oelem, relem)
            if prod(odims) == prod(rdims) and not self.desc(oelem, relem):
                # BTF has one dimension only: pahole flattens int a[2][3] to int a[6]
                return [("", "array-shape", f"ours {show(od)}, reference {show(rd)}")]
            return differ
        if ok == "bitfield":  # position compared by members(), with the offset
            return self.desc(od["type"], rd["type"]) if od.get("bit_length") == rd.get("bit_length") else differ
        if ok in ("struct", "union", "enum"):
            on, rn = od.get("name", ""), rd.get("name", "")
            if on == rn and not anon(on, True) and not anon(rn, False):
                return []  # the named types are compared on their own
            self.pairs.add((ok, on, rn))
            diffs = self.enum_layout(on, rn) if ok == "enum" else self.layout(on, rn)
            if diffs and duplicate_of(on, self.o["enums" if ok == "enum" else "user_types"]) == rn:
                # BTF points at one of several same-named types; an ISF name cannot say which,
                # and dwarf2json keeps a single definition per name
                p, k, d = diffs[0]
                return [("", "name-collision", f"ours {ok} {on} (a second definition of {rn}), the reference's "
                         f"only {rn} is another: {join(rn, p)} {d}")]
            return diffs
        return []  # function: nothing more to compare

    def enum_layout(self, on: str, rn: str) -> list:
        oe, re_ = self.o["enums"].get(on), self.r["enums"].get(rn)
        if oe is None and re_ is None:
            return []
        if oe is None or re_ is None:
            return [("", "type", f"enum {on} (ours) / {rn} (reference): definition missing")]
        bad = [text for kind, text in enum_diff(oe, re_) if kind in ("size", "constants")]
        return [("", "type", f"enum {on} (ours) vs {rn} (reference): {'; '.join(bad)}")] if bad else []

    def layout(self, on: str, rn: str) -> list:
        """Structs/unions of different names compared by layout (memoised)."""
        key = (on, rn)
        if key in self.layout_memo:
            return self.layout_memo[key]
        if key in self.in_progress:  # a type that points to itself: compared higher up
            return []
        ot, rt = self.o["user_types"].get(on), self.r["user_types"].get(rn)
        if ot is None and rt is None:  # opaque on both sides (declared, never defined)
            return []
        if ot is None or rt is None:
            return [("", "type", f"{on} (ours) / {rn} (reference): definition missing")]
        self.in_progress.add(key)
        out = self.members(ot, rt)
        self.in_progress.discard(key)
        self.layout_memo[key] = out
        return out

    def members(self, ot: dict, rt: dict) -> list:
        out = []
        if ot.get("kind") != rt.get("kind"):
            out.append(("", "type", f"ours a {ot.get('kind')}, reference a {rt.get('kind')}"))
        if ot.get("size") != rt.get("size"):
            out.append(("", "size", f"size ours {ot.get('size')}, reference {rt.get('size')}"))
        for name, (o, r) in pair_fields(ot.get("fields", {}), rt.get("fields", {})).items():
            if o is None:
                out.append((name, "only-ref", f"offset {r.get('offset')} {show(r['type'])}"))
            elif r is None:
                out.append((name, "only-ours", f"offset {o.get('offset')} {show(o['type'])}"))
            else:
                ob, rb = first_bit(o), first_bit(r)
                if ob != rb:
                    out.append((name, "offset", f"ours {where(o)}, reference {where(r)}"))
                out.extend((join(name, p), k, d) for p, k, d in self.desc(o["type"], r["type"]))
        return out

    # --- the parts ---------------------------------------------------------------------

    def compare_symbols(self) -> dict:
        os_, rs = self.o["symbols"], self.r["symbols"]
        both = sorted(set(os_) & set(rs))
        deltas = collections.Counter(os_[n]["address"] - rs[n]["address"] for n in both)
        shift, count = deltas.most_common(1)[0] if deltas else (0, 0)
        if count * 2 <= len(both):
            shift = 0
        ks_shift = kallsyms_shift(self.kallsyms, os_) if self.kallsyms else 0
        mismatch, type_mismatch, fn_data, typed_only_ref = [], [], [], []
        fn_void = ours_typed_ref_void = 0
        for n in both:
            o, r = os_[n], rs[n]
            if o["address"] - shift != r["address"]:
                mismatch.append({"symbol": n, "ours": hex(o["address"] - shift), "reference": hex(r["address"]),
                                 **self.explain_address(n, o["address"], r["address"] + shift, ks_shift)})
            ot, rt = o.get("type"), r.get("type")
            if rt is None or rt == VOID:
                if ot is not None and rt == VOID:
                    if ot.get("kind") == "function":
                        fn_void += 1  # dwarf2json writes every function's type as void
                    else:
                        ours_typed_ref_void += 1
            elif ot is None:
                typed_only_ref.append({"symbol": n, "reference": show(rt)})
            elif ot.get("kind") == "function":
                fn_data.append({"symbol": n, "reference": show(rt)})
            else:
                note = " (another symbol of that name: the addresses differ too)" \
                    if o["address"] - shift != r["address"] else ""
                type_mismatch.extend({"symbol": n, "where": p, "kind": k, "detail": d + note}
                                     for p, k, d in self.desc(ot, rt))
        return {
            "both": len(both),
            "kaslr_shift": hex(shift),
            "address_mismatch": mismatch,
            "address_mismatch_reasons": dict(collections.Counter(m.get("reason", "unexplained") for m in mismatch)),
            "type_mismatch": type_mismatch,
            "function_typed_void_in_reference": fn_void,
            "typed_in_ours_void_in_reference": ours_typed_ref_void,
            "function_in_ours_data_in_reference": fn_data,
            "typed_only_in_reference": typed_only_ref,
            "only_ref": group(sorted(set(rs) - set(os_)), lambda n, d=dotted(rs): symbol_reason(n, rs, os_, d)),
            "only_ours": group(sorted(set(os_) - set(rs)), lambda n, d=dotted(os_): symbol_reason(n, os_, rs, d)),
        }

    def explain_address(self, name: str, ours: int, ref: int, ks_shift: int) -> dict:
        if self.kallsyms is None:
            return {}
        addrs = [a - ks_shift for a in self.kallsyms.get(name, [])]
        if len(addrs) < 2:
            return {"reason": f"kallsyms lists the name {len(addrs)} time(s)"}
        return {"reason": "name defined several times (kallsyms)", "kallsyms_occurrences": len(addrs),
                "ours_occurrence": addrs.index(ours) if ours in addrs else None,
                "reference_occurrence": addrs.index(ref) if ref in addrs else None}

    def compare_user_types(self) -> dict:
        ou, ru = self.o["user_types"], self.r["user_types"]
        named_both = sorted(n for n in set(ou) & set(ru) if not anon(n, True) and not anon(n, False))
        variants = collections.defaultdict(list)  # plain name -> our name__BTFID definitions
        for n in ou:
            if duplicate_of(n, ou):
                variants[duplicate_of(n, ou)].append(n)
        found = {k: [] for k in ("size", "offset", "type", "array-shape", "name-collision", "only-ours", "only-ref")}
        other_definition = []
        for n in named_both:
            diffs = self.members(ou[n], ru[n])
            if diffs:
                same = [v for v in variants.get(n, []) if not self.members(ou[v], ru[n])]
                if same:  # a name defined several times: the reference holds another one
                    other_definition.append({"type": n, "detail": f"the reference's {n} is our {same[0]}; ours: "
                                             + (f"{diffs[0][0]}: " if diffs[0][0] else "") + diffs[0][2]})
                    continue
            for path, kind, detail in diffs:
                kind = "type" if kind == "size" and path else kind  # an anonymous member's size
                found[kind].append({"type": n, "member": path, "detail": detail})

        # names on one side only: why, from the pairs met and from layouts
        paired_ours = {on for _, on, _ in self.pairs}
        paired_ref = {rn: on for _, on, rn in self.pairs}
        o_sig = layouts(ou, True)
        r_sig = layouts(ru, False)
        o_by_sig = collections.defaultdict(list)
        for n, s in o_sig.items():
            o_by_sig[s].append(n)
        r_sigs = set(r_sig.values())
        r_alias = collections.defaultdict(list)  # layout -> reference names (to find typedef copies)
        for n, s in r_sig.items():
            r_alias[s].append(n)

        def ref_reason(n):
            if anon(n, False):
                return "anonymous (dwarf2json's name), " + \
                    ("matched by position" if n in paired_ref else "not met from a common type")
            if n in paired_ref:
                return "typedef name dwarf2json gives " + ("an anonymous type ours keeps anonymous" if anon(
                    paired_ref[n], True) else "a named type") + ", matched by position"
            same = [m for m in r_alias[r_sig[n]] if m != n and m in ou and not anon(m, False)]
            if same:
                return "typedef name dwarf2json copies a named type under (same definition as one ours has)"
            if any(anon(m, True) for m in o_by_sig.get(r_sig[n], ())):
                return "named in the reference (typedef), anonymous in ours with the same layout"
            return "named type ours lacks"


        def ours_reason(n):
            if anon(n, True):
                if n in paired_ours:
                    return "anonymous (our name), matched by position"
                return "anonymous (our name), not met from a common type" + \
                    (": a reference type has its layout" if o_sig[n] in r_sigs else "")
            if duplicate_of(n, ou):
                return "second definition of a name BTF holds several times (ours suffixes the BTF id)"
            return "named type the reference lacks"

        renamed = collections.Counter()
        for kind, on, rn in self.pairs:
            why = "anonymous in both" if anon(on, True) and anon(rn, False) else \
                "anonymous in ours, typedef name in the reference" if anon(on, True) else \
                "our name__BTFID (name defined several times)" if duplicate_of(on, {**ou, **self.o["enums"]}) else \
                "anonymous in the reference only" if anon(rn, False) else \
                "named differently (the reference uses a typedef name)"
            renamed[why] += 1
        return {
            "both": len(named_both),
            "size_mismatch": found["size"],
            "member_offset_mismatch": found["offset"],
            "member_type_mismatch": found["type"],
            "member_array_shape_mismatch": found["array-shape"],
            "member_name_collision": found["name-collision"],
            "member_only_ours": found["only-ours"],
            "member_only_ref": found["only-ref"],
            "other_definition_of_duplicated_name": other_definition,
            "names_paired_by_layout": dict(renamed),
            "names_paired_by_layout_examples": [f"{k} {on} (ours) = {rn} (reference)"
                                                for k, on, rn in sorted(self.pairs, key=lambda p: (anon(p[1], True), p))],
            "only_ref": group(sorted(set(ru) - set(ou)), ref_reason),
            "only_ours": group(sorted(set(ou) - set(ru)), ours_reason),
        }

    def compare_enums(self) -> dict:
        oe, re_ = self.o["enums"], self.r["enums"]
        pairs = [(n, n) for n in sorted(set(oe) & set(re_)) if not anon(n, True) and not anon(n, False)]
        ref_by_names = collections.defaultdict(list)  # anonymous enums by constant names (unique in C)
        for n, e in re_.items():
            if anon(n, False):
                ref_by_names[frozenset(e.get("constants", {}))].append(n)
        used_ref, anon_unmatched_ours = set(), []
        for n in sorted(n for n in oe if anon(n, True)):
            cands = [c for c in ref_by_names.get(frozenset(oe[n].get("constants", {})), []) if c not in used_ref]
            if cands:
                pairs.append((n, cands[0]))
                used_ref.add(cands[0])
            else:
                anon_unmatched_ours.append(n)
        out = {k: [] for k in ("size", "constants", "truncated", "signedness", "reference-incomplete")}
        other_definition = []
        for on, rn in pairs:
            diffs = enum_diff(oe[on], re_[rn])
            label = on if on == rn else f"{on} (ours) / {rn} (reference)"
            if any(k in ("size", "constants") for k, _ in diffs):
                same = [v for v in oe if duplicate_of(v, oe) == on and not enum_diff(oe[v], re_[rn])]
                if same:
                    other_definition.append({"enum": label, "detail": f"the reference's {rn} is our {same[0]}"})
                    continue
            for kind, text in diffs:
                if kind == "constants" and truncated_to_32_bits(oe[on], re_[rn]):
                    kind = "truncated"
                out[kind].append({"enum": label, "detail": text, "names": [on, *oe[on].get("constants", {})]})
        named_only_ref = [n for n in sorted(set(re_) - set(oe)) if not anon(n, False)]
        named_only_ours = [n for n in sorted(set(oe) - set(re_)) if not anon(n, True)]
        return {
            "both": len(pairs) - len(used_ref),
            "anonymous_matched": len(used_ref),
            "mismatch": out["size"] + out["constants"],
            "truncated_to_32_bits": out["truncated"],
            "other_definition_of_duplicated_name": other_definition,
            "signedness_only": out["signedness"],
            "reference_incomplete": out["reference-incomplete"],
            "only_ref": group(named_only_ref + sorted(n for n in re_ if anon(n, False) and n not in used_ref),
                              lambda n: "anonymous, no enum of ours has its constants" if anon(n, False)
                              else "named enum ours lacks"),
            "only_ours": group(named_only_ours + anon_unmatched_ours,
                               lambda n: "anonymous, no reference enum has its constants" if anon(n, True)
                               else "second definition (BTF id suffix)" if duplicate_of(n, oe)
                               else "named enum the reference lacks"),
        }

    def compare_base_types(self) -> dict:
        ob, rb = self.o["base_types"], self.r["base_types"]
        size, signed = [], []
        for n in sorted(set(ob) & set(rb)):
            if ob[n].get("size") != rb[n].get("size"):
                size.append({"base_type": n, "detail": f"size ours {ob[n].get('size')}, reference {rb[n].get('size')}"})
            if ob[n].get("signed") != rb[n].get("signed"):
                signed.append({"base_type": n, "kind": ob[n].get("kind"),
                               "detail": f"signed ours {ob[n].get('signed')}, reference {rb[n].get('signed')}"})
        return {"both": len(set(ob) & set(rb)), "size_mismatch": size, "signed_mismatch": signed,
                "only_ref": sorted(set(rb) - set(ob)), "only_ours": sorted(set(ob) - set(rb))}

    def run(self) -> dict:
        symbols = self.compare_symbols()  # first: symbol types pair anonymous types too
        user_types = self.compare_user_types()
        enums = self.compare_enums()
        base = self.compare_base_types()
        # Differences that no volatility3 code names (so no plugin can read them) are listed,
        # not failed, in these kinds only; with volatility3 not installed, nothing is excused.
        names = self.volatility_names

        def named(*words: str) -> bool:
            """A symbol or type name volatility3 looks up (always by a string)."""
            return names is None or any(w in names[0] for w in words)

        def known(kind: str, name: str) -> bool:
            return (kind, name) in KNOWN

        def member_named(*words: str) -> bool:
            """A member name volatility3 reads (by a string or as an attribute)."""
            return names is None or any(w in names[0] or w in names[1] for w in words)

        excusable = {
            # a name kallsyms lists several times (static functions, .LC labels) names several
            # objects, of which each table holds one: no table can give "the" address
            "symbol address mismatch, name listed several times": (
                [m for m in symbols["address_mismatch"] if m.get("reason") == "name defined several times (kallsyms)"],
                lambda m: False),
            "symbol type mismatch": (
                [t for t in symbols["type_mismatch"] if t["kind"] != "name-collision"],
                lambda t: named(t["symbol"]) and not known("symbol type", t["symbol"])),
            # pahole flattens multi-dimensional arrays: same bytes, one dimension; it matters
            # where volatility3 reads the member of a type it names
            "member array shape mismatch": (
                user_types["member_array_shape_mismatch"],
                lambda m: named(m["type"]) and member_named(*m.get("member", "").split("."))),
            # a tag defined several times in files of their own: dwarf2json keeps one by
            # compile-unit order, which BTF does not hold
            "duplicated type name, other definition": (
                user_types["other_definition_of_duplicated_name"],
                lambda t: named(t["type"]) and not known("duplicated type", t["type"])),
            "duplicated enum name, other definition": (
                enums["other_definition_of_duplicated_name"], lambda e: named(*e["enum"].split(" "))),
            # BTF before ENUM64 (pahole < 1.24, Linux < 6.0) holds 32 bits of each value
            "enum values wider than 32 bits, truncated in BTF": (
                enums["truncated_to_32_bits"], lambda e: named(*e["names"])),
        }
        failing = {
            "symbol address mismatch, name listed once": sum(
                1 for m in symbols["address_mismatch"] if m.get("reason") != "name defined several times (kallsyms)"),
            "user type size mismatch": len(user_types["size_mismatch"]),
            "member offset mismatch": len(user_types["member_offset_mismatch"]),
            "member type mismatch": len(user_types["member_type_mismatch"]),
            "enum mismatch": len(enums["mismatch"]),
            "base type size mismatch": len(base["size_mismatch"]),
            # signedness changes no value of a bool or a float
            "base type signedness mismatch": sum(1 for b in base["signed_mismatch"]
                                                 if b["kind"] not in ("bool", "float")),
        }
        excused = {}
        for kind, (entries, matters) in excusable.items():
            failing[kind + ", named by volatility3"] = sum(1 for x in entries if matters(x))
            excused[kind] = [x for x in entries if not matters(x)]
        return {"symbols": symbols, "user_types": user_types, "enums": enums, "base_types": base,
                "volatility_names": None if names is None else len(names[0] | names[1]),
                "excused": {k: v for k, v in excused.items() if v},
                "failing": {k: v for k, v in failing.items() if v}}


# --- helpers ------------------------------------------------------------------------------

def truncated_to_32_bits(ours: dict, ref: dict) -> bool:
    """Whether the enums differ only in values ours holds modulo 2**32 (BTF without ENUM64)."""
    oc, rc = ours.get("constants", {}), ref.get("constants", {})
    return ours.get("size") == ref.get("size") and oc.keys() == rc.keys() \
        and all((oc[k] - rc[k]) % (1 << 32) == 0 for k in oc)


def volatility_names() -> tuple[set[str], set[str]] | None:
    """The names volatility3's code (all but its Windows and macOS parts) could look Linux symbols,
    types and members up by: its string constants that are names ("task_struct", "init_task",
    "vmlinux!tk_core"), and the attribute names it reads (`task.comm`). None when it is not
    installed."""
    try:
        import volatility3
    except ImportError:
        return None
    strings: set[str] = set()
    attributes: set[str] = set()
    for path in Path(volatility3.__file__).parent.rglob("*.py"):
        if {"windows", "mac"} & set(path.parts):
            continue
        try:
            tree = ast.parse(path.read_text(errors="replace"))
        except SyntaxError:
            continue
        for node in ast.walk(tree):
            # a whole string that is a name, or a table's name and one ("vmlinux!init_task"); not
            # words of messages and docstrings
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and NAME.match(node.value):
                strings.add(node.value.rpartition("!")[2])
            elif isinstance(node, ast.Attribute):
                attributes.add(node.attr)
    return strings, attributes


def show(d: dict) -> str:
    """A type descriptor in words: 'pointer to struct task_struct'."""
    k = d.get("kind")
    if k == "pointer":
        return "pointer to " + show(d["subtype"])
    if k == "array":
        return f"array[{d.get('count')}] of " + show(d["subtype"])
    if k == "bitfield":
        return f"bitfield(pos {d.get('bit_position')}, len {d.get('bit_length')}) of " + show(d["type"])
    if k in ("base", None):
        return d.get("name", "?")
    if k == "function":
        return "function"
    return f"{k} {d.get('name', '?')}"


def dims(d: dict) -> tuple[list[int], dict]:
    """An array's dimensions and element type: int a[2][3] -> ([2, 3], int)."""
    out = []
    while d.get("kind") == "array":
        out.append(d.get("count"))
        d = d["subtype"]
    return out, d


def prod(xs: list) -> int:
    n = 1
    for x in xs:
        n *= x or 0
    return n


def first_bit(f: dict) -> int:
    t = f.get("type", {})
    return f.get("offset", 0) * 8 + (t.get("bit_position", 0) if t.get("kind") == "bitfield" else 0)


def where(f: dict) -> str:
    t = f.get("type", {})
    return f"{f.get('offset')}" + (f" bit {t.get('bit_position')}" if t.get("kind") == "bitfield" else "")


def join(a: str, b: str) -> str:
    return f"{a}.{b}" if a and b else a or b


def pair_fields(of: dict, rf: dict) -> dict:
    """{name: (ours field or None, reference field or None)}: named members by name,
    anonymous ones by offset (then order), named '<anonymous @OFFSET>'."""
    def is_anon(name, f):
        return bool(f.get("anonymous") or ANON_FIELD.match(name))
    out = {}
    for n, f in of.items():
        if not is_anon(n, f):
            out[n] = (f, rf[n] if n in rf and not is_anon(n, rf[n]) else None)
    for n, f in rf.items():
        if not is_anon(n, f) and n not in out:
            out[n] = (None, f)
    oa, ra = collections.defaultdict(list), collections.defaultdict(list)
    for fields, acc in ((of, oa), (rf, ra)):
        for n, f in fields.items():
            if is_anon(n, f):
                acc[f.get("offset")].append(f)
    for off in sorted(set(oa) | set(ra), key=lambda x: (x is None, x or 0)):
        ol, rl = oa.get(off, []), ra.get(off, [])
        k = max(len(ol), len(rl))
        for i in range(k):
            name = f"<anonymous @{off}>" if k == 1 else f"<anonymous @{off} #{i}>"
            out[name] = (ol[i] if i < len(ol) else None, rl[i] if i < len(rl) else None)
    return out


def layouts(types: dict, ours: bool) -> dict:
    """name -> a hashable layout (kind, size, members with type words, anonymous names blanked)."""
    def word(d):
        s = show(d)
        return re.sub(r"\bunnamed_\w+", "?", s)
    return {n: (t.get("kind"), t.get("size"),
                tuple(sorted(("" if f.get("anonymous") else m, f.get("offset"), word(f["type"]))
                             for m, f in t.get("fields", {}).items())))
            for n, t in types.items()}


def enum_diff(oe: dict, re_: dict) -> list[tuple[str, str]]:
    """[(kind, text)]; kind: size, constants (both matter), signedness, reference-incomplete."""
    osz, rsz = oe.get("size"), re_.get("size")
    if not rsz and re_.get("base") == "void" and osz:
        return [("reference-incomplete", f"reference size {rsz}, base void; ours size {osz}, base {oe.get('base')}")]
    if osz != rsz:
        return [("size", f"size ours {osz}, reference {rsz}")]
    mask = (1 << (8 * osz)) - 1 if osz else -1
    oc, rc = oe.get("constants", {}), re_.get("constants", {})
    out = []
    if {k: v & mask for k, v in oc.items()} != {k: v & mask for k, v in rc.items()}:
        parts = []
        only_o, only_r = sorted(set(oc) - set(rc)), sorted(set(rc) - set(oc))
        diff = sorted(k for k in set(oc) & set(rc) if oc[k] & mask != rc[k] & mask)
        if only_o:
            parts.append(f"constants only ours {only_o[:5]}")
        if only_r:
            parts.append(f"constants only reference {only_r[:5]}")
        if diff:
            parts.append("values " + ", ".join(f"{k} ours {oc[k]} reference {rc[k]}" for k in diff[:5]))
        out.append(("constants", "; ".join(parts)))
    elif oc != rc:
        k = next(k for k in sorted(oc) if oc[k] != rc[k])
        out.append(("signedness", f"base ours {oe.get('base')}, reference {re_.get('base')}: "
                                  f"same bits, e.g. {k} ours {oc[k]}, reference {rc[k]}"))
    return out


def symbol_reason(name: str, mine: dict, other: dict, dots: set) -> str:
    """Why a symbol in one table (mine) is not in the other, read from the names and data.
    dots: (name before the first '.', address) of mine's names with a '.'."""
    s = mine[name]
    if name == "":
        return "empty name"
    if s.get("address") == 0:
        return "address 0 (no location: a DWARF-only variable or parameter, or a file name)"
    if name.startswith(".L"):
        return "compiler-local label (.L*)"
    if "." in name:
        base = name.split(".", 1)[0]
        return "compiler-made suffix of a name in the other table" if base in other else "name with '.'"
    for p in ("__kstrtabns_", "__kstrtab_", "__ksymtab_", "__kcrctab_", "__crc_"):
        if name.startswith(p):
            return f"export metadata ({p}*)"
    if name.startswith("__UNIQUE_ID_"):
        return "__UNIQUE_ID_* (modinfo, dynamic debug, addressable)"
    if (name, s.get("address")) in dots:
        return "DWARF name of a function-local static (the symbol table says NAME.N, same address)"
    if s.get("address", 0) < 1 << 32:
        return "address below 4 GiB (absolute symbol or per-CPU offset)"
    return "other"


def dotted(symbols: dict) -> set:
    return {(n.split(".", 1)[0], s.get("address")) for n, s in symbols.items() if "." in n}


def group(names: list[str], reason) -> dict:
    """{reason: {count, names}}, most common reason first."""
    g = collections.defaultdict(list)
    for n in names:
        g[reason(n)].append(n)
    return {k: {"count": len(v), "names": v} for k, v in sorted(g.items(), key=lambda kv: -len(kv[1]))}


def read_kallsyms(path: str) -> dict[str, list[int]]:
    out: dict[str, list[int]] = collections.defaultdict(list)
    try:
        with open(path) as f:
            for line in f:
                parts = line.split()
                if len(parts) == 3:  # the kernel's own: modules' lines have a 4th column
                    out[parts[2]].append(int(parts[0], 16))
    except (OSError, ValueError) as e:
        raise BadInput(f"{path}: cannot read kallsyms: {e}") from e
    return out


def kallsyms_shift(ks: dict[str, list[int]], symbols: dict) -> int:
    """KASLR offset of kallsyms (run time) over a table (link time): the commonest
    difference over names kallsyms lists once."""
    c = collections.Counter(ks[n][0] - s["address"] for n, s in symbols.items() if len(ks.get(n, ())) == 1)
    return c.most_common(1)[0][0] if c else 0


# --- output ---------------------------------------------------------------------------------

def print_report(rep: dict, n: int, out=None) -> None:
    out = out or sys.stdout
    p = lambda *a: print(*a, file=out)  # noqa: E731
    s, u, e, b = rep["symbols"], rep["user_types"], rep["enums"], rep["base_types"]

    def cnt(g):
        return sum(v["count"] for v in g.values())

    p(f"symbols: both {s['both']}, only-ref {cnt(s['only_ref'])}, only-ours {cnt(s['only_ours'])}, "
      f"address-mismatch {len(s['address_mismatch'])}, type-mismatch {len(s['type_mismatch'])} "
      f"(KASLR shift {s['kaslr_shift']})")
    p(f"  types: {s['function_typed_void_in_reference']} functions typed void by dwarf2json; "
      f"{s['typed_in_ours_void_in_reference']} typed by us, void in the reference; "
      f"{len(s['function_in_ours_data_in_reference'])} functions (ours) with a data type in the reference; "
      f"{len(s['typed_only_in_reference'])} typed only in the reference")
    p(f"user types: both {u['both']}, only-ref {cnt(u['only_ref'])}, only-ours {cnt(u['only_ours'])}, "
      f"size-mismatch {len(u['size_mismatch'])}, member-offset-mismatch {len(u['member_offset_mismatch'])}, "
      f"member-type-mismatch {len(u['member_type_mismatch'])} (+{len(u['member_array_shape_mismatch'])} array "
      f"shapes: same elements, other dimensions; +{len(u['member_name_collision'])} pointing at a second "
      f"definition of a name the reference has once), members only-ref {len(u['member_only_ref'])}, "
      f"only-ours {len(u['member_only_ours'])}, duplicated name/other definition "
      f"{len(u['other_definition_of_duplicated_name'])}")
    p(f"  names paired by layout: {json.dumps(u['names_paired_by_layout'])}")
    p(f"enums: both {e['both']} (+{e['anonymous_matched']} anonymous paired by constants), "
      f"only-ref {cnt(e['only_ref'])}, only-ours {cnt(e['only_ours'])}, mismatch {len(e['mismatch'])}, "
      f"duplicated name/other definition {len(e['other_definition_of_duplicated_name'])}, "
      f"signedness only {len(e['signedness_only'])}, reference incomplete {len(e['reference_incomplete'])}")
    p(f"base types: both {b['both']}, only-ref {len(b['only_ref'])}, only-ours {len(b['only_ours'])}, "
      f"size-mismatch {len(b['size_mismatch'])}, signed-mismatch {len(b['signed_mismatch'])}")

    def lst(title, entries, fmt):
        if entries:
            p(f"\n{title} ({len(entries)}):")
            for x in entries[:n]:
                p("  " + fmt(x))

    lst("symbol address mismatches " + (json.dumps(s["address_mismatch_reasons"]) if s["address_mismatch_reasons"]
                                        .keys() - {"unexplained"} else ""), s["address_mismatch"],
        lambda x: f"{x['symbol']}: ours {x['ours']}, reference {x['reference']}"
        + (f" ({x['kallsyms_occurrences']} in kallsyms; ours #{x['ours_occurrence']}, "
           f"reference #{x['reference_occurrence']})" if "kallsyms_occurrences" in x else ""))
    lst("symbol type mismatches", s["type_mismatch"],
        lambda x: f"{join(x['symbol'], x['where'])}: "
        + (f"{x['kind']}: " if x["kind"].startswith("only") else "") + x["detail"])
    lst("functions (ours) the reference types as data", s["function_in_ours_data_in_reference"],
        lambda x: f"{x['symbol']}: reference {x['reference']}")
    lst("symbols typed only in the reference", s["typed_only_in_reference"],
        lambda x: f"{x['symbol']}: {x['reference']}")
    for title, entries in (("user type size mismatches", u["size_mismatch"]),
                           ("member offset mismatches", u["member_offset_mismatch"]),
                           ("member type mismatches", u["member_type_mismatch"]),
                           ("member array shape mismatches (same elements, other dimensions)",
                            u["member_array_shape_mismatch"]),
                           ("member types that are our second definition of a name (the reference has one)",
                            u["member_name_collision"]),
                           ("names defined several times, the tables hold different definitions",
                            u["other_definition_of_duplicated_name"]),
                           ("members only in the reference", u["member_only_ref"]),
                           ("members only in ours", u["member_only_ours"])):
        lst(title, entries, lambda x: f"{join(x['type'], x.get('member', ''))}: {x['detail']}")
    lst("type names paired by layout", u["names_paired_by_layout_examples"], str)
    for title, entries in (("enum mismatches", e["mismatch"]),
                           ("enum names defined several times, other definition", e["other_definition_of_duplicated_name"]),
                           ("enums differing only in signedness", e["signedness_only"]),
                           ("enums incomplete in the reference", e["reference_incomplete"])):
        lst(title, entries, lambda x: f"{x['enum']}: {x['detail']}")
    lst("base type mismatches", b["size_mismatch"] + b["signed_mismatch"], lambda x: f"{x['base_type']}: {x['detail']}")
    for title, g in (("symbols only in the reference", s["only_ref"]), ("symbols only in ours", s["only_ours"]),
                     ("user types only in the reference", u["only_ref"]), ("user types only in ours", u["only_ours"]),
                     ("enums only in the reference", e["only_ref"]), ("enums only in ours", e["only_ours"])):
        if g:
            p(f"\n{title} ({cnt(g)}), by reason:")
            for reason, v in g.items():
                p(f"  {v['count']:6d}  {reason}: {', '.join(v['names'][:n])}{', ...' if v['count'] > n else ''}")
    if rep.get("excused"):
        p("\nlisted, not failed: addresses of names kallsyms lists for several objects (no table holds them "
          f"all), and differences in what no volatility3 code names ({rep['volatility_names']} names read from "
          "its source) or in KNOWN (with why):")
        for kind, entries in rep["excused"].items():
            p(f"  {len(entries):6d}  {kind}")
    p("")
    if rep["failing"]:
        p("DIFFERENT where it matters to Volatility: " + ", ".join(f"{k} {v}" for k, v in rep["failing"].items()))
    else:
        p("same where it matters to Volatility (entries on one side only are listed above)")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("ours")
    ap.add_argument("reference")
    ap.add_argument("--json", metavar="REPORT", help="write the full report here")
    ap.add_argument("--list", metavar="N", type=int, default=10, help="entries listed per kind of difference")
    ap.add_argument("--kallsyms", metavar="FILE", help="the guest's /proc/kallsyms, to explain address mismatches")
    ap.add_argument("--strict", action="store_true",
                    help="excuse nothing, not even differences no volatility3 code names")
    args = ap.parse_args(argv)
    try:
        ours, ref = load(args.ours), load(args.reference)
        bo, br = banner(ours, args.ours), banner(ref, args.reference)
        if bo != br:
            raise BadInput("the tables describe different kernels, not compared:\n"
                           f"  ours:      {bo.decode(errors='replace')}\n  reference: {br.decode(errors='replace')}")
        ks = read_kallsyms(args.kallsyms) if args.kallsyms else None
    except BadInput as e:
        print(f"compare_isf: {e}", file=sys.stderr)
        return 2
    print(f"kernel: {bo.decode(errors='replace')}")
    rep = Comparer(ours, ref, ks, None if args.strict else volatility_names()).run()
    print_report(rep, args.list)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rep, f, indent=1, sort_keys=True)
    return 1 if rep["failing"] else 0


if __name__ == "__main__":
    sys.exit(main())
