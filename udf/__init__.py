"""Inference on data cubes: the ONNX ensemble UDF (numpy, xarray, dask, onnxruntime; never torch)."""
