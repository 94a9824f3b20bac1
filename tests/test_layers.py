"""The layers run one way: a lower layer never imports a higher one (read from the source with ast).

foundation (src/insarcast: egms, grid, cube, synth, fsutil, errors, baselines, contract, ...)
  <- udf <- stac <- training / export <- report, compare, demo, cli (the top)
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src" / "insarcast"
#: The top of the foundation's folder: entry points and the report, which may import anything.
TOP = {"cli", "demo", "compare", "report", "__main__"}
UPPER = ("udf", "stac", "training", "export", "report", "compare", "demo", "cli")
#: layer folder -> the insarcast subpackages it must not import
FORBIDDEN = {
    "udf": ("training", "export", "stac", "report", "compare", "demo", "cli"),
    "stac": ("training", "report", "compare", "demo", "cli"),
}


def _imports(path: Path, package: str) -> set[str]:
    """The insarcast subpackages (first component below ``insarcast``) a module imports,
    module-level and function-level alike; relative imports resolved against ``package``."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                module = ".".join(base + ([node.module] if node.module else []))
                names = [module] if node.module else [f"{module}.{a.name}" for a in node.names]
            else:
                names = [node.module or ""]
        else:
            continue
        for name in names:
            parts = name.split(".")
            if parts[0] == "insarcast" and len(parts) > 1:
                found.add(parts[1])
    return found


def _modules():
    for path in sorted(SRC.rglob("*.py")):
        rel = path.relative_to(SRC)
        top = rel.parts[0].removesuffix(".py")
        package = ".".join(["insarcast", *rel.parts[:-1]])
        layer = "top" if top in TOP else "foundation"
        yield layer, path, package
    for folder in ("udf", "stac", "training", "export"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            rel = path.relative_to(ROOT / folder)
            yield folder, path, ".".join(["insarcast", folder, *rel.parts[:-1]])


def _violations():
    bad = []
    for layer, path, package in _modules():
        if layer == "foundation":
            forbidden = UPPER
        else:
            forbidden = FORBIDDEN.get(layer, ())
        for name in sorted(_imports(path, package) & set(forbidden)):
            bad.append(f"{path.relative_to(ROOT)} ({layer}) imports insarcast.{name}")
    return bad


def test_the_scan_sees_every_layer():
    layers = {layer for layer, _, _ in _modules()}
    assert {"foundation", "top", "udf", "stac", "training", "export"} <= layers
    assert "udf" in _imports(SRC / "demo.py", "insarcast") or "udf" in _imports(SRC / "cli.py", "insarcast")


def test_no_lower_layer_imports_a_higher_one():
    assert _violations() == []


def test_the_scan_catches_an_upward_import(tmp_path):
    path = tmp_path / "m.py"
    path.write_text("def f():\n    from ..training import tune\n    import insarcast.report.build\n")
    assert _imports(path, "insarcast.udf") == {"training", "report"}


@pytest.mark.parametrize("module", ["contract", "errors"])
def test_the_contract_and_errors_import_nothing_of_insarcast(module):
    assert _imports(SRC / f"{module}.py", "insarcast") == set()
