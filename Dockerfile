# syntax=docker/dockerfile:1
# insarcast in a container. It is installed by scripts/install.sh, the one install path that CI and a
# fresh machine use, so the image and CI cannot drift. The entry point is `insarcast`; the working
# folder is /data (mount your data there). README, "Container", says how to build and run it.
#
#   docker build -t insarcast .                                      CPU, full: train,udf,stac,report,openeo
#   docker build --target inference -t insarcast:inference .         CPU, inference only: no torch
#   docker build --build-arg VARIANT=gpu -t insarcast:gpu .          CUDA torch and onnxruntime-gpu
#   docker build --build-arg VARIANT=gpu --target inference -t insarcast:gpu-inference .
#
# Build arguments:
#   VARIANT           cpu (default) or gpu; gpu adds the `gpu` extra (onnxruntime-gpu instead of onnxruntime)
#                     and the `cuda-libs` extra (the CUDA runtime and cuDNN as pip wheels: the slim base image
#                     has neither), and takes torch from TORCH_INDEX, or from PyPI (a CUDA build) when empty
#   EXTRAS            extras of the full image (default train,udf,stac,report,openeo)
#   INFERENCE_EXTRAS  extras of the inference image (default udf,stac,openeo; torch-free, checked below)
#   TORCH_INDEX       index of the torch wheel (default for cpu: the PyTorch CPU index, so that a plain
#                     `torch` pin does not pull a multi-GB CUDA build)
#   TORCH_VERSION     torch version (default: the pin of scripts/install.sh)
#   CHECK_GPU         1 (default): the gpu variant's build creates an ONNX Runtime session and fails unless
#                     it runs on CUDA (python -m insarcast.udf.probe; onnxruntime-gpu *lists* CUDA even where
#                     it cannot start it). That needs a builder with a visible GPU and the CUDA and cuDNN
#                     libraries; elsewhere build with CHECK_GPU=0 and run the same probe in the container:
#                     docker run --gpus all --entrypoint python IMAGE -m insarcast.udf.probe CUDAExecutionProvider

FROM python:3.11-slim-bookworm AS base
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    INSARCAST_VENV=/opt/insarcast
# The install is editable (scripts/install.sh runs `pip install -e`): the source stays at this path.
WORKDIR /usr/src/insarcast

FROM base AS source
COPY . .

# The full image: training, export, inference, STAC, report, openEO.
FROM source AS build
ARG VARIANT=cpu
ARG EXTRAS=train,udf,stac,report,openeo
ARG TORCH_INDEX=""
ARG TORCH_VERSION=""
ARG CHECK_GPU=1
RUN case "$VARIANT" in \
      cpu) index="${TORCH_INDEX:-https://download.pytorch.org/whl/cpu}"; extras="$EXTRAS" ;; \
      gpu) index="$TORCH_INDEX"; extras="$EXTRAS,gpu,cuda-libs" ;; \
      *) echo "VARIANT must be cpu or gpu, not '$VARIANT'" >&2; exit 2 ;; \
    esac \
 && INSARCAST_TORCH_INDEX="$index" INSARCAST_TORCH="$TORCH_VERSION" bash scripts/install.sh "$extras" \
 && "$INSARCAST_VENV/bin/python" -m compileall -q /usr/src/insarcast \
 && "$INSARCAST_VENV/bin/insarcast" --version \
 && if [ "$VARIANT" = gpu ]; then \
      [ "$CHECK_GPU" = 0 ] || "$INSARCAST_VENV/bin/python" -m insarcast.udf.probe CUDAExecutionProvider; \
    fi

# The inference image: the ONNX ensemble on xarray / Dask / openEO, STAC publishing; no torch.
FROM source AS build-inference
ARG VARIANT=cpu
ARG INFERENCE_EXTRAS=udf,stac,openeo
ARG CHECK_GPU=1
RUN case "$VARIANT" in \
      cpu) extras="$INFERENCE_EXTRAS" ;; \
      gpu) extras="$INFERENCE_EXTRAS,gpu,cuda-libs" ;; \
      *) echo "VARIANT must be cpu or gpu, not '$VARIANT'" >&2; exit 2 ;; \
    esac \
 && case ",$extras," in *,train,*) echo "the inference image holds no torch: drop train from INFERENCE_EXTRAS" >&2; exit 2 ;; esac \
 && bash scripts/install.sh "$extras" \
 && "$INSARCAST_VENV/bin/python" -m compileall -q /usr/src/insarcast \
 && "$INSARCAST_VENV/bin/insarcast" --version \
 && "$INSARCAST_VENV/bin/python" -c "import importlib.util, sys; import insarcast.udf.ensemble; sys.exit(importlib.util.find_spec('torch') is not None)" \
 && if [ "$VARIANT" = gpu ]; then \
      [ "$CHECK_GPU" = 0 ] || "$INSARCAST_VENV/bin/python" -m insarcast.udf.probe CUDAExecutionProvider; \
    fi

# What both images share: a non-root user, the venv on PATH, /data as the working folder.
FROM base AS runtime
ARG VARIANT=cpu
LABEL org.opencontainers.image.title="insarcast" \
      org.opencontainers.image.description="Forecast InSAR ground deformation (EGMS L3); susceptibility and uncertainty maps" \
      org.opencontainers.image.licenses="MIT" \
      org.opencontainers.image.source="https://github.com/insarcast/insarcast" \
      io.insarcast.variant="${VARIANT}"
RUN groupadd --gid 1000 insarcast \
 && useradd --uid 1000 --gid insarcast --create-home --shell /usr/sbin/nologin insarcast \
 && install -d -o insarcast -g insarcast /data
# Matplotlib and Dask need a writable place whatever uid `docker run --user` gives.
ENV PATH=/opt/insarcast/bin:$PATH \
    MPLCONFIGDIR=/tmp/matplotlib
WORKDIR /data
USER 1000:1000
ENTRYPOINT ["insarcast"]
CMD ["--help"]

FROM runtime AS inference
COPY --from=build-inference /usr/src/insarcast /usr/src/insarcast
COPY --from=build-inference /opt/insarcast /opt/insarcast

# The default target (last): the full image.
FROM runtime AS full
COPY --from=build /usr/src/insarcast /usr/src/insarcast
COPY --from=build /opt/insarcast /opt/insarcast
