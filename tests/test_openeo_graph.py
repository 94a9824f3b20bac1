"""The openEO process graph: written offline, valid against the official process definitions, and the
README's snippet runs and prints the graph the README shows."""

import contextlib
import io
import json
import os
import re
from pathlib import Path

import pytest

from insarcast.errors import InputError
from insarcast.udf.openeo_graph import process_graph
from insarcast.udf.openeo_processes import validate_graph

ROOT = Path(__file__).resolve().parents[1]
DEFINITIONS = Path(os.environ.get("INSARCAST_OPENEO_PROCESSES", ROOT.parent / "shared" / "openeo-processes"))
EPOCHS = ["2021-11-22", "2021-11-28", "2021-12-04", "2021-12-10"]
THRESHOLDS = {"q85": 1.0, "q95": 2.0, "q99": 3.0, "std_tercile_1": 0.1, "std_tercile_2": 0.2}
needs_definitions = pytest.mark.skipif(not (DEFINITIONS / "apply_neighborhood.json").exists(),
                                       reason=f"no openEO process definitions at {DEFINITIONS}")


def _graph(**kwargs):
    args = dict(stac_url="https://example.org/cube/collection.json", bbox=(4058000, 3082000, 4083600, 3101200),
                epochs=EPOCHS, ensemble="/data/ensemble", thresholds=THRESHOLDS, patch=32)
    return process_graph(**{**args, **kwargs})


def test_the_graph_loads_the_stac_cube_moves_time_into_bands_and_stamps_the_reference_time():
    nodes = _graph(overlap=8)["process_graph"]
    order = ["load_stac", "apply_dimension", "rename_labels", "apply_neighborhood", "add_dimension", "save_result"]
    assert [n["process_id"] for n in nodes.values()] == order
    load, to_bands, labels, neighbourhood, stamp, save = (n["arguments"] for n in nodes.values())
    assert load["url"] == "https://example.org/cube/collection.json" and load["spatial_extent"]["crs"] == 3035
    assert load["temporal_extent"] == ["2021-11-22", "2021-12-11"]            # the end is excluded
    assert (to_bands["dimension"], to_bands["target_dimension"]) == ("t", "bands")
    assert labels["target"] == EPOCHS
    assert [s["dimension"] for s in neighbourhood["size"]] == ["x", "y"]        # purely spatial
    # the default halo: the 31 cells of the model tiles meeting the core, the 6 the widest filter reads: 37
    assert [o["value"] for o in neighbourhood["overlap"]] == [37, 37]
    udf = neighbourhood["process"]["process_graph"]["runudf1"]["arguments"]
    assert udf["runtime"] == "Python" and "def apply_datacube(cube: xarray.DataArray" in udf["udf"]
    assert udf["context"] == {"ensemble": "/data/ensemble", "thresholds": THRESHOLDS, "band": "displacement",
                              "mode": "change", "overlap": 8}
    assert stamp == {"data": {"from_node": "applyneighborhood1"}, "name": "t", "label": "2021-12-10",
                     "type": "temporal"}
    assert save["format"] == "GTiff" and nodes["saveresult1"]["result"] is True


@pytest.mark.parametrize("kwargs, message", [
    ({"epochs": ["2021-12-04", "2021-11-22"]}, "strictly increasing"),
    ({"epochs": ["yesterday"]}, "ISO 8601"),
    ({"halo": -1}, "halo >= 0"),
    ({"overlap": -2}, "overlap"),
    ({"tile": 0}, "field 'tile': expected tile >= 1"),
    ({"bbox": (float("nan"), 3082000, 4083600, 3101200)}, "field 'bbox': expected finite"),
    ({"bbox": (4058000, 3082000, float("inf"), 3101200)}, "field 'bbox': expected finite"),
    ({"bbox": (4083600, 3082000, 4058000, 3101200)}, "west < east and south < north"),
    ({"bbox": (4058000, 3101200, 4083600, 3082000)}, "west < east and south < north"),
    ({"bbox": (4058000, 3082000, 4083600)}, "four numbers"),
])
def test_the_builder_refuses_what_the_backend_would(kwargs, message):
    with pytest.raises(InputError, match=re.escape(message)):
        _graph(**kwargs)


