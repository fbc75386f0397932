"""Unit tests of compare_isf.py on tiny hand-made tables (no guest, no reference files).

    python3 -m pytest -q tests/guest/test_compare_isf.py
"""
import base64
import copy
import gzip
import json
import lzma
import os
import sys


sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import compare_isf  # noqa: E402

BANNER = b"Linux version 6.1.0-test (x) #1 SMP\n\0"
INT = {"kind": "base", "name": "int"}


def table(ours: bool) -> dict:
    """A tiny table, written the way each producer names anonymous things."""
    anon_union = "unnamed_union_7" if ours else "unnamed_c609722c78b2d77c"
    anon_field = "unnamed_field_204" if ours else "unnamed_field_0"
    return {
        "metadata": {"format": "6.2.0"},
        "base_types": {"int": {"size": 4, "signed": True, "kind": "int", "endian": "little"},
                       "char": {"size": 1, "signed": True, "kind": "char", "endian": "little"}},
        "user_types": {
            "task": {"kind": "struct", "size": 24, "fields": {
                "pid": {"offset": 0, "type": INT},
                "flags": {"offset": 4, "type": {"kind": "bitfield", "bit_position": 3, "bit_length": 2, "type": INT}},
                "next": {"offset": 8, "type": {"kind": "pointer", "subtype": {"kind": "struct", "name": "task"}}},
                anon_field: {"offset": 16, "anonymous": True, "type": {"kind": "union", "name": anon_union}},
            }},
            anon_union: {"kind": "union", "size": 8, "fields": {
                "a": {"offset": 0, "type": INT},
                "b": {"offset": 0, "type": {"kind": "array", "count": 8, "subtype": {"kind": "base", "name": "char"}}},
            }},
        },
        "enums": {"state": {"size": 4, "base": "int", "constants": {"ON": 1, "OFF": 0}}},
        "symbols": {
            "linux_banner": {"address": 0xffffffff82000000, "constant_data": base64.b64encode(BANNER).decode()},
            "init_task": {"address": 0xffffffff82a00000, "type": {"kind": "struct", "name": "task"}},
            "jiffies": {"address": 0xffffffff82b00000},
        },
    }


def run(ours, ref, tmp_path, *extra):
    po, pr, rep = tmp_path / "ours.json.gz", tmp_path / "ref.json.xz", tmp_path / "report.json"
    with gzip.open(po, "wt") as f:
        json.dump(ours, f)
    with lzma.open(pr, "wt") as f:
        json.dump(ref, f)
    rc = compare_isf.main([str(po), str(pr), "--json", str(rep), *extra])
    return rc, (json.loads(rep.read_text()) if rep.exists() else None)


def test_identical_tables_pass(tmp_path, capsys):
    t = table(ours=False)
    rc, rep = run(t, copy.deepcopy(t), tmp_path)
    assert rc == 0, capsys.readouterr().out
    assert rep["failing"] == {}
    assert rep["symbols"]["both"] == 3 and rep["user_types"]["both"] == 1


def test_anonymous_union_matched_by_position_passes(tmp_path, capsys):
    rc, rep = run(table(ours=True), table(ours=False), tmp_path)
    assert rc == 0, capsys.readouterr().out
    assert any("unnamed_union_7" in x and "unnamed_c609722c78b2d77c" in x
               for x in rep["user_types"]["names_paired_by_layout_examples"])


def test_member_offset_change_fails_and_is_named(tmp_path, capsys):
    ours = table(ours=True)
    ours["user_types"]["task"]["fields"]["pid"]["offset"] = 2
    rc, rep = run(ours, table(ours=False), tmp_path)
    assert rc == 1
    assert [(m["type"], m["member"]) for m in rep["user_types"]["member_offset_mismatch"]] == [("task", "pid")]
    assert "task.pid" in capsys.readouterr().out


def test_offset_change_inside_anonymous_union_fails(tmp_path):
    ours = table(ours=True)
    ours["user_types"]["unnamed_union_7"]["fields"]["b"]["offset"] = 4
    rc, rep = run(ours, table(ours=False), tmp_path)
    assert rc == 1
    assert [m["member"] for m in rep["user_types"]["member_offset_mismatch"]] == ["<anonymous @16>.b"]


def test_bitfield_split_differently_is_the_same_bit(tmp_path):
    """The reference says byte 4 bit 3; byte 0 bit 35 is the same bit, byte 5 bit 3 is not."""
    ours = table(ours=True)
    flags = ours["user_types"]["task"]["fields"]["flags"]
    flags["offset"], flags["type"]["bit_position"] = 0, 35
    rc, _ = run(ours, table(ours=False), tmp_path)
    assert rc == 0
    flags["offset"], flags["type"]["bit_position"] = 5, 3
    rc, rep = run(ours, table(ours=False), tmp_path)
    assert rc == 1 and rep["user_types"]["member_offset_mismatch"][0]["member"] == "flags"


def test_member_type_change_fails(tmp_path):
    ours = table(ours=True)
    ours["user_types"]["task"]["fields"]["next"]["type"]["subtype"] = INT
    rc, rep = run(ours, table(ours=False), tmp_path)
    assert rc == 1 and rep["user_types"]["member_type_mismatch"][0]["member"] == "next"


