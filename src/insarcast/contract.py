"""The shared contract: names and codes every package agrees on, in one torch-free module.

Everything here is data (no imports beyond the standard library), so the foundation, the UDF,
the trainer, the exporter, STAC and the report can all import it without pulling in anything
heavier. Change a value here and every package follows; nothing else should spell these out.
"""

from __future__ import annotations

#: Spatial encoders and temporal models; an architecture is ``"{encoder}-{temporal}"``.
ENCODERS: tuple[str, ...] = ("cnn", "resnet", "gcn")
TEMPORAL: tuple[str, ...] = ("lstm", "transformer")
#: The six architectures of the paper, in the order the tables and figures list them.
ARCHS: tuple[str, ...] = ("cnn-lstm", "cnn-transformer", "gcn-lstm", "gcn-transformer",
                          "resnet-lstm", "resnet-transformer")
#: The paper's chosen architecture: its ensemble, and the manual-versus-TPE maps of the report (Figure 10).
PAPER_ARCH = "resnet-transformer"
#: The architecture the demo, ``insarcast train`` and ``insarcast export`` use by default: the paper's.
DEFAULT_ARCH = PAPER_ARCH
#: Short labels of the architectures (tables, forest plot).
ABBREVIATIONS: dict[str, str] = {a: "".join(part[0].upper() for part in a.split("-")) for a in ARCHS}

#: The paper's model input channels (per epoch of a window): the displacement relative to the
#: window's last epoch and the validity mask. Ensembles without an ``inputs`` key use these.
PAPER_CHANNELS: tuple[str, ...] = ("displacement_relative_to_last", "valid")

#: The temporal split of the epochs into training, validation and test (fractions, in time order).
SPLIT: tuple[float, float, float] = (0.8, 0.1, 0.1)
#: The test period's first epoch as a share of the epochs (index ``round(TEST_START * n_epochs)``).
TEST_START: float = SPLIT[0] + SPLIT[1]

#: Susceptibility classes: the code of a class is its index.
CLASS_NAMES: tuple[str, ...] = ("low", "medium", "high", "highest")
#: Susceptibility and uncertainty levels of the bivariate product (code ``3 * s + u``).
LEVEL_NAMES: tuple[str, ...] = ("low", "medium", "high")
#: The nodata code of the uint8 class rasters (``class``, ``bivariate``).
NODATA = 255

#: The ensemble manifest written by ``insarcast export`` and read by the UDF, STAC and report.
MANIFEST_NAME = "ensemble.json"
MANIFEST_FORMAT = "insarcast-ensemble"
MANIFEST_VERSION = 1
#: The ONNX members' one input and one output: names and dimensions (``-1``, the batch, is dynamic).
MODEL_INPUT = "history"
MODEL_OUTPUT = "forecast"
MODEL_INPUT_DIMS: tuple[str, ...] = ("batch", "time", "channel", "y", "x")
MODEL_OUTPUT_DIMS: tuple[str, ...] = ("batch", "horizon", "y", "x")
