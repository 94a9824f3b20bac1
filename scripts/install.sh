#!/usr/bin/env bash
# The one install path for a fresh machine, CI and the container.
#   bash scripts/install.sh [EXTRAS]      default EXTRAS: train,udf,stac,report,openeo,dev
# Creates .venv (or uses $INSARCAST_VENV), installs the pinned CPU torch wheel when the
# `train` extra is asked for (a bare `torch` would pull a multi-GB CUDA build), then the package.
#   INSARCAST_TORCH        torch version (default 2.13.0)
#   INSARCAST_TORCH_INDEX  index to take torch from, e.g. https://download.pytorch.org/whl/cpu
#                          (default: none, pip's own configuration finds the wheel)
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-train,udf,stac,report,openeo,dev}"
venv="${INSARCAST_VENV:-.venv}"
python="${PYTHON:-python3}"
[ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --upgrade pip
# The torch index as the positional parameters ("$@" may be empty under set -u, even in bash 3).
set --
[ -z "${INSARCAST_TORCH_INDEX:-}" ] || set -- --index-url "$INSARCAST_TORCH_INDEX"
case ",$extras," in
  *,train,*) "$venv/bin/python" -m pip install --quiet "$@" "torch==${INSARCAST_TORCH:-2.13.0}" ;;
esac
# setuptools says at every editable install that folders named like the package (udf/, stac/, ...)
# may shadow it; insarcast maps them below insarcast.* on purpose (pyproject's package-dir): not shown.
PYTHONWARNINGS="ignore:Editable installation" "$venv/bin/python" -m pip install --quiet -e ".[$extras]"
# onnxruntime and onnxruntime-gpu install the same module: with the gpu extra, only the GPU build
# may stay (the udf and train extras bring the CPU one; cuda-libs brings the GPU one too).
case ",$extras," in
  *,gpu,*|*,cuda-libs,*) gpu_version="$("$venv/bin/python" -m pip show onnxruntime-gpu | sed -n 's/^Version: //p')"
           "$venv/bin/python" -m pip uninstall --quiet --yes onnxruntime
           "$venv/bin/python" -m pip install --quiet --force-reinstall --no-deps "onnxruntime-gpu==$gpu_version" ;;
esac
echo "insarcast installed in $venv with extras [$extras]"
