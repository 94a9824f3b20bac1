"""The model Item of an ensemble, described with the Machine Learning Model extension (MLM 1.5.2).

One Item per ensemble, ``<ensemble name>`` in the models Collection, null geometry (the manifest
does not say where the members were trained), dated at the manifest's ``created``. Its assets are
copies of the ONNX members (role ``mlm:model``, ``mlm:artifact_type`` ``onnx``, with the member's
trial, validation loss, seed, strategy and hyperparameters as ``insarcast:*`` fields) and of the
manifest (role ``metadata``), each with ``file:checksum`` and ``file:size``. Item properties:
``mlm:name``, ``mlm:architecture``, ``mlm:tasks`` (regression), ``mlm:framework`` (ONNX) and its
version, ``mlm:input`` (``history``: batch x T x C x P x P, the input channels as STAC ``bands``),
``mlm:output`` (``forecast``: batch x F x P x P; the channels are STAC 1.1 ``bands`` of the Item and of
each model asset, as the 1.1.0 Item schema allows ``bands`` in the properties only when an asset
has them), ``mlm:hyperparameters`` (what all members
share: T, F, P, C, normalisation, grid and epoch spacing), and the processing extension's
lineage and software (the versions the ensemble was built with).
"""

from __future__ import annotations

import re
import shutil
from datetime import datetime, timezone
from pathlib import Path

from . import extensions as ext
from .ensemble import Ensemble
from .files import file_fields

