"""The six hybrid networks of the paper: a spatial encoder per epoch, a temporal model over the epochs.

Every model maps ``history`` (B, T, C, P, P) to ``forecast`` (B, F, P, P), both normalised (the ONNX
contract of docs/design.md). It reads top to bottom as the paper's section 3.2:

1. spatial encoder, applied to each of the T frames: CNN, ResNet or GCN, giving features
   H_t (D, P, P); for the GCN the nodes are the valid pixels of the patch, joined to the valid pixels
   within ``graph_radius`` cells (the adjacency is built once with scipy's cKDTree);
2. readout phi: the mean of H_t over the valid pixels, projected to a token z_t (d_model);
3. temporal model over z_1..z_T: LSTM (last hidden state) or Transformer (last token), the context c_T;
4. decoder to F frames of P x P: ``pooled`` is the paper's, a fully connected layer from c_T alone;
   ``skip`` also sees the last frame's features H_T and predicts pixel by pixel from [H_T, c_T]
   (for the GCN this is the paper's node-wise MLP on the latest node embeddings, and the projection
   back to the grid is the identity because the nodes are the cell centres).

Only ops that torch.onnx exports are used: the graph convolution is a depthwise convolution with a
fixed 0/1 kernel of the grid graph's edge offsets; the ``sparse`` (torch CSR) and ``pyg`` (torch-geometric GCNConv
message passing) back-ends compute the same layer for comparison (bench/train.py).
"""

from __future__ import annotations

import json
import math
import numbers
import warnings
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from scipy.spatial import cKDTree
from torch import nn

from insarcast.contract import ARCHS, ENCODERS, TEMPORAL  # noqa: F401  (re-exported)
from insarcast.errors import InputError
from insarcast.udf.inputs import INPUTS

READOUTS = ("pooled", "skip")
GRAPH_BACKENDS = ("grid", "sparse", "pyg")


def checked(value: Any, *, kind: type, expected: str, ok: Callable[[Any], bool], field: str) -> Any:
    """``value`` if it is a ``kind`` (int, float or str; never a bool) for which ``ok`` holds, else an
    :class:`InputError` naming ``field``: "expected ``expected``, got ...". An int is taken as a float."""
    if kind is float:
        right = isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)
    elif kind is int:
        right = isinstance(value, numbers.Integral) and not isinstance(value, bool)
    else:
        right = isinstance(value, kind)
    if not (right and ok(kind(value))):
        raise InputError(f"expected {expected}, got {value!r}", field=field)
    return kind(value)


def _positive_int(*, odd: bool = False) -> tuple[type, str, Callable[[Any], bool]]:
    if odd:
        return int, "a positive odd integer", lambda v: v >= 1 and v % 2 == 1
    return int, "a positive integer", lambda v: v >= 1


def _choice(options: tuple[str, ...] | dict[str, Any]) -> tuple[type, str, Callable[[Any], bool]]:
    return str, f"one of {', '.join(options)}", lambda v: v in options


# Each setting's type, what is expected of it and the check; the cross-field checks are in __post_init__.
MODEL_RULES: dict[str, tuple[type, str, Callable[[Any], bool]]] = {
    "arch": _choice(ARCHS),
    "inputs": _choice(INPUTS),
    "history": _positive_int(),
    "horizon": _positive_int(),
    "patch": _positive_int(),
    "channels": (int, "0 (the input formulation's count) or a positive integer", lambda v: v >= 0),
    "width": _positive_int(),
    "depth": _positive_int(),
    "kernel": _positive_int(odd=True),
    "d_model": _positive_int(),
    "temporal_layers": _positive_int(),
    "heads": _positive_int(),
    "dropout": (float, "a finite number in [0, 1)", lambda v: 0.0 <= v < 1.0),
    "readout": _choice(READOUTS),
    "graph_radius": (float, "a finite number of cells, at least 1", lambda v: v >= 1.0),
    "graph_backend": _choice(GRAPH_BACKENDS),
}


