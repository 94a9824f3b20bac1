#!/usr/bin/env bash
# Prove the lower bounds of pyproject's direct dependencies: install the lowest version each bound
# allows (uv's --resolution lowest-direct; transitive dependencies at their newest) into a separate
# venv and run a representative subset of the tests there.
#   bash scripts/lowest_deps.sh            venv: $INSARCAST_LOWEST_VENV (default .venv-lowest)
#   PYTHON                                 interpreter of that venv (default python3; the floor is 3.11)
#   INSARCAST_LOWEST_EXTRAS                extras resolved at their lowest (default udf,stac,report)
# The train extra is left out: the lowest torch it allows is a multi-GB CUDA build on PyPI, and the
# project pins the CPU wheel torch==2.13.0 (scripts/install.sh). What the subset covers: ingest,
# gridding (Zarr v2 through zarr 3), the synthetic scenario, the ONNX ensemble and its products on
# numpy and Dask, STAC publishing and validation, the CLI. CI runs it with the slow tests
# (tests/test_lowest_deps.py, which also checks that every core dependency ran at its floor); about 3 minutes.
# uv is taken from the project's venv, else from PATH, else installed into the project's venv.
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${INSARCAST_LOWEST_VENV:-.venv-lowest}"
extras="${INSARCAST_LOWEST_EXTRAS:-udf,stac,report}"
python="${PYTHON:-python3}"
if [ -x .venv/bin/uv ]; then uv=.venv/bin/uv
elif command -v uv >/dev/null; then uv="$(command -v uv)"
else .venv/bin/python -m pip install --quiet 'uv>=0.4' && uv=.venv/bin/uv
fi
rm -rf "$venv"
"$uv" venv --quiet --python "$python" "$venv"
# onnx builds the tests' small ONNX models (the train extra's bound); pytest is the dev extra's.
# google-crc32c: zarr < 3.1 asks for numcodecs[crc32c], whose newest numcodecs (>= 0.16.4) then warns
# on stderr at import that crc32c is deprecated (what zarr >= 3.1 installs, google-crc32c, it prefers).
VIRTUAL_ENV="$venv" "$uv" pip install --quiet --resolution lowest-direct -e ".[$extras]" 'onnx>=1.16' \
  'pytest>=8' 'google-crc32c>=1.7'
VIRTUAL_ENV="$venv" "$uv" pip freeze | grep -iE '^(numpy|scipy|pandas|pyarrow|xarray|zarr|dask|distributed|rioxarray|pyproj|click|tqdm|onnx|onnxruntime|pystac|rio-cogeo|jsonschema|matplotlib)=='
# openEO and odc-stac are other extras (openeo, dev): their tests (and the shipped-UDF one, run by
# openEO's runner) are left out here.
"$venv/bin/python" -m pytest -q -p no:cacheprovider -k "not openeo and not odc_stac and not shipped_folder" \
  tests/test_egms.py tests/test_grid.py tests/test_synth.py tests/test_udf_products.py \
  tests/test_udf_ensemble_forecast.py tests/test_stac.py tests/test_cli.py
