"""The STAC version and extension schema URIs this package writes (one place to change them).

Every JSON of a published catalog declares the extensions it uses in ``stac_extensions``; the
validator (:mod:`insarcast.stac.validate`) maps each URI to a file of an offline schema folder.
"""

from __future__ import annotations

PROJECTION = "https://stac-extensions.github.io/projection/v2.0.0/schema.json"
RASTER = "https://stac-extensions.github.io/raster/v2.0.0/schema.json"   # STAC 1.1: bands in the core
FILE = "https://stac-extensions.github.io/file/v2.1.0/schema.json"
CLASSIFICATION = "https://stac-extensions.github.io/classification/v2.0.0/schema.json"
PROCESSING = "https://stac-extensions.github.io/processing/v1.2.0/schema.json"
FORECAST = "https://stac-extensions.github.io/forecast/v0.2.0/schema.json"
MLM = "https://stac-extensions.github.io/mlm/v1.5.2/schema.json"

#: Core schemas by STAC object type (``{version}``: the object's own ``stac_version``).
CORE_SCHEMAS = {
    "Feature": "https://schemas.stacspec.org/v{version}/item-spec/json-schema/item.json",
    "Catalog": "https://schemas.stacspec.org/v{version}/catalog-spec/json-schema/catalog.json",
    "Collection": "https://schemas.stacspec.org/v{version}/collection-spec/json-schema/collection.json",
}

COG_MEDIA_TYPE = "image/tiff; application=geotiff; profile=cloud-optimized"
#: "application/octet-stream; framework=pytorch" is the MLM README's (Model Artifact Media-Type) form
ONNX_MEDIA_TYPE = "application/octet-stream; framework=onnx"
JSON_MEDIA_TYPE = "application/json"
