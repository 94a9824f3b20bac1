"""The declared lower bounds hold: scripts/lowest_deps.sh installs the lowest version every direct
dependency's bound allows (uv, --resolution lowest-direct) into a separate venv and runs the ingest,
gridding, synthetic-scenario, ensemble, products, STAC and CLI tests there. Slow (about 3 minutes, and
it downloads those versions from the package index): CI runs it with the other slow tests."""

import os
import subprocess
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_the_lowest_allowed_direct_dependencies_pass_the_representative_tests(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    env["INSARCAST_LOWEST_VENV"] = str(tmp_path / "venv-lowest")
    proc = subprocess.run(["bash", str(ROOT / "scripts" / "lowest_deps.sh")], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, (proc.stdout[-4000:], proc.stderr[-4000:])
    frozen = {name.lower(): Version(version) for name, version in
              (line.split("==", 1) for line in proc.stdout.splitlines() if "==" in line and " " not in line)}
    # what ran is each core dependency at its declared floor, not a newer version that hides a false bound
    for requirement in map(Requirement, _pyproject()["project"]["dependencies"]):
        floor = next(Version(s.version) for s in requirement.specifier if s.operator == ">=")
        assert frozen[requirement.name.lower()] == floor, (requirement, frozen.get(requirement.name.lower()))
    assert " passed" in proc.stdout and " failed" not in proc.stdout, proc.stdout[-2000:]


def _pyproject():
    import tomllib

    return tomllib.loads((ROOT / "pyproject.toml").read_text())
