"""The layering of docs/architecture.md, checked on the real tree.

Layers, lowest first; a module may import its own layer and any layer below it, never one
above, and the interfaces (CLI, console, demo) never import each other's internals except
as drawn (the CLI starts the demo and the console). ``transports`` moves bytes and imports
nothing from ``gateway``. The pure layers (documents, protocol) open no socket, database or
process. There are no import circles between modules, and nothing reads the project's
shared folder beside the checkout (a user's clone has none).

Each rule is also run once on a planted violation, so the check is shown to fail.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterable, Mapping
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

#: (package prefix, rank). The most specific prefix wins.
LAYERS: tuple[tuple[str, int], ...] = (
    ("gateway", 0),  # gateway/__init__, errors, resources: the base every layer may use
    ("gateway.documents", 1),
    ("gateway.protocol", 2),
    ("gateway.store", 3),
    ("gateway.node", 4),
    ("gateway.service", 5),
    ("gateway.demo", 6),
    ("gateway.console", 6),
    ("gateway.cli", 7),
    ("gateway.__main__", 8),
)
#: Interfaces of the same rank that may still import one another: none.
PURE = ("gateway.documents", "gateway.protocol")
#: Modules that open sockets, databases or processes (reading the package's own schema
#: files is allowed: they are data shipped with the code).
IMPURE_MODULES = ("socket", "sqlite3", "subprocess", "ssl", "http", "urllib.request",
                  "psycopg", "paramiko", "transports", "asyncio", "selectors", "smtplib")


def layer_of(module: str) -> tuple[str, int] | None:
    best: tuple[str, int] | None = None
    for prefix, rank in LAYERS:
        if (module == prefix or module.startswith(prefix + ".")) and (
                best is None or len(prefix) > len(best[0])):
            best = (prefix, rank)
    return best


def module_name(path: Path, root: Path) -> str:
    rel = path.relative_to(root).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(module: str, source: str, known: Iterable[str]) -> set[str]:
    """Every module (of ``known``, or a top-level name) ``source`` imports, anywhere in it."""
    names = set(known)
    found: set[str] = set()
    package = module if module in {n for n in names if _is_package(n, names)} else (
        module.rpartition(".")[0])
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            found.add(base)
            for alias in node.names:  # from pkg import module
                if f"{base}.{alias.name}" in names:
                    found.add(f"{base}.{alias.name}")
    return found


def _is_package(name: str, names: set[str]) -> bool:
    return any(other.startswith(name + ".") for other in names)


def read_tree(root: Path = REPO) -> dict[str, str]:
    sources: dict[str, str] = {}
    for top in ("gateway", "transports"):
        for path in sorted((root / top).rglob("*.py")):
            sources[module_name(path, root)] = path.read_text(encoding="utf-8")
    return sources


def graph(sources: Mapping[str, str]) -> dict[str, set[str]]:
    return {name: imports_of(name, text, sources) for name, text in sources.items()}


def layer_violations(sources: Mapping[str, str]) -> list[str]:
    problems: list[str] = []
    for name, targets in graph(sources).items():
        if name == "transports" or name.startswith("transports."):
            problems += [f"{name} imports {t}: transports import nothing from gateway"
                         for t in sorted(targets) if t.split(".")[0] == "gateway"]
            continue
        mine = layer_of(name)
        assert mine is not None, name
        for target in sorted(targets):
            if target.split(".")[0] == "transports" and mine[1] < 4:
                problems.append(f"{name} imports {target}: only the node layer and above "
                                f"use transports")
            theirs = layer_of(target) if target.split(".")[0] == "gateway" else None
            if theirs is None:
                continue
            if theirs[1] > mine[1] or (theirs[1] == mine[1] and theirs[0] != mine[0]
                                       and mine[1] != 0):
                problems.append(f"{name} ({mine[0]}) imports {target} ({theirs[0]}): "
                                f"upward or sideways")
    return problems


def purity_violations(sources: Mapping[str, str]) -> list[str]:
    problems = []
    for name, targets in graph(sources).items():
        if not name.startswith(PURE):
            continue
        for target in sorted(targets):
            if any(target == m or target.startswith(m + ".") for m in IMPURE_MODULES):
                problems.append(f"{name} imports {target}: the pure layers do no I/O")
    return problems


def cycles(sources: Mapping[str, str]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    edges = {name: {t for t in targets if t in sources and t != name}
             for name, targets in graph(sources).items()}
    # A package's __init__ importing its own modules is not a circle through the package.
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    found: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


# The folder's name is assembled so that this checker is not itself a match.
_FOLDER = "sha" + "red"
SHARED_READ = re.compile(r"\.\./" + _FOLDER + r"""|/\s*["']""" + _FOLDER + r"""["']|["']"""
                         + _FOLDER + "/")


