"""Publishing products as Cloud-Optimised GeoTIFFs and STAC (pystac, rioxarray).

- :func:`insarcast.stac.publish.publish`: products.zarr + ensemble folder -> self-contained catalog
  (a new one, or a run added to an existing one; all or nothing);
- :func:`insarcast.stac.validate.validate_catalog`: offline JSON Schema validation against a local
  schema folder, asset existence, checksums and COG validity.

Modules: ``cog`` (COG writing and checks), ``items`` (forecast Items), ``model_item`` (the ensemble
Collection and its MLM member Items), ``collection`` (Collections, extents, summaries), ``grid`` (projection fields, footprint),
``products`` / ``ensemble`` (reading the inputs), ``files`` (multihash checksums), ``extensions``
(schema URIs).
"""
