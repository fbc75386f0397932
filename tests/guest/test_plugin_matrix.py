"""Unit tests of plugin_matrix.py's verdicts on canned Volatility output (no image, no vol).

    python3 -m pytest -q tests/guest/test_plugin_matrix.py
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import plugin_matrix  # noqa: E402

ROW = {"PID": 1, "COMM": "init", "__children": [{"PID": 2, "COMM": "kthreadd", "__children": []}]}


def ran(rows):
    return rows, "", 1.0


def failed(stderr):
    return None, stderr, 1.0


def test_same_rows_in_another_order_are_equal():
    other = [{"PID": 2, "COMM": "kthreadd", "__children": []}, {"PID": 1, "COMM": "init", "__children": []}]
    assert plugin_matrix.verdict(ran([ROW]), ran(other)) == ("equal", "2 rows")


def test_one_row_different_differs_and_says_which():
    changed = {"PID": 1, "COMM": "init", "__children": [{"PID": 2, "COMM": "kthreadX", "__children": []}]}
    name, detail = plugin_matrix.verdict(ran([changed]), ran([ROW]))
    assert name == "differs" and "kthreadX" in detail and "only the reference 1" in detail


def test_a_duplicated_row_differs():
    assert plugin_matrix.verdict(ran([ROW, ROW]), ran([ROW]))[0] == "differs"


def test_no_rows_and_failures_are_told_apart():
    error = "Traceback ...\nvolatility3.framework.exceptions.SymbolError: Unknown symbol: kallsyms_num_syms\n"
    assert plugin_matrix.verdict(ran([]), ran([])) == ("no rows", "")
    assert plugin_matrix.verdict(failed(error), ran([ROW])) == (
        "ours fails", "volatility3.framework.exceptions.SymbolError: Unknown symbol: kallsyms_num_syms")
    assert plugin_matrix.verdict(ran([ROW]), failed("exit 1\n"))[0] == "reference fails"
    assert plugin_matrix.verdict(failed("x"), failed("y"))[0] == "both fail"
    refused = ("Volatility experienced an issue related to a symbol table:\nInvalid symbol table, please ensure the "
               "ISF table produced by dwarf2json was created with version 0.8.0 or later\n\n\t* An invalid symbol "
               "table\n\nNo further results will be produced\n")
    assert plugin_matrix.verdict(failed(refused), ran([]))[1].startswith("Invalid symbol table")


def test_rows_required_fails_no_rows_and_a_reference_failure_too():
    import collections
    totals = [collections.Counter({"equal": 3, "no rows": 1}), collections.Counter({"equal": 2, "reference fails": 1})]
    assert plugin_matrix.failures(totals, require_rows=False) == 0
    assert plugin_matrix.failures(totals, require_rows=True) == 2
    assert plugin_matrix.failures([collections.Counter({"ours fails": 1, "differs": 1})], require_rows=False) == 2

