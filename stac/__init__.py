"""Publishing products as Cloud-Optimised GeoTIFFs and STAC (pystac, rioxarray)."""
