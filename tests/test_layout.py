"""The package layout: no import cycles, no private names across modules, and the
product never imports its test support.

The import graph is built from the source with ``ast``: every ``import`` and
``from ... import`` of a promptopt module counts, at module level or inside a function
or an ``if TYPE_CHECKING:`` block alike. Importing a package (``from promptopt.llm
import LLM``) is an edge to its ``__init__``.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import promptopt

ROOT = Path(promptopt.__file__).parent
TOP_LEVEL = {
    "__init__", "__main__", "errors", "registry", "template", "redact", "version", "evaluator",
}
SUBPACKAGES = {
    "cli", "comparison", "data", "datagen", "llm", "optimizers", "report", "resources", "runs",
    "search",
    "scoring", "tasks", "testing", "tracking",
}


def _modules(root: Path = ROOT) -> dict[str, Path]:
    found = {}
    for path in root.rglob("*.py"):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def _owner(name: str, modules: dict[str, Path]) -> str | None:
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def import_graph(root: Path = ROOT) -> tuple[dict[str, set[str]], list[tuple[str, str, str]]]:
    """Edges ``module -> imported promptopt module``, and every private name imported
    from another module as ``(importer, module, name)``."""
    modules = _modules(root)
    edges: dict[str, set[str]] = {m: set() for m in modules}
    private: list[tuple[str, str, str]] = []
    for module, path in modules.items():
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    target = _owner(alias.name, modules)
                    if target and target != module:
                        edges[module].add(target)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*parts, *([base] if base else [])])
                if base != "promptopt" and not base.startswith("promptopt."):
                    continue
                for alias in node.names:
                    full = f"{base}.{alias.name}"
                    target = full if full in modules else _owner(base, modules)
                    if target and target != module:
                        edges[module].add(target)
                    if alias.name.startswith("_") and not alias.name.startswith("__") \
                            and full not in modules:
                        private.append((module, base, alias.name))
    return edges, private


def find_cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module, each as a cycle path."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return [_cycle_in(c, edges) for c in components]


def _cycle_in(component: list[str], edges: dict[str, set[str]]) -> list[str]:
    """One closed path through ``component`` (``a -> b -> ... -> a``), for the message."""
    members = set(component)
    start = component[0]
    path, seen = [start], {start}
    while True:
        nxt = sorted(edges[path[-1]] & members)
        back = [w for w in nxt if w == start]
        if back and len(path) > 1:
            return [*path, start]
        step = next((w for w in nxt if w not in seen), None)
        if step is None:
            return [*path, nxt[0]] if nxt else path
        path.append(step)
        seen.add(step)


def test_the_graph_finds_a_planted_cycle(tmp_path):
    """The checker itself: a package whose modules import each other is reported."""
    pkg = tmp_path / "promptopt"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("from promptopt.sub._a import A\n")
    (pkg / "sub" / "_a.py").write_text("A = 1\ndef f():\n    from promptopt.sub import _b\n")
    (pkg / "sub" / "_b.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from promptopt.sub._a import A\n"
        "from promptopt.sub._a import _hidden\n"
    )
    edges, private = import_graph(pkg)
    cycles = find_cycles(edges)
    assert cycles and set(cycles[0]) == {"promptopt.sub._a", "promptopt.sub._b"}
    assert private == [("promptopt.sub._b", "promptopt.sub._a", "_hidden")]


def test_no_import_cycles():
    edges, _ = import_graph()
    cycles = find_cycles(edges)
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)


def test_no_private_name_is_imported_from_another_module():
    _, private = import_graph()
    assert not private, "private names imported across modules: " + ", ".join(
        f"{importer} imports {name} from {module}" for importer, module, name in private
    )


def test_product_code_never_imports_test_support():
    edges, _ = import_graph()
    offenders = sorted(
        f"{module} -> {target}"
        for module, targets in edges.items()
        if not module.startswith("promptopt.testing")
        for target in targets
        if target == "promptopt.testing" or target.startswith("promptopt.testing.")
    )
    assert not offenders, offenders


def test_private_modules_are_used_only_inside_their_package():
    """Another package reaches a subpackage through its ``__init__`` (its public names)."""
    edges, _ = import_graph()
    offenders = []
    for module, targets in edges.items():
        for target in targets:
            package, _, leaf = target.rpartition(".")
            if leaf.startswith("_") and not leaf.startswith("__"):
                inside = module == package or module.startswith(package + ".")
                if not inside and not module.startswith("promptopt.testing"):
                    offenders.append(f"{module} -> {target}")
    assert not offenders, sorted(offenders)


def test_top_level_holds_only_the_small_leaves_and_the_subpackages():
    entries = {p.stem if p.is_file() else p.name for p in ROOT.iterdir()
               if p.name != "__pycache__" and not p.name.endswith(".pyc")}
    assert entries == TOP_LEVEL | SUBPACKAGES, sorted(entries ^ (TOP_LEVEL | SUBPACKAGES))


def test_every_subpackage_re_exports_its_public_names():
    for name in sorted(SUBPACKAGES - {"resources"}):
        package = __import__(f"promptopt.{name}", fromlist=["__all__"])
        exported = getattr(package, "__all__", None)
        assert exported, f"promptopt.{name} has no __all__"
        missing = [n for n in exported if not hasattr(package, n)]
        assert not missing, f"promptopt.{name}.__all__ names what it lacks: {missing}"


@pytest.mark.embedded
def test_a_real_run_leaves_test_support_unimported(tmp_path, embedded_cache):
    """A search on the embedded model (real llama.cpp, real scorer) in a fresh process."""
    script = (
        "import sys\n"
        "from promptopt import run\n"
        f"result = run('random', budget=2, train=2, val=2, test=2, cache_dir={embedded_cache!r},"
        f" storage='sqlite:///{tmp_path / 'real.db'}')\n"
        "loaded = sorted(m for m in sys.modules if m.startswith('promptopt.testing'))\n"
        "print('LOADED', loaded, result.budget_spent, result.scorer)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=600, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    line = next(x for x in done.stdout.splitlines() if x.startswith("LOADED"))
    assert line.startswith("LOADED [] "), line
    assert int(line.split()[2]) >= 1 and "hashing" not in line


def test_experiments_import_only_public_names():
    # The benchmarks use promptopt as a user would: packages and their exported names,
    # never a private module (``promptopt.optimizers._opro``).
    private = []
    for path in sorted((ROOT.parent / "experiments").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = ([node.module or ""] if isinstance(node, ast.ImportFrom)
                     else [a.name for a in node.names] if isinstance(node, ast.Import) else [])
            private += [f"{path.name}: {name}" for name in names if name.startswith("promptopt")
                        and any(part.startswith("_") for part in name.split("."))]
    assert not private, "experiments import private modules: " + ", ".join(private)