def test_missing_symbol_is_counted_but_passes(tmp_path):
    ours = table(ours=True)
    del ours["symbols"]["jiffies"]
    ref = table(ours=False)
    ref["symbols"]["x.isra.0"] = {"address": 0xffffffff81000000}
    rc, rep = run(ours, ref, tmp_path)
    assert rc == 0
    only = rep["symbols"]["only_ref"]
    assert sum(g["count"] for g in only.values()) == 2
    assert any("jiffies" in g["names"] for g in only.values())


def test_address_mismatch_fails(tmp_path):
    ours = table(ours=True)
    ours["symbols"]["init_task"]["address"] += 64
    rc, rep = run(ours, table(ours=False), tmp_path)
    assert rc == 1 and rep["symbols"]["address_mismatch"][0]["symbol"] == "init_task"


def test_constant_kaslr_shift_is_subtracted(tmp_path):
    ours = table(ours=True)
    for s in ours["symbols"].values():
        s["address"] += 0x39400000
    rc, rep = run(ours, table(ours=False), tmp_path)
    assert rc == 0 and rep["symbols"]["kaslr_shift"] == hex(0x39400000)


def test_enum_constant_change_fails_signedness_alone_does_not(tmp_path):
    ours, ref = table(ours=True), table(ours=False)
    ref["enums"]["state"]["constants"]["NONE"] = -1
    ours["enums"]["state"] = {"size": 4, "base": "unsigned int", "constants": {"ON": 1, "OFF": 0, "NONE": 0xffffffff}}
    rc, rep = run(ours, ref, tmp_path)
    assert rc == 0 and len(rep["enums"]["signedness_only"]) == 1
    ours["enums"]["state"]["constants"]["ON"] = 2
    rc, rep = run(ours, ref, tmp_path)
    assert rc == 1 and rep["enums"]["mismatch"][0]["enum"] == "state"


def flattened(ours: dict, ref: dict, type_name: str) -> None:
    """`type_name`.pid as pahole flattens a two-dimensional array (ours) and as DWARF has it."""
    for t in (ours, ref):
        t["user_types"][type_name] = copy.deepcopy(t["user_types"]["task"])
    ref["user_types"][type_name]["fields"]["pid"]["type"] = {
        "kind": "array", "count": 2, "subtype": {"kind": "array", "count": 3, "subtype": INT}}
    ours["user_types"][type_name]["fields"]["pid"]["type"] = {"kind": "array", "count": 6, "subtype": INT}


def test_flattened_array_of_a_member_volatility_reads_fails(tmp_path):
    ours, ref = table(ours=True), table(ours=False)
    flattened(ours, ref, "task_struct")  # volatility3 names task_struct and reads .pid
    rc, rep = run(ours, ref, tmp_path)
    assert rc == 1 and rep["user_types"]["member_array_shape_mismatch"][0]["member"] == "pid"
    assert rep["user_types"]["member_type_mismatch"] == []
    assert rep["failing"] == {"member array shape mismatch, named by volatility3": 1}


def test_differences_no_volatility_code_names_are_listed_not_failed(tmp_path):
    ours, ref = table(ours=True), table(ours=False)
    flattened(ours, ref, "avml_test_only_type")
    ref["enums"]["avml_wide"] = {"size": 8, "base": "long int", "constants": {"AVML_HIGH": -2048, "AVML_TOP": 1 << 40}}
    ours["enums"]["avml_wide"] = {"size": 8, "base": "long unsigned int",
                                  "constants": {"AVML_HIGH": 0xfffff800, "AVML_TOP": 0}}
    rc, rep = run(ours, ref, tmp_path)
    assert rc == 0, rep["failing"]
    assert set(rep["excused"]) == {"member array shape mismatch", "enum values wider than 32 bits, truncated in BTF"}
    rc, rep = run(ours, ref, tmp_path, "--strict")
    assert rc == 1 and set(rep["failing"]) == {"member array shape mismatch, named by volatility3",
                                               "enum values wider than 32 bits, truncated in BTF, named by volatility3"}


def test_enum_values_not_explained_by_32_bits_fail(tmp_path):
    ours, ref = table(ours=True), table(ours=False)
    ref["enums"]["avml_wide"] = {"size": 8, "base": "long int", "constants": {"AVML_TOP": 1 << 40}}
    ours["enums"]["avml_wide"] = {"size": 8, "base": "long unsigned int", "constants": {"AVML_TOP": 1}}
    rc, rep = run(ours, ref, tmp_path)
    assert rc == 1 and rep["failing"] == {"enum mismatch": 1}


def test_different_banners_exit_2(tmp_path, capsys):
    ours = table(ours=True)
    ours["symbols"]["linux_banner"]["constant_data"] = base64.b64encode(b"Linux version 5.10.0-other\n\0").decode()
    rc, rep = run(ours, table(ours=False), tmp_path)
    assert rc == 2 and rep is None
    assert "different kernels" in capsys.readouterr().err


def test_bad_input_exit_2(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    assert compare_isf.main([str(bad), str(bad)]) == 2