_NAME = re.compile(r"^[a-zA-Z][a-zA-Z0-9_.\-\s]+[a-zA-Z0-9]$")
_SEMVER = re.compile(r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(?:-[0-9A-Za-z.-]+)?(?:\+[0-9A-Za-z.-]+)?$")
_FRAMEWORKS = {"onnx": "ONNX", "pytorch": "PyTorch", "torch": "PyTorch"}
INPUT_DIMS = ("batch", "time", "bands", "height", "width")
OUTPUT_DIMS = ("batch", "time", "height", "width")
_MEMBER_SKIP = {"file", "sha256", "bytes"}


def model_id(ensemble: Ensemble) -> str:
    """The model Item's id: the ensemble name with anything but letters, digits, ``._-`` as ``-``."""
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", ensemble.name).strip("-.")
    return slug or "ensemble"


def _mlm_name(name: str) -> str:
    if _NAME.match(name):
        return name
    cleaned = re.sub(r"[^a-zA-Z0-9_.\-\s]+", "-", name).strip(" -_.")
    return cleaned if _NAME.match(cleaned) else f"ensemble-{cleaned or 'model'}"


def _created(ensemble: Ensemble, fallback: datetime) -> datetime:
    text = ensemble.get("created")
    if isinstance(text, str):
        try:
            dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            return fallback
        return (dt if dt.tzinfo else dt.replace(tzinfo=timezone.utc)).astimezone(timezone.utc).replace(microsecond=0)
    return fallback


def _shape(spec: dict | None, default: list[int]) -> list[int]:
    shape = (spec or {}).get("shape")
    if isinstance(shape, list) and len(shape) == len(default) and all(isinstance(v, int) and v >= -1 for v in shape):
        return list(shape)
    return default


def mlm_fields(ensemble: Ensemble) -> dict:
    """The MLM Item properties (and STAC ``bands`` for the input channels) from the manifest."""
    m = ensemble.manifest
    T, F, P, C = (int(m[k]) for k in ("history", "horizon", "patch", "channels"))
    channels = [str(c) for c in (m.get("channel_names") or [f"channel_{i}" for i in range(C)])]
    norm = m.get("normalisation") or {}
    grid = m.get("grid") or {}
    framework = _FRAMEWORKS.get(str(m["framework"]).lower(), str(m["framework"]))
    inp, out = m.get("input") or {}, m.get("output") or {}
    fields = {
        "mlm:name": _mlm_name(ensemble.name),
        "mlm:architecture": str(m["architecture"]),
        "mlm:tasks": ["regression"],
        "mlm:framework": framework,
        "mlm:pretrained": False,
        "mlm:pretrained_source": None,
        "mlm:accelerator": "amd64",
        "mlm:accelerator_constrained": False,
        "mlm:batch_size_suggestion": 64,
        "mlm:input": [{
            "name": str(inp.get("name", "history")),
            "description": (f"the last T = {T} epochs of P x P = {P} x {P} cells, channels {channels}; "
                            "displacement relative to the last epoch, z-scored with the training statistics"
                            + ("" if m.get("inputs", "paper") == "paper" else
                               "; the other channels are the baselines' fits of every epoch up to the last "
                               "(insarcast.udf.inputs, residual inputs)")),
            "bands": channels,
            "input": {"shape": _shape(inp, [-1, T, C, P, P]), "dim_order": list(INPUT_DIMS),
                      "data_type": str(inp.get("dtype", "float32"))},
            "value_scaling": None,
            "resize_type": None,
            "pre_processing_function": {"format": "python", "expression": "insarcast.udf.inputs:model_inputs"},
        }],
        "mlm:output": [{
            "name": str(out.get("name", "forecast")),
            "description": (f"the change since the last observed epoch at the F = {F} next epochs, normalised; "
                            f"mm after denormalisation with the target statistics"
                            if m.get("inputs", "paper") == "paper" else
                            f"the correction to the adaptive baseline's forecast at the F = {F} next epochs, "
                            "normalised; the forecast in mm is the denormalised output plus that baseline's "
                            "change (insarcast.udf.inputs.ModelInputs.reference)"),
            "tasks": ["regression"],
            "result": {"shape": _shape(out, [-1, F, P, P]), "dim_order": list(OUTPUT_DIMS),
                       "data_type": str(out.get("dtype", "float32"))},
            "post_processing_function": {"format": "python", "expression": "insarcast.udf.inputs:denormalise"},
        }],
        "bands": [{"name": c} for c in channels],
    }
    version = str(m.get("framework_version", ""))
    if _SEMVER.match(version):
        fields["mlm:framework_version"] = version
    params = [mb.entry.get("parameters", mb.entry.get("total_parameters")) for mb in ensemble.members]
    if all(isinstance(p, int) and not isinstance(p, bool) for p in params):
        fields["mlm:total_parameters"] = int(sum(params))
    hyper = {"history": T, "horizon": F, "patch": P, "channels": C, "members": len(ensemble.members),
             "epoch_days": m.get("epoch_days"), "grid_spacing": grid.get("spacing"), "grid_crs": grid.get("crs"),
             "opset": m.get("opset"), **{k: norm.get(k) for k in ("input_mean", "input_std", "target_mean",
                                                                   "target_std")}}
    fields["mlm:hyperparameters"] = {k: v for k, v in hyper.items() if v is not None}
    return fields


def model_item(ensemble: Ensemble, *, folder: Path, fallback_datetime: datetime):
    """Copy the members and the manifest into ``folder`` and return the model Item (pystac)."""
    import pystac

    item_id = model_id(ensemble)
    folder.mkdir(parents=True, exist_ok=True)
    assets: dict[str, dict] = {}
    bands = mlm_fields(ensemble)["bands"]
    for member in ensemble.members:
        rel = member.file.relative_to(ensemble.folder.resolve())
        target = folder / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(member.file, target)
        extra = {f"insarcast:{k}": v for k, v in member.entry.items() if k not in _MEMBER_SKIP}
        assets[member.key] = {
            "href": "./" + rel.as_posix(),
            "type": ext.ONNX_MEDIA_TYPE,
            "title": f"Ensemble member {member.key}",
            "roles": ["mlm:model", "data"],
            "mlm:artifact_type": "onnx",
            "bands": bands,
            **file_fields(target),
            **extra,
        }
    manifest = folder / ensemble.manifest_path.name
    shutil.copyfile(ensemble.manifest_path, manifest)
    assets["manifest"] = {"href": "./" + manifest.name, "type": ext.JSON_MEDIA_TYPE,
                          "title": "Ensemble manifest (insarcast-ensemble)", "roles": ["metadata"],
                          **file_fields(manifest)}

    versions = {str(k): str(v) for k, v in (ensemble.get("versions") or {}).items() if v is not None}
    properties = {
        "title": f"Ensemble {ensemble.name}",
        "description": (f"{len(ensemble.members)} {ensemble.get('architecture')} members exported to ONNX"
                        + (f" (opset {ensemble.get('opset')})" if ensemble.get("opset") else "")
                        + "; insarcast forecasts run them with onnxruntime and take the median and spread."),
        **mlm_fields(ensemble),
        "processing:lineage": (f"Trained with TPE-optimised hyperparameters on EGMS-style displacement cubes; "
                               f"the best {len(ensemble.members)} members by validation loss exported to ONNX"),
        "processing:level": "L4",
    }
    if versions:
        properties["processing:software"] = versions
    item = pystac.Item(id=item_id, geometry=None, bbox=None,
                       datetime=_created(ensemble, fallback_datetime), properties=properties,
                       stac_extensions=sorted([ext.MLM, ext.FILE, ext.PROCESSING]))
    item.set_self_href(str(folder / f"{item_id}.json"))
    for key, asset in assets.items():
        item.add_asset(key, pystac.Asset.from_dict(asset))
    return item
