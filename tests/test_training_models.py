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


@pytest.mark.parametrize("setting,expected", [
    ("train.lr=abc", "expected a finite number > 0, got 'abc'"),
    ("train.lr=[1,2]", "expected a finite number > 0, got [1, 2]"),
    ("train.lr=true", "expected a finite number > 0, got True"),       # a bool is not a number here
    ("train.lr=inf", "expected a finite number > 0, got inf"),
    ("train.lr=nan", "expected a finite number > 0, got nan"),
    ("train.lr=0", "expected a finite number > 0, got 0"),
    ("train.batch_size=1.5", "expected an integer > 0, got 1.5"),
    ("train.max_epochs=1e9", "expected an integer > 0, got 1000000000.0"),
    ("train.train_samples=-1", "expected 0 (all) or a positive count, got -1"),
    ("train.warmup=2", "expected a share in [0, 1], got 2"),
    ("train.warmup=-0.1", "expected a share in [0, 1], got -0.1"),
    ("train.min_lr_ratio=1.5", "expected a share in [0, 1], got 1.5"),
    ("train.weight_decay=-1e-4", "expected a finite number >= 0, got -0.0001"),
    ("train.min_valid=0", "expected a share in (0, 1], got 0"),
    ("model.patch=16.0", "expected a positive integer, got 16.0"),
    ("model.width=8.5", "expected a positive integer, got 8.5"),
    ("model.width=true", "expected a positive integer, got True"),
    ("model.history=0", "expected a positive integer, got 0"),
    ("model.kernel=-1", "expected a positive odd integer, got -1"),
    ("model.kernel=4", "expected a positive odd integer, got 4"),
    ("model.dropout=inf", "expected a finite number in [0, 1), got inf"),
    ("model.graph_radius=0.5", "expected a finite number of cells, at least 1, got 0.5"),
    ("model.readout=[1]", "expected one of pooled, skip, got [1]"),
    ("model.inputs=3", "expected one of paper, "),
])
def test_a_setting_of_the_wrong_type_or_range_is_refused_naming_it(setting, expected):
    key, value = parse_override(setting)
    with pytest.raises(InputError) as err:
        configs(manual_params()["cnn-lstm"], arch="cnn-lstm", overrides={key: value})
    assert str(err.value).startswith(f"field '{key}': {expected}")


def test_settings_of_the_right_type_are_kept_and_an_integer_is_taken_as_a_number():
    overrides = dict(parse_override(s) for s in ("train.lr=1", "train.warmup=0", "train.min_lr_ratio=1",
                                                 "model.dropout=0", "model.graph_radius=2", "model.width=8"))
    model_cfg, train_cfg = configs(manual_params()["gcn-lstm"], arch="gcn-lstm", overrides=overrides)
    assert train_cfg.lr == 1.0 and isinstance(train_cfg.lr, float) and train_cfg.warmup == 0.0
    assert model_cfg.graph_radius == 2.0 and isinstance(model_cfg.graph_radius, float)
    assert model_cfg.width == 8 and isinstance(model_cfg.width, int)


@pytest.mark.parametrize("name,text,expected", [
    ("bad_type.toml", '[model]\nwidth = "x"\n', "field 'model.width': expected a positive integer, got 'x'"),
    ("bad_lr.json", '{"train": {"lr": "fast"}}', "field 'train.lr': expected a finite number > 0, got 'fast'"),
    ("list.json", "[1, 2]", "expected a JSON object with 'model' and 'train' tables, got list [1, 2]"),
    ("arch_int.json", '{"cnn-lstm": 5}', "expected a JSON object with 'model' and 'train' tables, got int 5"),
    ("model_int.json", '{"model": 5}', "field 'model': expected a table of settings, got 5"),
    ("train_list.toml", "train = [1]\n", "field 'train': expected a table of settings, got [1]"),
    ("keys.json", '{"1": {}}', "field '1': expected only 'model' and 'train' tables"),
    ("arch.toml", '[model]\narch = "gcn-lstm"\n', "field 'model.arch': the architecture is set by the --arch option"),
    ("unknown.toml", "[train]\nfoo = 1\n", "field 'train.foo': unknown training setting 'foo'"),
])
def test_a_bad_parameter_file_is_refused_naming_the_file_and_the_field(tmp_path, name, text, expected):
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(InputError) as err:
        configs(read_params(path, arch="cnn-lstm"), arch="cnn-lstm", source=path)
    assert str(err.value).startswith(f"{path}, {expected}" if "field" in expected else f"{path}: {expected}")


def test_a_folder_given_as_parameter_file_is_refused(tmp_path):
    (tmp_path / "p.toml").mkdir()
    with pytest.raises(InputError, match=r"p\.toml: expected a parameter file, got a folder"):
        read_params(tmp_path / "p.toml", arch="cnn-lstm")


def test_a_bad_override_does_not_blame_the_parameter_file(tmp_path):
    path = tmp_path / "p.toml"
    path.write_text("[model]\nwidth = 8\n")
    for setting in ("model.width=x", "model.foo=1", "train.foo=1"):
        key, value = parse_override(setting)
        with pytest.raises(InputError) as err:
            configs(read_params(path, arch="cnn-lstm"), arch="cnn-lstm", overrides={key: value}, source=path)
        assert str(err.value).startswith(f"field '{key}': ")


def test_the_architecture_comes_from_arch_and_a_different_model_arch_is_refused():
    with pytest.raises(InputError) as err:
        configs(manual_params()["cnn-lstm"], arch="cnn-lstm", overrides={"model.arch": "gcn-lstm"})
    assert str(err.value).startswith("field 'model.arch': the architecture is set by the --arch option")
    model_cfg, _ = configs(manual_params()["cnn-lstm"], arch="cnn-lstm", overrides={"model.arch": "cnn-lstm"})
    assert model_cfg.arch == "cnn-lstm"


def test_a_model_file_with_a_bad_config_names_the_file_and_the_field():
    with pytest.raises(InputError) as err:
        ModelConfig.from_dict({"arch": "cnn-lstm", "width": "x"}, source="m.pt")
    assert str(err.value) == "m.pt, field 'model.width': expected a positive integer, got 'x'"


def test_an_override_without_equals_names_the_set_option():
    with pytest.raises(InputError) as err:
        parse_override("train.lr")
    assert str(err.value) == "option --set: expected KEY=VALUE, got 'train.lr'"
