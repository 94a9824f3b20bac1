"""The six architectures: shapes, rebuild from file, graph back-ends, parameter files."""

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from insarcast.errors import InputError  # noqa: E402
from insarcast.training.models import (ARCHS, ModelConfig, build_model, grid_neighbours, load_model,  # noqa: E402
                                       save_model)
from insarcast.training.params import configs, manual_params, parse_override, read_params  # noqa: E402


def _history(b, t, p, seed=0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(b, t, 2, p, p, generator=gen)
    valid = (torch.rand(b, 1, p, p, generator=gen) > 0.25).float()
    x[:, :, 0] *= valid
    x[:, :, 1] = valid
    return x


def _small(arch, **kw):
    return ModelConfig(arch=arch, width=8, depth=2, d_model=16, heads=2, dropout=0.0, **kw)


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("t,f,p,readout", [(4, 2, 8, "pooled"), (7, 5, 12, "skip"), (3, 1, 10, "skip")])
def test_every_architecture_maps_history_to_forecast(arch, t, f, p, readout):
    model = build_model(_small(arch, history=t, horizon=f, patch=p, readout=readout)).eval()
    out = model(_history(3, t, p))
    assert out.shape == (3, f, p, p) and out.dtype == torch.float32
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("arch", ARCHS)
def test_a_model_is_rebuilt_from_its_file_alone(arch, tmp_path):
    torch.manual_seed(1)
    cfg = _small(arch, history=5, horizon=3, patch=8, readout="skip" if "gcn" in arch else "pooled")
    model = build_model(cfg).eval()
    save_model(model, tmp_path / "model.pt", extra={"normalisation": {"input_mean": 1.0}})
    rebuilt, extra = load_model(tmp_path / "model.pt")
    x = _history(4, 5, 8, seed=2)
    assert rebuilt.cfg == cfg and extra["normalisation"]["input_mean"] == 1.0
    assert torch.equal(rebuilt(x), model(x))
    assert [p for p in tmp_path.iterdir()] == [tmp_path / "model.pt"]     # no temporary left behind


def test_models_differ_when_their_weights_differ():
    x = _history(2, 4, 8)
    torch.manual_seed(0)
    a = build_model(_small("resnet-transformer", history=4, horizon=2, patch=8)).eval()
    torch.manual_seed(1)
    b = build_model(_small("resnet-transformer", history=4, horizon=2, patch=8)).eval()
    assert not torch.allclose(a(x), b(x))


def test_grid_graph_is_the_8_neighbourhood_for_radius_1_5():
    table = grid_neighbours(4, 1.5)
    degree = (table >= 0).sum(1) - 1                          # without the node itself
    assert table[:, 0].tolist() == list(range(16))
    assert degree.reshape(4, 4).tolist() == [[3, 5, 5, 3], [5, 8, 8, 5], [5, 8, 8, 5], [3, 5, 5, 3]]
    assert sorted(table[5][table[5] >= 0].tolist()) == [0, 1, 2, 4, 5, 6, 8, 9, 10]


def test_graph_layer_is_the_normalised_gcn_propagation_and_backends_agree():
    """H' = D^-1/2 (A+I) D^-1/2 H W + b over valid nodes, computed densely by hand."""
    from insarcast.training.models import GraphConv

    p = 5
    table = torch.from_numpy(grid_neighbours(p, 1.5))
    torch.manual_seed(0)
    layer = GraphConv(3, 4, table, "grid")
    with torch.no_grad():
        layer.bias.copy_(torch.arange(4.0))
    h = torch.randn(2, p * p, 3)
    valid = (torch.rand(2, p * p) > 0.3).float()
    rows, cols = np.divmod(np.arange(p * p), p)
    adjacency = (np.abs(rows[:, None] - rows) <= 1) & (np.abs(cols[:, None] - cols) <= 1)   # includes I
    expected = []
    for b in range(2):
        v = valid[b].numpy()
        a = adjacency * v[:, None] * v[None, :]
        d = np.maximum(a.sum(1), 1.0)
        norm = a / np.sqrt(d[:, None] * d[None, :])
        hw = h[b].numpy() @ layer.linear.weight.detach().numpy().T
        expected.append(norm @ hw + v[:, None] * np.arange(4.0))
    expected = np.stack(expected)
    for backend in ("grid", "sparse", "pyg"):
        layer.backend = backend
        out = layer(h, valid).detach().numpy()
        np.testing.assert_allclose(out, expected, atol=1e-5, err_msg=backend)
    assert np.abs(out[valid.numpy() == 0]).max() == 0.0


def test_gcn_backends_give_the_same_model_output():
    cfg = _small("gcn-transformer", history=4, horizon=2, patch=8, readout="skip")
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    x = _history(2, 4, 8)
    reference = model(x)
    for backend in ("sparse", "pyg"):
        for layer in model.encoder.layers:
            layer.backend = backend
        torch.testing.assert_close(model(x), reference, atol=1e-5, rtol=1e-5)


def test_manual_configurations_cover_every_architecture_and_build():
    manual = manual_params()
    assert sorted(manual) == sorted(ARCHS)
    for arch in ARCHS:
        model_cfg, train_cfg = configs(manual[arch], arch=arch)
        assert (model_cfg.history, model_cfg.horizon, model_cfg.patch) == (12, 6, 32)   # docs/design.md defaults
        assert model_cfg.readout == "pooled" and train_cfg.lr > 0


def test_parameter_files_and_overrides(tmp_path):
    path = tmp_path / "p.json"
    path.write_text(json.dumps({"model": {"width": 12, "readout": "skip"}, "train": {"lr": 0.002}}))
    model_cfg, train_cfg = configs(read_params(path, arch="cnn-lstm"), arch="cnn-lstm",
                                   overrides=dict([parse_override("train.lr=3e-4"), parse_override("model.depth=4")]))
    assert (model_cfg.width, model_cfg.depth, model_cfg.readout, train_cfg.lr) == (12, 4, "skip", 3e-4)
    path.write_text(json.dumps({"model": {"widht": 12}}))
    with pytest.raises(InputError, match=r"p\.json.*widht"):
        configs(read_params(path, arch="cnn-lstm"), arch="cnn-lstm", source=path)
    with pytest.raises(InputError, match="heads"):
        ModelConfig(arch="cnn-transformer", d_model=30, heads=4)
    path.write_text("{not json")
    with pytest.raises(InputError, match="not valid JSON"):
        read_params(path, arch="cnn-lstm")