@dataclass(frozen=True)
class ModelConfig:
    """Everything needed to rebuild a model; saved beside its weights."""

    arch: str
    history: int = 12            # T, input epochs
    horizon: int = 6             # F, forecast epochs
    patch: int = 32              # P, cells per side
    channels: int = 0            # C: 0 takes the count of the input formulation's channels
    inputs: str = "paper"        # input formulation and target, insarcast.udf.inputs.INPUTS
    width: int = 32              # D, spatial feature channels
    depth: int = 2               # conv layers, residual blocks or graph layers
    kernel: int = 3              # convolution kernel (CNN, ResNet)
    d_model: int = 64            # token and context size
    temporal_layers: int = 1
    heads: int = 4               # Transformer attention heads
    dropout: float = 0.1
    readout: str = "skip"        # "pooled" (the paper's) or "skip"
    graph_radius: float = 1.5    # GCN adjacency radius in cells (1.5: the 8-neighbourhood)
    graph_backend: str = "grid"

    def __post_init__(self) -> None:
        for name, (kind, expected, ok) in MODEL_RULES.items():
            object.__setattr__(self, name, checked(getattr(self, name), kind=kind, expected=expected, ok=ok,
                                                   field=f"model.{name}"))
        expected = len(INPUTS[self.inputs])
        if self.channels == 0:
            object.__setattr__(self, "channels", expected)
        checks = [
            (self.channels == expected, "channels", f"{expected}, the channels of the {self.inputs!r} inputs"),
            (self.d_model % self.heads == 0, "heads", f"a divisor of d_model={self.d_model}"),
        ]
        for ok, name, expected in checks:
            if not ok:
                raise InputError(f"expected {expected}, got {getattr(self, name)!r}", field=f"model.{name}")

    @property
    def encoder(self) -> str:
        return self.arch.split("-")[0]

    @property
    def temporal(self) -> str:
        return self.arch.split("-")[1]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, source: str | Path | None = None) -> "ModelConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise InputError(f"unknown model setting(s) {', '.join(map(str, unknown))}", path=source,
                             field=f"model.{unknown[0]}")
        if "arch" not in data:
            raise InputError("missing", path=source, field="model.arch")
        try:
            return cls(**data)
        except InputError as exc:
            if source is None or exc.path is not None:
                raise
            raise InputError(exc.message, path=source, field=exc.field) from exc


# --- 1. spatial encoders: (N, C, P, P) frames -> (N, D, P, P) features -------------------------------

class CNNEncoder(nn.Module):
    """``depth`` plain convolutions with GELU, full resolution."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        layers: list[nn.Module] = []
        for i in range(cfg.depth):
            layers += [nn.Conv2d(cfg.channels if i == 0 else cfg.width, cfg.width, cfg.kernel,
                                 padding=cfg.kernel // 2), nn.GELU()]
        self.net = nn.Sequential(*layers)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        return self.net(frames)


class ResidualBlock(nn.Module):
    def __init__(self, width: int, kernel: int):
        super().__init__()
        groups = max(g for g in (8, 4, 2, 1) if width % g == 0)
        self.conv1 = nn.Conv2d(width, width, kernel, padding=kernel // 2)
        self.norm1 = nn.GroupNorm(groups, width)
        self.conv2 = nn.Conv2d(width, width, kernel, padding=kernel // 2)
        self.norm2 = nn.GroupNorm(groups, width)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        y = torch.nn.functional.gelu(self.norm1(self.conv1(h)))
        return torch.nn.functional.gelu(h + self.norm2(self.conv2(y)))


class ResNetEncoder(nn.Module):
    """A convolutional stem and ``depth`` residual blocks (conv-GroupNorm-GELU, identity skip)."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(cfg.channels, cfg.width, cfg.kernel, padding=cfg.kernel // 2),
                                  nn.GELU())
        self.blocks = nn.Sequential(*(ResidualBlock(cfg.width, cfg.kernel) for _ in range(cfg.depth)))

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        return self.blocks(self.stem(frames))