# ------------------------------------------------------------------------- openeo build's options

def _strict_json(path):
    """The file parsed as strict JSON: a NaN or Infinity literal fails."""
    def refuse(constant):
        raise AssertionError(f"{path}: {constant} is not JSON")
    return json.loads(Path(path).read_text(encoding="utf-8"), parse_constant=refuse)


@pytest.fixture
def build_inputs(tmp_path):
    """A tiny ensemble (patch 8) and a cube Collection as `publish-cube` writes its cube:dimensions:
    x 4058000..4083600, y 3082000..3101200 (the cells' edges), EPSG:3035."""
    pytest.importorskip("onnx")
    from conftest import linear_member, write_ensemble

    ensemble = write_ensemble(tmp_path / "ensemble", [linear_member(0.5, history=2, horizon=1, patch=8)],
                              history=2, horizon=1, patch=8, norm={"input_mean": 0.0, "input_std": 1.0,
                                                                   "target_mean": 0.0, "target_std": 1.0})
    collection = tmp_path / "collection.json"
    collection.write_text(json.dumps({"type": "Collection", "cube:dimensions": {
        "x": {"type": "spatial", "axis": "x", "extent": [4058000.0, 4083600.0], "step": 100.0,
              "reference_system": 3035},
        "y": {"type": "spatial", "axis": "y", "extent": [3082000.0, 3101200.0], "step": -100.0,
              "reference_system": 3035},
        "t": {"type": "temporal", "values": EPOCHS}}}))
    return {"ensemble": ensemble, "collection": collection}


def _build(inputs, tmp_path, *, bbox=(4060000, 3085000, 4070000, 3095000), **kwargs):
    from insarcast.udf.openeo_job import build_job

    args = dict(cube_stac=str(inputs["collection"]), ensemble=inputs["ensemble"], bbox=bbox, thresholds=None,
                archive_url="https://example.org/u.zip", out=tmp_path / "job")
    return build_job(**{**args, **kwargs})


def test_openeo_build_writes_strict_json(build_inputs, tmp_path):
    job = _build(build_inputs, tmp_path, thresholds=THRESHOLDS)
    for name in ("job.json", "statistics_graph.json", "process_graph.json", "job_options.json"):
        _strict_json(job / name)
    assert _strict_json(job / "job.json")["bbox"] == [4060000, 3085000, 4070000, 3095000]


@pytest.mark.parametrize("kwargs, message", [
    ({"bbox": (float("nan"), 3085000, 4070000, 3095000)}, "option --bbox: expected finite"),
    ({"bbox": (4060000, 3085000, 4070000, float("inf"))}, "option --bbox: expected finite"),
    ({"bbox": (4070000, 3085000, 4060000, 3095000)}, "option --bbox: expected west < east and south < north"),
    ({"bbox": (4060000, 3095000, 4070000, 3085000)}, "option --bbox: expected west < east and south < north"),
    ({"bbox": (0, 0, 1, 1)}, "option --bbox: the bbox (west 0, south 0, east 1, north 1) does not meet the cube's"),
    ({"bbox": (4083600, 3085000, 4090000, 3095000)}, "does not meet the cube's extent"),     # touches the edge only
    ({"tile": 0}, "option --tile: expected 32..256"),
    ({"tile": 16}, "option --tile: expected 32..256"),
    ({"tile": 99999999}, "option --tile: expected 32..256"),
    ({"archive_url": "ftp://x"}, "option --archive-url: expected an https:// URL"),
    ({"archive_url": "http://example.org/u.zip"}, "option --archive-url: expected an https:// URL"),
    ({"archive_url": "https:///u.zip"}, "option --archive-url: expected an https:// URL"),
    ({"archive_url": "https://example.org/u.zip#x"}, "option --archive-url: expected a URL without a #fragment"),
])
def test_openeo_build_refuses_bad_options_and_writes_nothing(build_inputs, tmp_path, kwargs, message):
    with pytest.raises(InputError, match=re.escape(message)):
        _build(build_inputs, tmp_path, **kwargs)
    assert not (tmp_path / "job").exists()


