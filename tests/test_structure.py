"""The structure drawn from the code itself: lib's imports (module-level and lazy) form no circle, lib knows
nothing of Streamlit, only lib/settings.py reads the environment, the pages reach storage only through lib, and a
stored record is parsed by its own class only. Each rule is checked on a sample that breaks it, so it can fail."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.conftest import ROOT


def _modules(root: Path) -> dict[str, Path]:
    mods = {}
    for p in (root / "lib").rglob("*.py"):
        name = ".".join(p.relative_to(root).with_suffix("").parts)
        mods[name.removesuffix(".__init__")] = p
    return mods


def _imported(tree: ast.AST) -> list[str]:
    names = []
    for node in ast.walk(tree):  # every import, at module level or inside a function
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names += [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
    return names


def import_graph(sources: dict[str, str]) -> dict[str, set[str]]:
    """module -> the lib modules it imports, from {module: source}."""
    graph: dict[str, set[str]] = {m: set() for m in sources}
    for m, text in sources.items():
        for n in _imported(ast.parse(text)):
            while n and n not in sources:
                n = n.rpartition(".")[0]
            if n and n != m and n != "lib":
                graph[m].add(n)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def _lib_sources() -> dict[str, str]:
    return {m: p.read_text(encoding="utf-8") for m, p in _modules(ROOT).items()}


def test_the_cycle_finder_sees_a_lazy_import_circle():
    sample = {"lib.a": "from lib import b\n", "lib.b": "def f():\n    from lib.c import x\n", "lib.c": "import lib.a\n",
              "lib.d": "from lib.a import y\n"}
    assert cycles(import_graph(sample)) == [["lib.a", "lib.b", "lib.c"]]


def test_lib_has_no_import_circles():
    assert cycles(import_graph(_lib_sources())) == []


def test_lib_does_not_import_streamlit():
    offenders = [m for m, text in _lib_sources().items()
                 if any(n == "streamlit" or n.startswith("streamlit.") for n in _imported(ast.parse(text)))]
    assert offenders == []


def environment_readers(text: str) -> list[int]:
    """Lines that read the environment: os.environ (any use), os.getenv, os.putenv."""
    lines = []
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "os" \
                and node.attr in ("environ", "getenv", "putenv", "environb"):
            lines.append(node.lineno)
        elif isinstance(node, ast.ImportFrom) and node.module == "os" and \
                any(a.name in ("environ", "getenv") for a in node.names):
            lines.append(node.lineno)
    return lines


def test_only_settings_reads_the_environment():
    assert sorted(environment_readers("import os\nx = os.environ.get('A')\ny = {**os.environ}\nfrom os import getenv\n")) \
        == [2, 3, 4]
    files = [*(ROOT / "lib").rglob("*.py"), *(ROOT / "views").glob("*.py"), ROOT / "app.py"]
    offenders = {str(p.relative_to(ROOT)): environment_readers(p.read_text(encoding="utf-8")) for p in files
                 if p != ROOT / "lib" / "settings.py"}
    assert {k: v for k, v in offenders.items() if v} == {}


STORAGE = {"sqlite3", "chromadb", "openai", "llama_cpp", "subprocess"}


def test_pages_reach_storage_models_and_processes_only_through_lib():
    files = [*(ROOT / "views").glob("*.py"), ROOT / "app.py"]
    offenders = {str(p.relative_to(ROOT)): sorted({n.split(".")[0] for n in _imported(ast.parse(p.read_text()))}
                                                   & STORAGE) for p in files}
    assert {k: v for k, v in offenders.items() if v} == {}


def hand_parsed(text: str) -> list[int]:
    """Lines that take a stored answer record apart by hand: `x["result"]` / `x["grade"]` subscripts."""
    return sorted(node.lineno for node in ast.walk(ast.parse(text))
                  if isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Constant)
                  and node.slice.value in ("result", "grade") and isinstance(node.ctx, ast.Load))


def test_stored_answers_are_read_by_their_class_only():
    assert hand_parsed("a = row['result']['usage']\nb = rec['grade']['correct']\nc = d['other']\n") == [1, 2]
    files = [*(ROOT / "lib").rglob("*.py"), *(ROOT / "views").glob("*.py"), ROOT / "app.py"]
    offenders = {str(p.relative_to(ROOT)): hand_parsed(p.read_text(encoding="utf-8")) for p in files
                 if p != ROOT / "lib" / "records.py"}
    assert {k: v for k, v in offenders.items() if v} == {}
