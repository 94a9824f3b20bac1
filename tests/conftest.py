"""Shared fixtures: the tiny synthetic scenario gridded once per test session."""

import os
from pathlib import Path

import pytest

# The STAC schemas the tests validate against: those shipped in the package (stac/schemas), or wherever
# INSARCAST_STAC_SCHEMAS says. A fresh clone has them, so no STAC check skips there.
STAC_SCHEMAS = Path(os.environ.get("INSARCAST_STAC_SCHEMAS") or Path(__file__).resolve().parents[1] / "stac" / "schemas")


@pytest.fixture(scope="session")
def tiny_scenario(tmp_path_factory) -> Path:
    """The tiny preset (seed 0) written and gridded: folder with the CSV, zones, truth and cube.zarr."""
    from insarcast.egms import read_egms
    from insarcast.grid import grid_points
    from insarcast.synth import preset, write_scenario

    root = tmp_path_factory.mktemp("tiny")
    outputs = write_scenario(preset("tiny", seed=0), root, progress=False)
    grid_points(read_egms(outputs.csv), root / "cube.zarr")
    return root


@pytest.fixture(scope="session")
def tiny_cube(tiny_scenario) -> Path:
    return tiny_scenario / "cube.zarr"


@pytest.fixture(scope="session")
def tiny_demo(tmp_path_factory):
    """`insarcast demo --preset tiny` run once through the CLI: (its folder, the click result, seconds).

    The demo's own tests read it as a user would; the report's tests take its cube, products,
    compare folder and zones."""
    import time

    from click.testing import CliRunner

    from insarcast.cli import main

    out = tmp_path_factory.mktemp("demo") / "run"
    tick = time.perf_counter()
    result = CliRunner().invoke(main, ["demo", "--out", str(out), "--preset", "tiny", "--quiet"])
    seconds = time.perf_counter() - tick
    assert result.exit_code == 0, result.output + repr(result.exception)
    return out, result, seconds


# ---------------------------------------------------------------------------------------------- ensembles
# The one factory of test ensembles: every test that needs an ``ensemble.json`` builds it here, so a
# change to the manifest's format is made once. ``write_ensemble`` writes members and manifest;
# ``ensemble_manifest`` is the manifest alone (a dict, as json.loads gives it), to edit or to check.

PAPER_CHANNEL_NAMES = ["displacement_relative_to_last", "valid"]


def linear_member(c: float, *, history: int, horizon: int, patch: int, channels: int = 2) -> bytes:
    """A tiny real ONNX member: forecast[b, f] = c * (f + 1) * history[b, 0, 0] (the first epoch's first
    channel, scaled), with a dynamic batch dimension."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    x = helper.make_tensor_value_info("history", TensorProto.FLOAT, ["batch", history, channels, patch, patch])
    y = helper.make_tensor_value_info("forecast", TensorProto.FLOAT, ["batch", horizon, patch, patch])
    inits = [numpy_helper.from_array(np.array(v, np.int64), name) for name, v in
             (("starts", [0, 0]), ("ends", [1, 1]), ("axes", [1, 2]), ("shape", [-1, 1, patch, patch]))]
    scale = (c * np.arange(1, horizon + 1, dtype=np.float32)).reshape(1, horizon, 1, 1)
    inits.append(numpy_helper.from_array(scale, "scale"))
    nodes = [helper.make_node("Slice", ["history", "starts", "ends", "axes"], ["first"]),
             helper.make_node("Reshape", ["first", "shape"], ["frame"]),
             helper.make_node("Mul", ["frame", "scale"], ["forecast"])]
    model = helper.make_model(helper.make_graph(nodes, "linear", [x], [y], initializer=inits),
                              opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    onnx.checker.check_model(model)
    return model.SerializeToString()


def ensemble_manifest(members, *, history: int, horizon: int, patch: int, norm: dict, channels: int = 2,
                      name: str = "test-ensemble", architecture: str = "linear", spacing: float | None = 100.0,
                      crs: str | None = "EPSG:3035", epoch_days: float = 6.0, inputs: str | None = "paper",
                      member_fields=None, **fields) -> dict:
    """A valid manifest (what ``insarcast export`` writes) for ``members``: (file name, bytes) pairs.

    ``inputs=None`` leaves out ``inputs`` and ``target`` (an ensemble written before the keys existed);
    ``member_fields(k)``: fields of member k to add or replace; ``fields``: top-level keys to add or replace.
    """
    import hashlib

    entries = []
    for k, (file, data) in enumerate(members):
        entry = {"file": file, "sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data), "arch": architecture,
                 "trial": k, "run_seed": 0, "strategy": "tpe", "val_loss": 1.0 + k,
                 "hyperparameters": {"model": {"history": history, "horizon": horizon, "patch": patch,
                                               "channels": channels}, "train": {}},
                 "exporter": "onnx.helper", "parity_max_abs": 0.0}
        entry.update(member_fields(k) if member_fields else {})
        entries.append(entry)
    manifest = {
        "format": "insarcast-ensemble", "format_version": 1, "name": name, "architecture": architecture,
        "framework": "onnx", "framework_version": "1.17.0", "opset": 18, "created": "2026-01-01T00:00:00Z",
        "versions": {"insarcast": "0.1.0", "onnx": "1.17.0"},
        "history": history, "horizon": horizon, "patch": patch, "channels": channels,
        **({} if inputs is None else {"inputs": inputs, "target": f"{inputs} target"}),
        "channel_names": list(PAPER_CHANNEL_NAMES), "normalisation": dict(norm),
        "grid": {"spacing": spacing, "crs": crs}, "epoch_days": epoch_days,
        "input": {"name": "history", "dtype": "float32", "shape": [-1, history, channels, patch, patch],
                  "dims": ["batch", "time", "channel", "y", "x"]},
        "output": {"name": "forecast", "dtype": "float32", "shape": [-1, horizon, patch, patch],
                   "dims": ["batch", "horizon", "y", "x"], "units": "normalised"},
        "members": entries,
    }
    if inputs not in (None, "paper"):       # what the export copies from the runs (the reference's rule)
        from insarcast.baselines import reference_rule

        manifest["reference_rule"] = reference_rule()
    manifest.update(fields)
    return manifest


def write_ensemble(folder, members, *, edit=None, **manifest_fields):
    """Write ``members`` (a list of ONNX bytes) as ``member_XX.onnx`` in ``folder`` with their manifest
    (:func:`ensemble_manifest`'s keywords); ``edit(manifest)`` changes the manifest before it is written.
    Returns the folder."""
    import json
    from pathlib import Path

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    files = []
    for k, data in enumerate(members):
        file = f"member_{k:02d}.onnx"
        (folder / file).write_bytes(data)
        files.append((file, data))
    manifest = ensemble_manifest(files, **manifest_fields)
    if edit is not None:
        edit(manifest)
    (folder / "ensemble.json").write_text(json.dumps(manifest, indent=1))
    return folder


def edit_manifest(folder, change) -> None:
    """Change the ``ensemble.json`` in ``folder`` in place (``change(manifest)`` edits the dict)."""
    import json
    from pathlib import Path

    path = Path(folder) / "ensemble.json"
    manifest = json.loads(path.read_text())
    change(manifest)
    path.write_text(json.dumps(manifest))
