"""Import direction: every package under src/ imports only its own layer or the layers below.

The check reads the sources with ``ast`` (nothing is imported), so it also sees the imports written inside
functions: a lazy import counts like any other. Run ``python tests/test_layers.py`` to print the package
import graph.
"""

from __future__ import annotations

import ast
import sys
from dataclasses import dataclass
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"

# Layer of each top-level package under src/ (docs/architecture.md). Same-layer imports are allowed, as
# long as the package graph has no cycle.
LAYERS: dict[str, int] = {
    "src": 0,  # src/__init__.py itself (imports nothing)
    "src.utils": 0,
    "src.core": 0,
    "src.pretrained": 0,
    "src.headmodel": 1,
    "src.render": 1,
    "src.datamodules": 2,
    "src.losses": 2,
    "src.metrics": 2,
    "src.models": 3,
    "src.callbacks": 4,
    "src.preprocess": 4,
    "src.tracking": 4,
    "src.reenact": 5,
    "src.export": 5,
    "src.evaluation": 5,
    "src.cli": 6,  # the entry points (train, evaluate, reenact)
    "src.app": 7,  # calls the entry points as processes
}


@dataclass(frozen=True)
class Import:
    """One import of a ``src.X`` package from a file of another package."""

    file: str
    line: int
    source: str
    target: str


def package_of(module: str) -> str | None:
    """``src.metrics.suite`` -> ``src.metrics``; ``src`` itself or a non-src module -> None."""
    parts = module.split(".")
    if parts[0] != "src" or len(parts) < 2:
        return None
    return ".".join(parts[:2])


def module_name(path: Path, root: Path) -> str:
    """Dotted module name of a file below ``root`` (the folder that holds ``src``)."""
    rel = path.relative_to(root).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def imports_of(text: str, module: str, is_package: bool, file: str = "<string>") -> list[Import]:
    """Every import of another ``src.X`` package in one source file, at any depth (lazy ones included).

    Args:
        text: the Python source.
        module: its dotted module name, e.g. ``src.metrics.compare``.
        is_package: True for an ``__init__.py`` (relative imports resolve from the module itself).
        file: the name to report.
    """
    source = package_of(module)
    base = module.split(".") if is_package else module.split(".")[:-1]
    found: list[Import] = []
    for node in ast.walk(ast.parse(text, filename=file)):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                anchor = base[: len(base) - node.level + 1]
                prefix = ".".join(anchor + ([node.module] if node.module else []))
            else:
                prefix = node.module or ""
            names = [prefix] if node.module or not node.level else [f"{prefix}.{a.name}" for a in node.names]
            if prefix == "src":  # from src import metrics
                names = [f"src.{a.name}" for a in node.names]
        for name in names:
            target = package_of(name)
            if target and target != source:
                found.append(Import(file, node.lineno, source or module, target))
    return found


def scan(root: Path = SRC.parent) -> list[Import]:
    """Cross-package imports of every file under ``root/src``."""
    found: list[Import] = []
    for path in sorted((root / "src").rglob("*.py")):
        module = module_name(path, root)
        rel = str(path.relative_to(root))
        found += imports_of(path.read_text(), module, path.name == "__init__.py", rel)
    return found


def upward(found: list[Import]) -> list[str]:
    """One line per import that goes to a higher layer or to a package with no layer."""
    bad = []
    for imp in found:
        src_layer = LAYERS.get(imp.source)
        dst_layer = LAYERS.get(imp.target)
        if src_layer is None or dst_layer is None:
            bad.append(f"{imp.file}:{imp.line} {imp.source} -> {imp.target} (package has no layer)")
        elif dst_layer > src_layer:
            bad.append(
                f"{imp.file}:{imp.line} {imp.source} (layer {src_layer}) -> {imp.target} (layer {dst_layer})"
            )
    return bad


def graph(found: list[Import]) -> dict[str, set[str]]:
    """Package import graph: package -> the packages it imports."""
    edges: dict[str, set[str]] = {}
    for imp in found:
        edges.setdefault(imp.source, set()).add(imp.target)
    return edges


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one package (each one holds a cycle)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return out


def report(edges: dict[str, set[str]]) -> str:
    """The graph as lines ``src.a (layer) -> b, c``."""
    lines = []
    for pkg in sorted(edges, key=lambda p: (LAYERS.get(p, 99), p)):
        targets = ", ".join(t.removeprefix("src.") for t in sorted(edges[pkg]))
        lines.append(f"{pkg} ({LAYERS.get(pkg, '?')}) -> {targets}")
    return "\n".join(lines)


def test_every_package_has_a_layer():
    packages = {f"src.{p.name}" for p in SRC.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    missing = sorted(packages - LAYERS.keys())
    assert not missing, f"add these packages to LAYERS in tests/test_layers.py: {missing}"


def test_imports_only_go_down():
    found = scan()
    print("\n" + report(graph(found)))
    bad = upward(found)
    assert not bad, "upward imports:\n" + "\n".join(bad)


def test_no_package_cycles():
    loops = cycles(graph(scan()))
    assert not loops, f"package import cycles: {loops}"


def test_scan_catches_upward_and_lazy_imports():
    text = (
        "from src.utils.io import to_uint8\n"
        "from ..models import loading\n"
        "def f():\n"
        "    import src.reenact.video\n"
        "    from src import export\n"
    )
    found = imports_of(text, "src.metrics.fake", is_package=False, file="fake.py")
    assert [(i.line, i.target) for i in found] == [
        (1, "src.utils"),
        (2, "src.models"),
        (4, "src.reenact"),
        (5, "src.export"),
    ] or sorted((i.line, i.target) for i in found) == [
        (1, "src.utils"),
        (2, "src.models"),
        (4, "src.reenact"),
        (5, "src.export"),
    ]
    bad = upward(found)
    assert len(bad) == 3
    assert bad[0].startswith("fake.py:") and "src.metrics (layer 2) -> src.models (layer 3)" in " ".join(bad)


def test_cycle_detection():
    edges = {"src.a": {"src.b"}, "src.b": {"src.c"}, "src.c": {"src.a"}, "src.d": {"src.a"}}
    assert cycles(edges) == [["src.a", "src.b", "src.c"]]
    assert cycles({"src.a": {"src.b"}}) == []


if __name__ == "__main__":
    print(report(graph(scan())))
    problems = upward(scan())
    print("\n".join(problems) or "no upward imports", file=sys.stderr)
