"""The ensemble as the Machine Learning Model extension (MLM 1.5.2) intends: one Item per member.

MLM describes one model per Item: "Typically, there will be only one asset containing the
``mlm:model`` role. However, multiple Assets employing the ``mlm:model`` role are permitted to
provide alternate interfaces of the same model" (MLM README, Assets Objects). The K members of an
ensemble are K different models (own weights, hyperparameters, parameter count), so each gets its own
Item, and the ensemble is the STAC Collection that groups them, as the spec's own example groups its
model Items in a Collection with ``item_assets`` (examples/collection.json). Layout, below the models
Collection::

    <ensemble>/collection.json                 the ensemble Collection: MLM summaries (framework,
                                               architecture, tasks, parameter range, ...), item_assets
                                               of the model asset, the manifest as a ``metadata`` asset
    <ensemble>/<id>/<id>.json                  one member Item (id ``<ensemble>-member_XX``): one
                                               ``mlm:model`` asset
    <ensemble>/member_XX.onnx, ensemble.json   copies of the ensemble's files

A member Item has null geometry (the manifest does not say where the members were trained), is dated
at the manifest's ``created``, and carries ``mlm:name`` (``<ensemble> member_XX``), its own
``mlm:architecture``, ``mlm:total_parameters`` (the member's count, recorded by ``insarcast export``)
and ``mlm:hyperparameters`` (the shared T, F, P, C, grid and epoch spacing, and the member's own trial
hyperparameters), ``mlm:input`` (``history``: batch x T x C x P x P, the input channels as STAC 1.1
``bands`` with the ``value_scaling`` of each: the manifest's normalisation statistics, by
:func:`insarcast.udf.inputs.channel_scaling`), ``mlm:output`` (``forecast``: batch x F x P x P) and
the member's trial, seed, strategy and validation loss as ``insarcast:*`` fields. Channel names,
statistics and members all come from the manifest model (:class:`insarcast.udf.manifest.Manifest`).
Forecast Items link (``derived_from``) to the ensemble Collection and to every member Item
(:func:`model_links`).
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


def member_id(ensemble: Ensemble, member) -> str:
    """A member Item's id: ``<model_id>-<member key>`` (``tiny-ensemble-member_00``)."""
    return f"{model_id(ensemble)}-{member.key}"


def _value_scaling(m) -> list[dict]:
    """One MLM Value Scaling Object per input channel, in channel order, from the manifest's statistics.

    "When ``value_scaling`` is specified, the amount of objects defined in the array must match the size
    of the bands/channels/dimensions described by the Model Input" (MLM README, Value Scaling Object).
    A channel used as built (the validity flag, the day of year) is the identity ``scale`` by 1: the
    README's ``type: null`` for such a channel is refused by the 1.5.2 JSON schema (its
    ``ValueScalingObject`` has no null branch), and ``data / 1`` says the same thing validly.
    """
    from insarcast.udf.inputs import channel_scaling

    out = []
    for _name, kind, params in channel_scaling(m.inputs, m.normalisation):
        out.append({"type": kind, **params} if kind else {"type": "scale", "value": 1})
    return out


def _input(m) -> dict:
    T, P, C = m.history, m.patch, m.channels
    channels = list(m.channel_names)
    return {
        "name": m.input.name,
        "description": (f"the last T = {T} epochs of P x P = {P} x {P} cells, channels {channels}; "
                        "displacement relative to the last epoch; each channel scaled by its value_scaling "
                        "(the training statistics)"
                        + ("" if m.inputs == "paper" else
                           "; the other channels are the baselines' fits of every epoch up to the last "
                           "(insarcast.udf.inputs, residual inputs)")),
        "bands": channels,
        "input": {"shape": list(m.input.shape), "dim_order": list(INPUT_DIMS), "data_type": m.input.dtype},
        "value_scaling": _value_scaling(m),
        "resize_type": None,
        # builds the channels from the displacement series and applies the value_scaling above
        "pre_processing_function": {"format": "python", "expression": "insarcast.udf.inputs:model_inputs",
                                    "description": "the channels from the displacement series, each scaled "
                                                   "by its value_scaling; 0 where the pixel is not valid"},
    }


def _output(m) -> dict:
    F, P = m.horizon, m.patch
    return {
        "name": m.output.name,
        "description": (f"the change since the last observed epoch at the F = {F} next epochs, normalised; "
                        f"mm after denormalisation with the target statistics"
                        if m.inputs == "paper" else
                        f"the correction to the adaptive baseline's forecast at the F = {F} next epochs, "
                        "normalised; the forecast in mm is the denormalised output plus that baseline's "
                        "change (insarcast.udf.inputs.ModelInputs.reference)"
                        + ("" if m.reference_correction is None else
                           f" and the shipped synthetic-truth correction {m.reference_correction['file']} "
                           f"(sha256 {m.reference_correction['sha256']}, insarcast.udf.correction)")),
        "tasks": ["regression"],
        "result": {"shape": list(m.output.shape), "dim_order": list(OUTPUT_DIMS), "data_type": m.output.dtype},
        "post_processing_function": {"format": "python", "expression": "insarcast.udf.inputs:denormalise",
                                     "description": (f"output * target_std + target_mean = output * "
                                                     f"{m.normalisation['target_std']:g} + "
                                                     f"{m.normalisation['target_mean']:g}")},
    }


