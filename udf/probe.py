"""Which ONNX Runtime execution provider a session really gets here.

onnxruntime-gpu lists ``CUDAExecutionProvider`` among the *available* providers on any machine, with
or without a GPU, CUDA or cuDNN; a session asked for CUDA that cannot start it falls back to the CPU
with a log line only. The one honest test is to create a session and read ``get_providers()``:
:func:`session_providers` does that on an 80-byte one-node model (embedded below, so nothing but
onnxruntime is needed), and :func:`require_provider` fails when the wanted provider is not among them.

    python -m insarcast.udf.probe CUDAExecutionProvider     exit 0 on CUDA, else 2 with one line

(the GPU image runs this at build time, see the Dockerfile).
"""

from __future__ import annotations

import base64
import sys
from typing import Sequence

from insarcast.errors import InputError

# Identity(x: float[1]) -> y, opset 13, IR version 8 (onnx.helper.make_model; onnxruntime >= 1.18 reads it).
PROBE_MODEL = base64.b64decode(
    "CAgSCWluc2FyY2FzdDo7ChAKAXgSAXkiCElkZW50aXR5EgVwcm9iZVoPCgF4EgoKCAgBEgQKAggBYg8KAXkSCgoICAESBAoCCAFCBAoAEA0=")


def session_providers(providers: Sequence[str]) -> list[str]:
    """The providers a session asked for ``providers`` runs on (``session.get_providers()``)."""
    from insarcast.udf.ensemble import _ort, preload_cuda

    ort = _ort()
    if "CUDAExecutionProvider" in providers:
        preload_cuda(ort)
    options = ort.SessionOptions()
    options.log_severity_level = 4                    # the fallback's own error lines: the caller reports
    session = ort.InferenceSession(PROBE_MODEL, sess_options=options, providers=list(providers))
    return list(session.get_providers())


def require_provider(name: str) -> list[str]:
    """Create a session asking for ``name`` (then the CPU) and fail unless it runs on ``name``."""
    active = session_providers([name, "CPUExecutionProvider"] if name != "CPUExecutionProvider" else [name])
    if name not in active:
        raise InputError(f"{name} was asked for but an ONNX Runtime session could not start it (runs on "
                         f"{active}); for CUDA: a visible NVIDIA GPU, and the CUDA and cuDNN libraries "
                         "onnxruntime-gpu was built for", field="providers")
    return active


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    name = args[0] if args else "CUDAExecutionProvider"
    try:
        active = require_provider(name)
    except InputError as err:
        print(f"insarcast: {err}", file=sys.stderr)
        return 2
    print(" ".join(active))
    return 0


if __name__ == "__main__":
    sys.exit(main())
