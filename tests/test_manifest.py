"""The ensemble manifest's one typed model (insarcast.udf.manifest): read, checked and written once,
the same for forecast (udf) and publish (stac). Members are dummy bytes: nothing here runs ONNX."""

from __future__ import annotations

import json

import pytest

from conftest import edit_manifest, ensemble_manifest, write_ensemble
from insarcast.errors import InputError
from insarcast.udf.manifest import Manifest, member_files, read_manifest, write_manifest

T, F, P = 6, 3, 8
NORM = {"input_mean": 0.5, "input_std": 4.0, "target_mean": -1.0, "target_std": 3.0}
MEMBERS = [b"member zero", b"member one", b"member two"]


def _write(folder, **fields):
    return write_ensemble(folder, MEMBERS, history=T, horizon=F, patch=P, norm=NORM, **fields)


def test_the_model_types_every_field_and_reads_as_the_json(tmp_path):
    folder = _write(tmp_path / "e")
    manifest = read_manifest(folder)
    assert (manifest.history, manifest.horizon, manifest.patch, manifest.channels) == (T, F, P, 2)
    assert manifest.inputs == "paper" and manifest.channel_names == ("displacement_relative_to_last", "valid")
    assert manifest.normalisation == NORM and manifest.grid_spacing == 100.0 and manifest.grid_crs == "EPSG:3035"
    assert manifest.input.shape == (-1, T, 2, P, P) and manifest.output.name == "forecast"
    assert [m.file for m in manifest.members] == ["member_00.onnx", "member_01.onnx", "member_02.onnx"]
    assert manifest.members[1].model == {"history": T, "horizon": F, "patch": P, "channels": 2}
    assert manifest.folder == folder and manifest.path == folder / "ensemble.json"
    on_disk = json.loads((folder / "ensemble.json").read_text())
    assert manifest.to_dict() == on_disk and dict(manifest) == on_disk      # a read-only view of the JSON
    assert manifest["grid"] == {"spacing": 100.0, "crs": "EPSG:3035"} and manifest.get("absent") is None
    assert [f.data for f in member_files(manifest)] == MEMBERS


def test_written_whole_and_read_back_the_same(tmp_path):
    folder = _write(tmp_path / "e")
    manifest = read_manifest(folder)
    out = tmp_path / "copy"
    out.mkdir()
    assert write_manifest(manifest, out) == out / "ensemble.json"
    assert [p.name for p in out.iterdir()] == ["ensemble.json"]            # no temporary left beside it
    assert (out / "ensemble.json").read_text() == json.dumps(manifest.to_dict(), indent=2) + "\n"
    assert read_manifest(out).to_dict() == manifest.to_dict()


def test_an_old_manifest_without_inputs_target_or_optional_member_fields_is_the_papers(tmp_path):
    folder = _write(tmp_path / "old", inputs=None)
    assert "inputs" not in json.loads((folder / "ensemble.json").read_text())
    manifest = read_manifest(folder)
    assert manifest.inputs == "paper" and manifest.target is None
    assert manifest.members[0].parameters is None and manifest.members[0].source is None


def _dup(m):
    m["members"][2]["file"] = m["members"][0]["file"]


