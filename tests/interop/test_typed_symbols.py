"""The symbols Volatility 3's Linux code reads *with their type* get one.

BTF types few variables, so avml keeps a table of them
(Sources/KernelSymbols/TypedSymbols.swift). This test reads the installed volatility3
(framework/plugins/linux, framework/symbols/linux, framework/automagic) with Python's
ast, finds every `object_from_symbol(NAME)` without `object_type=` and every
`get_symbol(NAME).type`, resolves NAME when it is a variable (loops over literal lists,
tuples of them, and parameters passed such lists from the same module), and fails if a
name is not in the table or a name cannot be resolved.

With AVML_GUEST_SYMBOLS=DIR (btf, kallsyms, version from the QEMU guest), it also checks
that every table symbol the guest kernel has is written with a type whose structs exist.
"""

from __future__ import annotations

import ast
import gzip
import json
import os
import re
import subprocess
from pathlib import Path

import pytest
import volatility3

import interop_util as u

ROOT = Path(__file__).resolve().parents[2]
TABLE = ROOT / "Sources" / "KernelSymbols" / "TypedSymbols.swift"
PACKAGE = Path(volatility3.__file__).parent
SCANNED = ["framework/plugins/linux", "framework/symbols/linux", "framework/automagic"]


def table_names() -> set[str]:
    return set(re.findall(r'TypedSymbol\(\s*"([^"]+)"', TABLE.read_text()))


class Resolver:
    """Values a name argument can take, from literals in the same module."""

    def __init__(self, tree: ast.Module):
        self.tree = tree
        self.parents: dict[ast.AST, ast.AST] = {}
        for node in ast.walk(tree):
            for child in ast.iter_child_nodes(node):
                self.parents[child] = node
        self.functions = {n.name: n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))}

    def function_of(self, node: ast.AST):
        while node in self.parents:
            node = self.parents[node]
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                return node
        return None

    def values(self, expr: ast.AST, scope, depth: int = 0) -> list[str] | None:
        if depth > 12:
            return None
        if isinstance(expr, ast.Constant) and isinstance(expr.value, str):
            return [expr.value]
        if isinstance(expr, (ast.List, ast.Tuple, ast.Set)):
            result = []
            for element in expr.elts:
                values = self.values(element, scope, depth + 1)
                if values is None:
                    return None
                result += values
            return result
        if isinstance(expr, ast.Name) and scope is not None:
            return self.name_values(expr.id, scope, depth + 1)
        return None

    def component(self, expr: ast.AST, index: int, scope, depth: int) -> list[str] | None:
        """Values of element `index` of each item of an iterable expression."""
        if isinstance(expr, ast.Name) and scope is not None:
            bound = self.assignment(expr.id, scope)
            return None if bound is None else self.component(bound, index, scope, depth + 1)
        if isinstance(expr, (ast.List, ast.Tuple)):
            result = []
            for item in expr.elts:
                if isinstance(item, ast.Name):
                    item = self.assignment(item.id, scope)
                if not isinstance(item, (ast.Tuple, ast.List)) or index >= len(item.elts):
                    return None
                values = self.values(item.elts[index], scope, depth + 1)
                if values is None:
                    return None
                result += values
            return result
        return None

    def assignment(self, name: str, scope) -> ast.AST | None:
        for node in ast.walk(scope):
            if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == name for t in node.targets):
                return node.value
        return None

    def name_values(self, name: str, scope, depth: int) -> list[str] | None:
        bound = self.assignment(name, scope)
        if bound is not None:
            return self.values(bound, scope, depth)
        for node in ast.walk(scope):
            if isinstance(node, ast.For):
                if isinstance(node.target, ast.Name) and node.target.id == name:
                    if isinstance(node.iter, ast.Name) and self.assignment(node.iter.id, scope) is None:
                        return self.name_values(node.iter.id, scope, depth + 1)  # a loop over a loop variable
                    return self.values(node.iter, scope, depth + 1)
                if isinstance(node.target, ast.Tuple):
                    for index, element in enumerate(node.target.elts):
                        if isinstance(element, ast.Name) and element.id == name:
                            return self.component(node.iter, index, scope, depth + 1)
        parameters = [a.arg for a in scope.args.args]
        if name in parameters:
            position = parameters.index(name) - (1 if parameters and parameters[0] in ("self", "cls") else 0)
            result = []
            for call in ast.walk(self.tree):
                if not (isinstance(call, ast.Call) and getattr(call.func, "attr", getattr(call.func, "id", None)) == scope.name):
                    continue
                argument = next((k.value for k in call.keywords if k.arg == name), None)
                if argument is None and position < len(call.args):
                    argument = call.args[position]
                values = None if argument is None else self.values(argument, self.function_of(call), depth + 1)
                if values is None:
                    return None
                result += values
            return result or None
        return None