def grid_neighbours(patch: int, radius: float) -> np.ndarray:
    """(P*P, K) node indices within ``radius`` cells of each node, itself first; -1 pads short rows."""
    rows, cols = np.divmod(np.arange(patch * patch), patch)
    centres = np.column_stack([rows, cols]).astype(np.float64)
    found = cKDTree(centres).query_ball_point(centres, r=radius + 1e-9)
    width = max(len(f) for f in found)
    table = np.full((len(found), width), -1, np.int64)
    for i, neighbours in enumerate(found):
        ordered = [i] + sorted(j for j in neighbours if j != i)
        table[i, :len(ordered)] = ordered
    return table


class GraphConv(nn.Module):
    """A GCN layer over the valid pixels: H' = D^-1/2 (A + I) D^-1/2 H W + b (Kipf and Welling).

    A joins valid pixels within the radius; invalid pixels are not nodes (no edges, zero output).
    With S = diag(v / sqrt(deg)) the propagation is S (A + I) S H W. ``backend`` picks how (A + I) is
    applied: ``grid`` is a depthwise convolution whose 0/1 kernel marks the edge offsets (the graph
    is a regular grid, so every node has the same offsets; exportable to ONNX), ``sparse`` does one torch CSR matmul over the
    batch and ``pyg`` uses torch-geometric's GCNConv message passing. All give the same numbers.
    """

    def __init__(self, width_in: int, width_out: int, neighbours: torch.Tensor, backend: str):
        super().__init__()
        self.linear = nn.Linear(width_in, width_out, bias=False)
        self.bias = nn.Parameter(torch.zeros(width_out))
        self.backend = backend
        self.patch = int(round(math.sqrt(neighbours.shape[0])))
        self.register_buffer("neighbours", neighbours.clamp_min(0), persistent=False)
        self.register_buffer("exists", (neighbours >= 0).float(), persistent=False)
        centre = (self.patch // 2) * self.patch + self.patch // 2          # an interior node's edges
        offsets = [divmod(int(j), self.patch) for j in neighbours[centre] if j >= 0]
        self.reach = max(max(abs(r - self.patch // 2), abs(c - self.patch // 2)) for r, c in offsets)
        kernel = torch.zeros(1, 1, 2 * self.reach + 1, 2 * self.reach + 1)
        for r, c in offsets:
            kernel[0, 0, r - self.patch // 2 + self.reach, c - self.patch // 2 + self.reach] = 1.0
        self.register_buffer("kernel", kernel, persistent=False)
        self._pyg = None

    def _neighbour_sum(self, x: torch.Tensor) -> torch.Tensor:
        """(A + I) x for x (B, D, P, P): a depthwise convolution with the 0/1 kernel of the edge offsets."""
        channels = x.shape[1]
        return torch.nn.functional.conv2d(x, self.kernel.expand(channels, 1, -1, -1), padding=self.reach,
                                          groups=channels)

    def forward(self, h: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """h (B, N, D_in), valid (B, N) in {0, 1} -> (B, N, D_out)."""
        b, n, _ = h.shape
        p = self.patch
        hw = self.linear(h)
        v = valid.reshape(b, 1, p, p)
        degree = (self._neighbour_sum(v) * v).clamp_min(1.0)
        scale = v * torch.rsqrt(degree)                                     # S = v / sqrt(deg)
        if self.backend == "grid":
            x = hw.transpose(1, 2).reshape(b, -1, p, p) * scale
            out = (self._neighbour_sum(x) * scale).reshape(b, -1, n).transpose(1, 2)
        else:
            flat_scale = scale.reshape(b, n, 1)
            w = self.exists * valid[:, self.neighbours]                     # (B, N, K): edges (A + I)
            out = self._propagate_edges(hw * flat_scale, w) * flat_scale
        return out + self.bias * valid.unsqueeze(-1)

    def _propagate_edges(self, hw: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        b, n, d = hw.shape
        offsets = (torch.arange(b, device=hw.device) * n).view(b, 1, 1)
        target = (torch.arange(n, device=hw.device).view(1, n, 1) + offsets).expand_as(w)
        source = (self.neighbours.unsqueeze(0) + offsets).expand_as(w)
        keep = w.reshape(-1) != 0
        rows, cols, values = target.reshape(-1)[keep], source.reshape(-1)[keep], w.reshape(-1)[keep]
        flat = hw.reshape(b * n, d)
        if self.backend == "sparse":
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)        # "sparse CSR support is in beta"
                adjacency = torch.sparse_coo_tensor(torch.stack([rows, cols]), values, (b * n, b * n),
                                                    check_invariants=False)
                out = torch.sparse.mm(adjacency.coalesce().to_sparse_csr(), flat)
        else:
            out = self._gcnconv().propagate(torch.stack([cols, rows]), x=flat, edge_weight=values)
        return out.reshape(b, n, d)

    def _gcnconv(self):
        if self._pyg is None:
            try:
                from torch_geometric.nn import GCNConv
            except ImportError as err:  # pragma: no cover - depends on the environment
                from insarcast.errors import MissingDependencyError
                raise MissingDependencyError("graph_backend='pyg' needs torch-geometric: "
                                             "pip install 'insarcast[train]'") from err
            self._pyg = [GCNConv(1, 1, normalize=False, add_self_loops=False, bias=False)]
        return self._pyg[0]


class GCNEncoder(nn.Module):
    """A node-wise input projection and ``depth`` graph convolutions with GELU."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        neighbours = torch.from_numpy(grid_neighbours(cfg.patch, cfg.graph_radius))
        self.project = nn.Linear(cfg.channels, cfg.width)
        self.layers = nn.ModuleList(GraphConv(cfg.width, cfg.width, neighbours, cfg.graph_backend)
                                    for _ in range(cfg.depth))

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        n, c, p, _ = frames.shape
        valid = frames[:, 1].reshape(n, p * p)
        h = torch.nn.functional.gelu(self.project(frames.reshape(n, c, p * p).transpose(1, 2)))
        for layer in self.layers:
            h = torch.nn.functional.gelu(layer(h, valid)) * valid.unsqueeze(-1)
        return h.transpose(1, 2).reshape(n, -1, p, p)


# --- 3. temporal models: (B, T, d_model) tokens -> (B, d_model) context ------------------------------

class LSTMTemporal(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.lstm = nn.LSTM(cfg.d_model, cfg.d_model, num_layers=cfg.temporal_layers, batch_first=True,
                            dropout=cfg.dropout if cfg.temporal_layers > 1 else 0.0)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        out, _ = self.lstm(tokens)
        return out[:, -1]


class TransformerTemporal(nn.Module):
    """Learned positions, pre-norm Transformer encoder layers; the context is the last epoch's token."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.position = nn.Parameter(torch.zeros(1, cfg.history, cfg.d_model))
        layer = nn.TransformerEncoderLayer(cfg.d_model, cfg.heads, dim_feedforward=2 * cfg.d_model,
                                           dropout=cfg.dropout, activation="gelu", batch_first=True,
                                           norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, cfg.temporal_layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(cfg.d_model)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.norm(self.encoder(tokens + self.position))[:, -1]


# --- the whole model ----------------------------------------------------------------------------------

class Forecaster(nn.Module):
    """history (B, T, C, P, P) -> forecast (B, F, P, P), normalised."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.encoder = {"cnn": CNNEncoder, "resnet": ResNetEncoder, "gcn": GCNEncoder}[cfg.encoder](cfg)
        self.token = nn.Linear(cfg.width, cfg.d_model)
        self.temporal = {"lstm": LSTMTemporal, "transformer": TransformerTemporal}[cfg.temporal](cfg)
        self.dropout = nn.Dropout(cfg.dropout)
        p, f = cfg.patch, cfg.horizon
        if cfg.readout == "pooled":
            self.decode = nn.Linear(cfg.d_model, f * p * p)
        else:
            self.condition = nn.Linear(cfg.d_model, cfg.width)
            self.decode = nn.Sequential(nn.Conv2d(2 * cfg.width, cfg.width, 1), nn.GELU(),
                                        nn.Conv2d(cfg.width, f, 1))
        if cfg.inputs != "paper":
            # The output corrects a reference forecast: starting at zero, the untrained model is the
            # reference, and training can only move it where the data say so.
            nn.init.zeros_(self.last_layer.weight)
            nn.init.zeros_(self.last_layer.bias)

    @property
    def last_layer(self) -> nn.Linear | nn.Conv2d:
        """The readout's last layer, whose output is the forecast."""
        return self.decode if self.cfg.readout == "pooled" else self.decode[-1]

    @property
    def zero_output(self) -> bool:
        """Whether the readout's last layer is all zeros (weights and bias): the model then gives exactly
        0 for every finite input, so a residual model forecasts its reference unchanged (the untrained
        model, and a trained one that kept it because no epoch beat it on validation)."""
        last = self.last_layer
        return bool(torch.count_nonzero(last.weight) == 0 and torch.count_nonzero(last.bias) == 0)

    def forward(self, history: torch.Tensor) -> torch.Tensor:
        b, t, c, p, _ = history.shape
        frames = history.reshape(b * t, c, p, p)
        features = self.encoder(frames)                                    # (B*T, D, P, P)
        valid = frames[:, 1:2]
        pooled = (features * valid).sum((2, 3)) / valid.sum((2, 3)).clamp_min(1.0)
        tokens = self.token(pooled).reshape(b, t, -1)                       # (B, T, d_model)
        context = self.dropout(self.temporal(tokens))                       # (B, d_model)
        if self.cfg.readout == "pooled":
            return self.decode(context).reshape(b, self.cfg.horizon, p, p)
        last = features.reshape(b, t, -1, p, p)[:, -1]                      # H_T (B, D, P, P)
        cond = self.condition(context)[:, :, None, None].expand_as(last)
        return self.decode(torch.cat([last, cond], dim=1))


def build_model(cfg: ModelConfig) -> Forecaster:
    return Forecaster(cfg)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def save_model(model: Forecaster, path: str | Path, *, extra: dict[str, Any] | None = None) -> None:
    """Weights, config and ``extra`` (normalisation, ...) in one file; written whole or not at all."""
    from insarcast.fsutil import atomic_path

    payload = {"config": model.cfg.to_dict(), "state_dict": model.state_dict(), "extra": extra or {}}
    with atomic_path(Path(path)) as tmp:
        torch.save(payload, tmp)


def load_model(path: str | Path, *, map_location: str | torch.device = "cpu",
               **overrides: Any) -> tuple[Forecaster, dict[str, Any]]:
    """Rebuild a model from its file alone; ``overrides`` change non-weight settings (graph_backend)."""
    try:
        payload = torch.load(Path(path), map_location=map_location, weights_only=True)
    except FileNotFoundError as exc:
        raise InputError("no such model file", path=path) from exc
    except Exception as exc:                 # noqa: BLE001 - torch raises many types for a damaged file
        reason = " ".join(str(exc).split())[:200]
        raise InputError(f"damaged or truncated model file: torch cannot read it ({reason}); train or copy it "
                         "again", path=path) from exc
    if not isinstance(payload, dict) or "config" not in payload or "state_dict" not in payload:
        raise InputError("not a model file written by insarcast (no config and state_dict)", path=path)
    cfg = ModelConfig.from_dict({**payload["config"], **overrides}, source=path)
    model = Forecaster(cfg)
    model.load_state_dict(payload["state_dict"])
    return model.eval(), payload.get("extra", {})


def config_json(cfg: ModelConfig) -> str:
    return json.dumps(cfg.to_dict(), indent=2, sort_keys=True) + "\n"
