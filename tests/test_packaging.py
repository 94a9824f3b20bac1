"""The built wheel holds every subpackage and installs and imports without torch."""

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SUBPACKAGES = ["insarcast", "insarcast.egms", "insarcast.synth", "insarcast.udf", "insarcast.training",
               "insarcast.export", "insarcast.stac", "insarcast.report"]


@pytest.mark.slow
def test_wheel_installs_into_a_fresh_venv_and_imports_every_subpackage(tmp_path):
    subprocess.run([sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(tmp_path / "dist"),
                    str(ROOT)], check=True, capture_output=True)
    wheel, = (tmp_path / "dist").glob("insarcast-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    for package in SUBPACKAGES:
        assert package.replace(".", "/") + "/__init__.py" in names, package
    assert not any(n.startswith(("udf/", "stac/", "training/", "export/")) for n in names), \
        "top-level folders must install under insarcast/"
    # validate-stac's default schemas travel in the wheel, with their licences
    for shipped in ("schemas.stacspec.org/v1.1.0/item-spec/json-schema/item.json", "README.md",
                    "LICENSE-Apache-2.0.txt", "LICENSE-MIT-PROJ.txt",
                    "stac-extensions.github.io/mlm/v1.5.2/schema.json"):
        assert f"insarcast/stac/schemas/{shipped}" in names, shipped
    # so do the synthetic-truth corrections of the residual-corrected inputs
    for shipped in ("T12-F6-P16", "T12-F6-P32", "T8-F6-P16"):
        assert f"insarcast/udf/corrections/synthetic-{shipped}.json" in names, shipped

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = venv / "bin" / "python"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    subprocess.run([str(python), "-m", "pip", "install", "--quiet", str(wheel)], check=True, env=env)
    code = ("import importlib, sys\n"
            f"for name in {SUBPACKAGES!r}:\n"
            "    module = importlib.import_module(name)\n"
            "    assert 'site-packages' in module.__file__, module.__file__\n"
            "assert 'torch' not in sys.modules\n"
            "from insarcast.udf.correction import shipped\n"
            "from insarcast.udf.inputs import INPUTS\n"
            "assert shipped(history=12, horizon=6, patch=16, static=INPUTS['residual-corrected'][3:]).layers[-1][0].shape[0] == 6\n"
            "import importlib.util\n"
            "assert importlib.util.find_spec('torch') is None, 'the core must not install torch'\n")
    subprocess.run([str(python), "-c", code], check=True, env=env, cwd=tmp_path)
    version = subprocess.run([str(venv / "bin" / "insarcast"), "--version"], check=True, env=env,
                             capture_output=True, text=True).stdout
    assert version.startswith("insarcast, version 0.1.0")