def typed_symbol_reads() -> tuple[dict[str, str], list[str]]:
    """({symbol name: where}, [sites whose name could not be resolved])."""
    found: dict[str, str] = {}
    unresolved: list[str] = []
    for directory in SCANNED:
        for path in sorted((PACKAGE / directory).rglob("*.py")):
            tree = ast.parse(path.read_text())
            resolver = Resolver(tree)
            where = f"{path.relative_to(PACKAGE)}"
            for node in ast.walk(tree):
                argument = None
                if isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "object_from_symbol":
                    if any(k.arg == "object_type" for k in node.keywords):
                        continue
                    argument = node.args[0] if node.args else next(
                        (k.value for k in node.keywords if k.arg == "symbol_name"), None)
                elif (isinstance(node, ast.Attribute) and node.attr == "type" and isinstance(node.value, ast.Call)
                      and getattr(node.value.func, "attr", None) == "get_symbol" and node.value.args):
                    argument = node.value.args[0]
                if argument is None:
                    continue
                values = resolver.values(argument, resolver.function_of(node))
                if values is None:
                    unresolved.append(f"{where}:{node.lineno}: {ast.unparse(argument)}")
                    continue
                for value in values:
                    found.setdefault(value, f"{where}:{node.lineno}")
    return found, unresolved


def test_every_symbol_volatility_reads_with_a_type_is_in_the_table():
    found, unresolved = typed_symbol_reads()
    assert not unresolved, f"cannot tell which symbols these read with a type: {unresolved}"
    missing = {name: where for name, where in found.items() if name not in table_names()}
    assert not missing, f"volatility3 {volatility3.__version__ if hasattr(volatility3, '__version__') else ''} reads " \
                        f"these with a type, but {TABLE.name} lacks them: {missing}"
    # The scan must see the well-known ones, or it is not scanning at all.
    assert {"init_task", "tk_core", "prb", "kallsyms_num_syms", "sock_def_destruct", "tcp4_seq_afinfo"} <= set(found)


def test_the_table_has_no_duplicates():
    names = re.findall(r'TypedSymbol\(\s*"([^"]+)"', TABLE.read_text())
    assert len(names) == len(set(names))


def guest_cases() -> list:
    guest = os.environ.get("AVML_GUEST_SYMBOLS")
    return [pytest.param(guest, id="qemu-guest-debian-6.1")] if guest else []


def references(descriptor: dict):
    if descriptor.get("kind") in ("struct", "union"):
        yield descriptor["name"]
    for key in ("subtype", "type"):
        if isinstance(descriptor.get(key), dict):
            yield from references(descriptor[key])


@pytest.mark.parametrize("directory", guest_cases())
def test_guest_kernel_table_symbols_have_types(directory, tmp_path):
    directory = Path(directory)
    out = tmp_path / "t.isf.json.gz"
    result = subprocess.run([u.AVML_BIN, "symbols", "--btf", str(directory / "btf"), "--kallsyms",
                             str(directory / "kallsyms"), "--banner", str(directory / "version"), str(out)],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    with gzip.open(out) as f:
        isf = json.load(f)
    present = [name for name in sorted(table_names()) if name in isf["symbols"]]
    untyped = [name for name in present if "type" not in isf["symbols"][name]]
    assert not untyped, f"symbols the guest kernel has but the table gives no type: {untyped}"
    dangling = {name: ref for name in present for ref in references(isf["symbols"][name]["type"])
                if ref not in isf["user_types"]}
    assert not dangling, dangling
    assert {"init_task", "tk_core", "prb", "modules", "net_namespace_list"} <= set(present)
    assert isf["symbols"]["init_task"]["type"] == {"kind": "struct", "name": "task_struct"}