@pytest.mark.parametrize("change, field, message", [
    (lambda m: m.update(format_version=2), "format_version", "unsupported format_version 2; this insarcast reads "
                                                              "version 1"),
    (lambda m: m.update(format="other"), "format", "not an insarcast ensemble"),
    (lambda m: m.pop("epoch_days"), "epoch_days", "missing the key 'epoch_days'"),
    (lambda m: m["grid"].update(spacing="100"), "grid.spacing", "'grid.spacing' must be a number or null"),
    (lambda m: m.update(inputs="future"), "inputs", "a newer insarcast wrote this ensemble"),
    (lambda m: m["normalisation"].update(input_std=-1.0), "normalisation.input_std", "must be > 0"),
    (lambda m: m["members"][1].pop("sha256"), "members[1].sha256", "missing the key 'members[1].sha256'"),
    (lambda m: m["members"][1].update(trial="7"), "members[1].trial", "must be an int or null"),
    (_dup, "members[2].file", "listed twice"),
    (lambda m: m["members"][0]["hyperparameters"]["model"].update(patch=P * 2),
     "members[0].hyperparameters.model.patch", "all members must share T, F, P and C"),
    (lambda m: m["output"].update(shape=[-1, F + 1, P, P]), "output.shape", "give [-1, 3, 8, 8]"),
    (lambda m: m.update(members=[]), "members", "no member"),
    # Python's json reads NaN and Infinity: a hand-edited manifest crashed publish or named an internal path
    (lambda m: m["members"][0].update(val_loss=float("nan")), "members[0].val_loss", "must be a finite number"),
    (lambda m: m.update(epoch_days=0), "epoch_days", "must be a finite number > 0 and <= 366, got 0.0"),
    (lambda m: m.update(epoch_days=1e308), "epoch_days", "must be a finite number > 0 and <= 366"),
    (lambda m: m["grid"].update(spacing=0), "grid.spacing", "must be a finite number > 0, got 0.0"),
    (lambda m: m["members"][1].update(parity_max_abs=-1.0), "members[1].parity_max_abs", "finite number >= 0"),
    (lambda m: m["members"][0].update(parameters=-5), "members[0].parameters", "a count >= 0, got -5"),
    # read but not checked before: a CRS pyproj does not know crashed the forecast's CRS comparison with
    # pyproj's traceback; a created that is no date gave the STAC Items the publishing time, silently
    (lambda m: m["grid"].update(crs="EPSG:99999"), "grid.crs", "must be a CRS that pyproj reads, such as "
                                                               "'EPSG:3035', got 'EPSG:99999'"),
    (lambda m: m["grid"].update(crs=""), "grid.crs", "must be a CRS that pyproj reads"),
    (lambda m: m["grid"].update(crs=3035), "grid.crs", "'grid.crs' must be a str or null, got int 3035"),
    (lambda m: m.update(created="next tuesday"), "created", "must be an ISO 8601 date and time such as "
                                                            "'2026-01-01T00:00:00Z', got 'next tuesday'"),
    (lambda m: m.update(created="2026-01-01"), "created", "must be an ISO 8601 date and time"),
    (lambda m: m.update(created="2026-02-30T00:00:00Z"), "created", "must be an ISO 8601 date and time"),
    (lambda m: m.update(created=20260101), "created", "'created' must be a str, got int 20260101"),
    (lambda m: m.update(architecture=" "), "architecture", "architecture must be a non-empty name, got ' '"),
    (lambda m: m["members"][0].update(arch=""), "members[0].arch", "members[0].arch must be a non-empty name"),
    (lambda m: m.update(name=""), "name", "name must be a non-empty name"),
    (lambda m: m.update(opset=0), "opset", "opset must be a positive integer, got 0"),
    (lambda m: m["members"][1].update(bytes=-1), "members[1].bytes", "must be an integer >= 0, got -1"),
    (lambda m: m["members"][2].update(trial=-2), "members[2].trial", "must be an integer >= 0, got -2"),
])
def test_a_bad_manifest_is_refused_naming_the_file_and_the_field(tmp_path, change, field, message):
    folder = _write(tmp_path / "e", edit=change)
    with pytest.raises(InputError) as err:
        read_manifest(folder)
    assert err.value.field == field and message in err.value.message
    assert err.value.path == str(folder / "ensemble.json")
    assert str(err.value).startswith(f"{folder / 'ensemble.json'}, field '{field}': ")


@pytest.mark.parametrize("crs", [None, "EPSG:3035", "epsg:3035",
                                 "+proj=laea +lat_0=52 +lon_0=10 +x_0=4321000 +y_0=3210000 +ellps=GRS80 +units=m"])
@pytest.mark.parametrize("created", ["2026-01-01T00:00:00Z", "2026-01-01T02:00:00+02:00", "2026-01-01T00:00:00",
                                     "20260101T000000Z"])
def test_every_iso_datetime_and_crs_that_pyproj_reads_is_accepted(tmp_path, crs, created):
    folder = _write(tmp_path / "e", crs=crs, created=created)
    manifest = read_manifest(folder)
    assert manifest.grid_crs == crs and manifest.created == created          # kept as written


def test_not_json_or_missing_is_refused_naming_the_file(tmp_path):
    with pytest.raises(InputError, match="ensemble.json not found"):
        read_manifest(tmp_path)
    (tmp_path / "ensemble.json").write_text("{")
    with pytest.raises(InputError, match="not valid JSON") as err:
        read_manifest(tmp_path / "ensemble.json")
    assert err.value.path == str(tmp_path / "ensemble.json")
    with pytest.raises(InputError, match="must be a JSON object, got list"):
        Manifest.from_dict([], path=tmp_path / "ensemble.json")


def test_a_changed_member_file_is_refused_naming_the_member(tmp_path):
    folder = _write(tmp_path / "e")
    (folder / "member_01.onnx").write_bytes(b"changed")
    with pytest.raises(InputError, match="member member_01.onnx fails its checksum") as err:
        member_files(read_manifest(folder))
    assert err.value.field == "members[1].sha256"


@pytest.mark.parametrize("change", [
    lambda m: m.update(format_version=0),
    lambda m: m["members"][0].update(file="../escape.onnx"),
    lambda m: m.update(channel_names=["a", "b"]),
    lambda m: m["input"].update(dims=["n", "t", "c", "y", "x"]),
])
def test_publish_and_forecast_refuse_a_manifest_alike(tmp_path, change):
    """One model, one check: the STAC reader and the UDF loader give the same refusal."""
    pytest.importorskip("onnxruntime")
    from insarcast.stac.ensemble import read_ensemble
    from insarcast.udf.ensemble import load_ensemble

    folder = _write(tmp_path / "e")
    edit_manifest(folder, change)
    with pytest.raises(InputError) as forecast_err:
        load_ensemble(folder)
    with pytest.raises(InputError) as publish_err:
        read_ensemble(folder)
    assert str(publish_err.value) == str(forecast_err.value) and publish_err.value.field == forecast_err.value.field


def test_the_factory_makes_what_the_model_accepts():
    manifest = ensemble_manifest([("m.onnx", b"x")], history=T, horizon=F, patch=P, norm=NORM)
    assert Manifest.from_dict(manifest).to_dict() == manifest