def _framework(m) -> dict:
    out = {"mlm:framework": _FRAMEWORKS.get(str(m["framework"]).lower(), str(m["framework"]))}
    version = str(m.get("framework_version", ""))
    if _SEMVER.match(version):
        out["mlm:framework_version"] = version
    return out


def _shared_hyperparameters(m) -> dict:
    hyper = {"history": m.history, "horizon": m.horizon, "patch": m.patch, "channels": m.channels,
             "inputs": m.inputs, "epoch_days": m.epoch_days, "grid_spacing": m.grid_spacing, "grid_crs": m.grid_crs,
             "opset": m.opset, **m.normalisation}
    return {k: v for k, v in hyper.items() if v is not None}


def mlm_fields(ensemble: Ensemble, member) -> dict:
    """The MLM Item properties of one member (and the STAC ``bands`` its input names) from the manifest."""
    m, entry = ensemble.manifest, member.entry
    fields = {
        # "mlm:name ... This can include, but must be distinct, from simply naming the model architecture"
        "mlm:name": _mlm_name(f"{ensemble.name} {member.key}"),
        "mlm:architecture": entry.arch,
        "mlm:tasks": ["regression"],
        **_framework(m),
        "mlm:pretrained": False,
        "mlm:pretrained_source": None,
        "mlm:accelerator": None,           # "the model could make use of some accelerators if provided"
        "mlm:batch_size_suggestion": 64,
        "mlm:input": [_input(m)],
        "mlm:output": [_output(m)],
        # the member's own trial hyperparameters beside what every member shares
        "mlm:hyperparameters": {**_shared_hyperparameters(m), **entry.hyperparameters},
        "bands": [{"name": c} for c in m.channel_names],
    }
    if entry.parameters is not None:
        # "Total number of model parameters, including trainable and non-trainable parameters": this member's
        fields["mlm:total_parameters"] = int(entry.parameters)
    return fields


def _model_asset(ensemble: Ensemble, member, target: Path, href: str, bands: list[dict]) -> dict:
    return {
        "href": href,
        # "the unofficial application/octet-stream; framework=pytorch definition is appropriate to represent
        # a PyTorch .pt file" (MLM README, Model Artifact Media-Type): the same for an ONNX file
        "type": ext.ONNX_MEDIA_TYPE,
        "title": f"Ensemble {ensemble.name}, member {member.key} (ONNX)",
        # "the mlm:model MUST be applied as well"; ["mlm:model", "model", "data"] "could be considered"
        "roles": ["mlm:model", "model", "data"],
        "mlm:artifact_type": "onnx",
        "bands": bands,
        **file_fields(target),
    }


def member_item(ensemble: Ensemble, member, *, folder: Path, created: datetime, versions: dict):
    """The MLM Item of one member (pystac); its ONNX file is already copied into ``folder``."""
    import pystac

    item_id = member_id(ensemble, member)
    rel = member.file.relative_to(ensemble.folder.resolve())
    fields = mlm_fields(ensemble, member)
    extra = {f"insarcast:{k}": v for k, v in member.entry.items() if k not in _MEMBER_SKIP}
    properties = {
        "title": f"Ensemble {ensemble.name}, member {member.key}",
        "description": (f"Member {member.entry.index + 1} of {len(ensemble.members)} of the ensemble "
                        f"{ensemble.name}: a {member.entry.arch} network exported to ONNX"
                        + (f" (opset {ensemble.manifest.opset})" if ensemble.manifest.opset else "")
                        + "; insarcast forecasts run every member and take the median and spread."),
        **fields,
        **extra,
        "insarcast:ensemble": ensemble.name,
        "processing:lineage": (f"Trained with TPE-optimised hyperparameters on EGMS-style displacement cubes; one "
                               f"of the best {len(ensemble.members)} members by validation loss exported to ONNX"),
        "processing:level": "L4",
    }
    if versions:
        properties["processing:software"] = versions
    item = pystac.Item(id=item_id, geometry=None, bbox=None, datetime=created, properties=properties,
                       stac_extensions=sorted([ext.MLM, ext.FILE, ext.PROCESSING]))
    # pystac's best-practices layout (what Collection.add_item gives): <collection folder>/<id>/<id>.json
    item.set_self_href(str(folder / item_id / f"{item_id}.json"))
    # "It is recommended that the Assets defined in a STAC Item using MLM extension use the above field
    # property names" (MLM README, Assets Objects): the model asset is "mlm:model"
    item.add_asset("mlm:model", pystac.Asset.from_dict(
        _model_asset(ensemble, member, folder / rel, "../" + rel.as_posix(), fields["bands"])))
    return item