def shared_readers(root: Path = REPO) -> list[str]:
    hits = []
    candidates = [*root.glob("*.toml"), root / "Makefile", *root.glob(".ci/*"),
                  *root.glob("scripts/*")]
    for top in ("gateway", "transports", "tests", "bench"):
        candidates += list((root / top).rglob("*.py"))
    for path in candidates:
        if path.resolve() == Path(__file__).resolve() or not path.is_file():
            continue
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if SHARED_READ.search(line):
                hits.append(f"{path.relative_to(root)}:{number}")
    return hits


# --- the real tree ------------------------------------------------------------------------

def test_every_gateway_module_is_in_a_layer() -> None:
    assert [n for n in read_tree() if not n.startswith("transports")
            and layer_of(n) is None] == []


def test_no_upward_import() -> None:
    assert layer_violations(read_tree()) == []


def test_pure_layers_do_no_io() -> None:
    assert purity_violations(read_tree()) == []


def test_no_import_circle() -> None:
    assert cycles(read_tree()) == []


def test_nothing_reads_shared() -> None:
    assert shared_readers() == []


@pytest.mark.parametrize("module", ["gateway.errors", "gateway.resources"])
def test_base_imports_no_layer(module: str) -> None:
    sources = read_tree()
    assert [t for t in imports_of(module, sources[module], sources)
            if (layer_of(t) or ("", 0))[1] > 0] == []


# --- the same checks fail on planted violations --------------------------------------------

def planted(**extra: str) -> dict[str, str]:
    sources = read_tree()
    sources.update({k.replace("__", "."): v for k, v in extra.items()})
    return sources


def test_check_fails_on_an_upward_import() -> None:
    bad = "from gateway.node import config\n"
    problems = layer_violations(planted(gateway__protocol__planted=bad))
    assert "gateway.protocol.planted (gateway.protocol) imports gateway.node.config " \
           "(gateway.node): upward or sideways" in problems
    assert all(p.startswith("gateway.protocol.planted ") for p in problems)


def test_check_fails_on_a_sideways_import() -> None:
    problems = layer_violations(planted(gateway__demo__planted="import gateway.console.app\n",
                                        gateway__console__app="x = 1\n"))
    assert len(problems) == 1
    assert "gateway.demo.planted" in problems[0]


def test_check_fails_when_transports_imports_gateway() -> None:
    bad = "from gateway.errors import GatewayError\n"
    problems = layer_violations(planted(transports__planted=bad))
    assert problems == ["transports.planted imports gateway.errors: transports import nothing "
                        "from gateway"]


def test_check_fails_on_io_in_a_pure_layer() -> None:
    problems = purity_violations(planted(gateway__documents__planted="import sqlite3\n"))
    assert problems == ["gateway.documents.planted imports sqlite3: the pure layers do no I/O"]


def test_check_fails_on_a_circle() -> None:
    found = cycles(planted(gateway__store__planted_a="from gateway.store import planted_b\n",
                           gateway__store__planted_b="from gateway.store.planted_a import x\n"))
    assert found == [["gateway.store.planted_a", "gateway.store.planted_b"]]


def test_check_fails_on_reading_shared(tmp_path: Path) -> None:
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "test_x.py").write_text(f'SHARED = REPO.parent / "{_FOLDER}"\n')
    assert shared_readers(tmp_path) == ["tests/test_x.py:1"]