def test_openeo_build_without_the_cubes_extent_takes_any_ordered_bbox(build_inputs, tmp_path):
    doc = json.loads(build_inputs["collection"].read_text())
    for axis in ("x", "y"):
        del doc["cube:dimensions"][axis]["extent"]
    build_inputs["collection"].write_text(json.dumps(doc))
    assert (_build(build_inputs, tmp_path, bbox=(0, 0, 1, 1)) / "job.json").is_file()


def test_openeo_build_cli_names_the_tile_option(build_inputs, tmp_path):
    from click.testing import CliRunner

    from insarcast.cli import main

    base = ["openeo", "build", "--cube-stac", str(build_inputs["collection"]), "--ensemble",
            str(build_inputs["ensemble"]), "--archive-url", "https://example.org/u.zip", "--out", str(tmp_path / "job")]
    for extra, expected in ((["--bbox", "4060000", "3085000", "4070000", "3095000", "--tile", "0"], "option --tile"),
                            (["--bbox", "nan", "3085000", "4070000", "3095000"], "option --bbox")):
        result = CliRunner().invoke(main, base + extra)
        assert result.exit_code == 2 and expected in result.stderr, result.output
        assert len(result.stderr.strip().splitlines()) == 1 and "halo" not in result.stderr
        assert not (tmp_path / "job").exists()


@needs_definitions
def test_every_graph_the_project_writes_is_valid_against_the_process_definitions():
    validate_graph(_graph(), definitions=DEFINITIONS)
    validate_graph(_graph(overlap=4, horizon=2, python_path=["deps"], halo=31), definitions=DEFINITIONS)


@needs_definitions
def test_the_validator_finds_unknown_processes_parameters_and_missing_ones_in_nested_graphs_too():
    graph = _graph()
    nodes = graph["process_graph"]
    nodes["applyneighborhood1"]["arguments"]["process"]["process_graph"]["runudf1"]["arguments"]["colour"] = "red"
    del nodes["applydimension1"]["arguments"]["process"]["process_graph"]["arrayconcat1"]["arguments"]["array2"]
    nodes["renamelabels1"]["process_id"] = "rename_lables"
    nodes["adddimension1"]["arguments"]["data"] = {"from_node": "nowhere"}
    with pytest.raises(InputError) as caught:
        validate_graph(graph, definitions=DEFINITIONS)
    message = str(caught.value)
    assert "applyneighborhood1/runudf1: run_udf has no parameter 'colour'" in message
    assert "applydimension1/arrayconcat1: array_concat needs 'array2'" in message
    assert "renamelabels1: unknown process 'rename_lables'" in message
    assert "adddimension1: from_node 'nowhere'" in message
    with pytest.raises(InputError, match="no openEO process definitions"):
        validate_graph(_graph(), definitions=ROOT / "docs")


def _readme_openeo_blocks():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("### openEO"):]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    shown = re.search(r"```json\n(.*?)```", section, re.S).group(1)
    return code, json.loads(shown)


def test_the_readmes_snippet_runs_and_prints_the_graph_the_readme_shows():
    code, shown = _readme_openeo_blocks()
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, "README.md", "exec"), {})
    assert json.loads(out.getvalue()) == shown
    context = shown["process_graph"]["applyneighborhood1"]["arguments"]["process"]["process_graph"]["runudf1"][
        "arguments"]["context"]
    assert context["overlap"] == 16                                    # the docs' overlap is the builder's


@needs_definitions
def test_the_statistics_graph_needs_no_thresholds_and_is_valid():
    graph = _graph(stage="statistics", thresholds=None)
    validate_graph(graph, definitions=DEFINITIONS)
    context = graph["process_graph"]["applyneighborhood1"]["arguments"]["process"]["process_graph"]["runudf1"][
        "arguments"]["context"]
    assert context["stage"] == "statistics" and "thresholds" not in context
    with pytest.raises(InputError, match="needs thresholds"):
        _graph(thresholds=None)