def ensemble_collection(ensemble: Ensemble, *, folder: Path, fallback_datetime: datetime, license: str):
    """Copy the members and the manifest into ``folder`` and return the ensemble Collection (pystac)
    with one member Item per member (:func:`member_item`) added."""
    import pystac

    from .collection import PROVIDERS, refresh_models

    folder.mkdir(parents=True, exist_ok=True)
    for member in ensemble.members:
        target = folder / member.file.relative_to(ensemble.folder.resolve())
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(member.file, target)
    manifest = folder / ensemble.manifest_path.name
    shutil.copyfile(ensemble.manifest_path, manifest)
    m = ensemble.manifest
    created = _created(ensemble, fallback_datetime)
    versions = {str(k): str(v) for k, v in (m.get("versions") or {}).items() if v is not None}
    items = [member_item(ensemble, member, folder=folder, created=created, versions=versions)
             for member in ensemble.members]

    # STAC summaries are "either a set of values, a range of values or a JSON Schema"; the MLM 1.5.2
    # schema checks every summary of a Collection as an object (its mlmCollectionFields), so sets are
    # written as JSON Schemas ({"enum": [...]}) and numbers as ranges, both objects.
    def values(key: str) -> list:
        found = []
        for item in items:
            value = item.properties.get(key)
            if value is not None and value not in found:
                found.append(value)
        return found

    summaries = {key: {"enum": found} for key in ("mlm:architecture", "mlm:tasks", "mlm:framework",
                                                  "mlm:framework_version") if (found := values(key))}
    for key in ("mlm:total_parameters", "insarcast:val_loss"):
        if found := values(key):
            summaries[key] = {"minimum": min(found), "maximum": max(found)}
    collection = pystac.Collection(
        id=model_id(ensemble), title=f"Ensemble {ensemble.name}",
        description=(f"{len(items)} {m.architecture} members exported to ONNX"
                     + (f" (opset {m.opset})" if m.opset else "")
                     + ", one MLM Item each; insarcast forecasts run them all with onnxruntime and take the "
                       "median and spread. The manifest (ensemble.json) lists the members and the "
                       "normalisation statistics."),
        extent=pystac.Extent(pystac.SpatialExtent([[-180.0, -90.0, 180.0, 90.0]]),
                             pystac.TemporalExtent([[created, created]])),
        license=license, keywords=["machine learning", "ONNX", "ensemble", "InSAR"],
        providers=[pystac.Provider.from_dict(p) for p in PROVIDERS],
        stac_extensions=sorted([ext.MLM, ext.FILE]), summaries=pystac.Summaries(summaries),
        extra_fields={
            # the spec's own model Collection describes its Items' model asset in item_assets
            # (examples/collection.json: "item_assets": {"weights": {"roles": ["mlm:model", ...]}})
            "item_assets": {"mlm:model": {"type": ext.ONNX_MEDIA_TYPE, "title": "ONNX member",
                                          "roles": ["mlm:model", "model", "data"], "mlm:artifact_type": "onnx"}}})
    collection.set_self_href(str(folder / "collection.json"))
    collection.add_asset("manifest", pystac.Asset.from_dict({
        "href": "./" + manifest.name, "type": ext.JSON_MEDIA_TYPE,
        "title": "Ensemble manifest (insarcast-ensemble): members, channels, normalisation statistics",
        "roles": ["metadata"], **file_fields(manifest)}))
    for item in items:
        collection.add_item(item)
    refresh_models(collection, items)
    return collection


def model_links(ensemble: Ensemble, folder: Path) -> list[dict]:
    """The ``derived_from`` links of a forecast Item: the ensemble Collection and every member Item
    (``path``, ``title`` and, for a member, its ``mlm:name``), ``folder`` being the ensemble's folder.

    "It is recommended that the link using derived_from referring to another STAC definition using the
    MLM extension specifies the mlm:name value" (MLM README, Relation Types)."""
    links = [{"path": folder / "collection.json", "title": f"Model: ensemble {ensemble.name}"}]
    for member in ensemble.members:
        item_id = member_id(ensemble, member)
        links.append({"path": folder / item_id / f"{item_id}.json",
                      "title": f"Model: ensemble {ensemble.name}, member {member.key}",
                      "mlm:name": _mlm_name(f"{ensemble.name} {member.key}")})
    return links
