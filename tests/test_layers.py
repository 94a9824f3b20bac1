"""The layers run one way: a lower layer never imports a higher one (read from the source with ast).

foundation (src/insarcast: egms, grid, cube, synth, fsutil, errors, baselines, contract, ...)
  <- udf <- stac <- training / export <- report/, compare, demo, cli (the top)

Each layer but the foundation and the entry points has its own top-level folder, mapped below
``insarcast`` by pyproject's package-dir (``report/`` imports as ``insarcast.report``).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src" / "insarcast"
#: The top of the foundation's folder: the entry points, which may import anything.
TOP = {"cli", "demo", "compare", "__main__"}
#: layer folders at the top of the repository (report/ is the top layer: it may import anything)
FOLDERS = {"udf": "udf", "stac": "stac", "training": "training", "export": "export", "report": "top"}
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
    for folder, layer in FOLDERS.items():
        for path in sorted((ROOT / folder).rglob("*.py")):
            rel = path.relative_to(ROOT / folder)
            yield layer, path, ".".join(["insarcast", folder, *rel.parts[:-1]])


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
    assert ROOT / "report" / "build.py" in {path for layer, path, _ in _modules() if layer == "top"}
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


def test_every_layer_folder_is_mapped_below_insarcast():
    """The folders this test reads are the ones pyproject installs as insarcast.<name>; src/insarcast holds
    the foundation and the entry points only."""
    try:
        import tomllib
    except ImportError:  # Python 3.10
        tomllib = pytest.importorskip("tomli")
    package_dir = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"][
        "package-dir"]
    assert {f"insarcast.{folder}": folder for folder in FOLDERS} == {k: v for k, v in package_dir.items() if k}
    assert sorted(p.name for p in SRC.iterdir() if p.is_dir() and p.name != "__pycache__") == ["egms", "synth"]
