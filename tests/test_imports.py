"""The shape of the code: no import cycle inside `ssl_keras`, small serving modules, and tests that stand on their own.

Read from the source with `ast` (nothing is imported), so a cycle is found even where it sits in an import inside a
function, which only fails at run time and only on the path that reaches it.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "ssl_keras"
MAX_SERVING_LINES = 300
# Tests of the benchmark and research scripts themselves: they may load those scripts.
LOADS_BENCHMARKS = {"test_benchmarks.py", "test_results_table.py", "test_research.py"}
# conftest.py defines `load_benchmark` for them; this file lists the scripts' names to look for.
NAMES_BENCHMARKS = {"conftest.py", "test_imports.py"}
BENCHMARKS_PATH = re.compile(r"(^|[/\\])benchmarks([/\\]|$)")  # "benchmarks", "benchmarks/x.py", "/repo/benchmarks"


def module_name(path: Path, root: Path = REPO) -> str:
    """"ssl_keras.serving.core" for ssl_keras/serving/core.py under `root`; a package is named by its folder."""
    parts = path.relative_to(root).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def package_modules() -> dict[str, Path]:
    """{module name: file} of every module in `ssl_keras`."""
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imported(path: Path, modules: dict, root: Path = REPO) -> set[str]:
    """The `ssl_keras` modules that `path` imports, anywhere in it (in functions too).

    `from a.b import c` imports the module `a.b.c` when there is one, else the name `c` of `a.b`.
    Relative imports are resolved against the file's own package.
    """
    name = module_name(path, root)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            for alias in node.names:
                found.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base)
    return {m for m in found if m in modules and m != name}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of `graph` as [a, b, ..., a], or None (depth-first search, three colours)."""
    state, stack = {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                cycle = visit(nxt)
                if cycle:
                    return cycle
        stack.pop()
        state[node] = "done"
        return None

    for node in sorted(graph):
        if node not in state:
            cycle = visit(node)
            if cycle:
                return cycle
    return None


def test_find_cycle_finds_one_and_only_one():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": {"b"}}) == ["b", "b"]


def test_imported_reads_every_kind_of_import(tmp_path):
    """`import x`, `from x import y`, relative imports and imports inside functions are all edges."""
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    for name in ("__init__", "a", "b", "sub/__init__", "sub/c", "sub/d"):
        (pkg / f"{name}.py").write_text("")
    (pkg / "sub" / "c.py").write_text("import pkg.a\nfrom pkg import b\nfrom . import d\nfrom .. import a\n"
                                      "def f():\n    from pkg.sub import d as e\n    import os\n")
    modules = {module_name(p, tmp_path): p for p in pkg.rglob("*.py")}
    assert imported(pkg / "sub" / "c.py", modules, tmp_path) == {"pkg.a", "pkg.b", "pkg.sub.d"}


def test_no_import_cycle_in_the_package():
    modules = package_modules()
    graph = {name: imported(path, modules) for name, path in modules.items()}
    assert "ssl_keras.serving.core" in graph["ssl_keras.serving.rest"]  # the walk sees the package's imports
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_serving_modules_import_down_only():
    """TF Serving's layering: the command line over the two APIs, over what they share; never the other way."""
    layers = ["core", "bounded_json", "deadline", "json_tensor", "rest", "grpc_service", "cli"]  # low to high
    modules = package_modules()
    assert {f"ssl_keras.serving.{m}" for m in layers} | {"ssl_keras.serving"} == {
        m for m in modules if m.startswith("ssl_keras.serving")}
    for i, name in enumerate(layers):
        found = imported(modules[f"ssl_keras.serving.{name}"], modules)
        higher = sorted(m for m in found if m.rpartition(".")[2] in layers[i:])
        assert not higher, f"ssl_keras.serving.{name} imports {higher}, which sit above it"
    assert imported(modules["ssl_keras.serve"], modules) == {"ssl_keras.serving.cli"}


def test_no_serving_module_is_long():
    lengths = {p.name: len(p.read_text().splitlines()) for p in sorted((PACKAGE / "serving").glob("*.py"))}
    assert {"core.py", "rest.py", "deadline.py", "grpc_service.py", "bounded_json.py", "cli.py"} <= set(lengths)
    long = {name: n for name, n in lengths.items() if n > MAX_SERVING_LINES}
    assert not long, f"serving modules over {MAX_SERVING_LINES} lines: {long}"


def benchmark_uses(path: Path, scripts: set[str]) -> list[str]:
    """What in a test file loads code from benchmarks/: `load_benchmark(...)`, an import of a benchmark
    script by name, or a string that is a path to the folder (a path built to it); docstrings aside."""
    tree = ast.parse(path.read_text(), str(path))
    docstrings = {id(body[0].value) for node in ast.walk(tree)
                  if isinstance(node, (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
                  for body in [node.body] if body and isinstance(body[0], ast.Expr)}
    uses = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", "")) == "load_benchmark":
            uses.append(f"line {node.lineno}: load_benchmark(...)")
        elif isinstance(node, ast.Import):
            uses += [f"line {node.lineno}: import {a.name}" for a in node.names if a.name.split(".")[0] in scripts]
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in scripts | {"benchmarks"}:
            uses.append(f"line {node.lineno}: from {node.module} import ...")
        elif (isinstance(node, ast.Constant) and isinstance(node.value, str) and BENCHMARKS_PATH.search(node.value)
              and id(node) not in docstrings):
            uses.append(f"line {node.lineno}: {node.value[:60]!r}")
    return uses


def test_only_the_tests_of_the_benchmark_scripts_load_them():
    """A test borrows no fixture from benchmarks/, so editing a benchmark cannot break it."""
    scripts = {p.stem for p in (REPO / "benchmarks").glob("*.py")}
    assert "bench_serving_fuzz" in scripts
    assert LOADS_BENCHMARKS <= {p.name for p in (REPO / "tests").glob("*.py")}
    offenders = {p.name: benchmark_uses(p, scripts) for p in sorted((REPO / "tests").glob("*.py"))
                 if p.name not in LOADS_BENCHMARKS | NAMES_BENCHMARKS}
    offenders = {name: uses for name, uses in offenders.items() if uses}
    assert not offenders, f"tests that load benchmarks/: {offenders}"
    assert benchmark_uses(REPO / "tests" / "test_benchmarks.py", scripts)  # the check sees a real use


def test_benchmark_uses_sees_each_way_of_loading_a_script(tmp_path):
    test = tmp_path / "test_x.py"
    test.write_text('"""Uses benchmarks/bench_serving_fuzz.py\'s clients? No: a docstring only."""\n'
                    "import bench_serving_fuzz\nfrom common import machine\n"
                    "def test_a():\n    fuzz = load_benchmark('bench_serving_fuzz')\n"
                    "    path = REPO / 'benchmarks'\n    open('benchmarks/common.py')\n")
    uses = benchmark_uses(test, {"bench_serving_fuzz", "common"})
    assert sorted(use.split(":")[0] for use in uses) == ["line 2", "line 3", "line 5", "line 6", "line 7"], uses
