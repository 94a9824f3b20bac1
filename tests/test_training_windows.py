"""Leak-free windows, training-only statistics and the masked loss."""

import numpy as np
import pytest

from insarcast.errors import InputError
from insarcast.training.windows import (CHANNELS, Split, make_sample, patch_origins, pixel_mask,
                                        training_statistics)

T, F, P = 4, 3, 8


@pytest.fixture
def cube():
    rng = np.random.default_rng(0)
    d = np.cumsum(rng.normal(-1.0, 2.0, (100, 12, 10)), axis=0).astype(np.float32)
    valid = np.ones((12, 10), bool)
    valid[0, :3] = False
    return d, valid


def test_split_is_80_10_10_and_targets_stay_in_their_period():
    split = Split.temporal(100)
    assert (split.train, split.val, split.test) == ((0, 80), (80, 90), (90, 100))
    for part in ("train", "val", "test"):
        start, stop = getattr(split, part)
        anchors = split.anchors(part, history=T, horizon=F)
        assert (anchors + 1 >= start).all() and (anchors + F < stop).all()
        assert (anchors - T + 1 >= 0).all()
        # every admissible anchor is used: the first target is the first epoch of the period
        assert anchors[-1] + F == stop - 1
    assert split.anchors("val", history=T, horizon=F)[0] == 79


def brute_force(d, mask, split):
    inputs, targets = [], []
    for a in split.anchors("train", history=T, horizon=F):
        rel = d[a - T + 1:a + F + 1][:, mask] - d[a][mask]
        inputs.append(rel[:T].ravel())
        targets.append(rel[T:].ravel())
    return np.concatenate(inputs), np.concatenate(targets)


def test_statistics_equal_those_of_the_training_samples(cube):
    d, valid = cube
    split = Split.temporal(len(d))
    mask = pixel_mask(d, valid)
    norm = training_statistics(d, mask, split, history=T, horizon=F)
    inputs, targets = brute_force(d.astype(np.float64), mask, split)
    assert norm.input_mean == pytest.approx(inputs.mean(), rel=1e-9)
    assert norm.input_std == pytest.approx(inputs.std(), rel=1e-9)
    assert norm.target_mean == pytest.approx(targets.mean(), rel=1e-9)
    assert norm.target_std == pytest.approx(targets.std(), rel=1e-9)


def test_a_value_planted_after_the_training_period_changes_no_statistic(cube):
    d, valid = cube
    split = Split.temporal(len(d))
    mask = pixel_mask(d, valid)
    before = training_statistics(d, mask, split, history=T, horizon=F)
    planted = d.copy()
    planted[split.train[1]:, 5, 5] += 1e6
    assert training_statistics(planted, mask, split, history=T, horizon=F) == before
    planted[split.train[1] - 1, 5, 5] += 1e6       # the last training epoch does count
    assert training_statistics(planted, mask, split, history=T, horizon=F) != before


def test_sample_layout_follows_the_onnx_contract(cube):
    d, valid = cube
    split = Split.temporal(len(d))
    mask = pixel_mask(d, valid)
    norm = training_statistics(d, mask, split, history=T, horizon=F)
    x, y, m = make_sample(d, mask, norm, 20, (0, 0), history=T, horizon=F, size=P)[:3]
    assert x.shape == (T, len(CHANNELS), P, P) and y.shape == (F, P, P) and m.shape == (P, P)
    assert np.isfinite(x).all() and np.isfinite(y).all()
    # channel 0 at the anchor is (0 - mean) / std on valid pixels, 0 on invalid ones
    np.testing.assert_allclose(x[-1, 0][mask[:P, :P]], -norm.input_mean / norm.input_std, rtol=1e-5)
    assert (x[:, 0][:, ~mask[:P, :P]] == 0).all() and (x[:, 1] == mask[:P, :P]).all()
    # targets are the normalised change since the anchor
    expected = (d[21:24, 4, 4] - d[20, 4, 4] - norm.target_mean) / norm.target_std
    np.testing.assert_allclose(y[:, 4, 4], expected, rtol=1e-5)


def test_patches_cover_the_area_and_skip_mostly_invalid_ones():
    mask = np.ones((20, 30), bool)
    mask[:, :14] = False
    origins = patch_origins(mask, size=8, stride=8, min_valid=0.5)
    # starts 0, 8, 12 in y and 0, 8, 16, 22 in x; the patches at x 0 (0 % valid) and 8 (25 %) go
    assert sorted(map(tuple, origins)) == [(r, c) for r in (0, 8, 12) for c in (16, 22)]
    with pytest.raises(InputError, match="smaller than one patch"):
        patch_origins(mask, size=40, stride=8)


def test_masked_loss_ignores_invalid_pixels_in_value_and_gradient():
    torch = pytest.importorskip("torch")
    from insarcast.training.loss import masked_mse

    gen = torch.Generator().manual_seed(0)
    target = torch.randn(2, F, P, P, generator=gen)
    mask = (torch.rand(2, P, P, generator=gen) > 0.3).float()
    base = torch.randn(2, F, P, P, generator=gen)

    def loss_and_grad(prediction, target):
        prediction = prediction.clone().requires_grad_(True)
        loss = masked_mse(prediction, target, mask)
        loss.backward()
        return loss.item(), prediction.grad

    loss, grad = loss_and_grad(base, target)
    invalid = (mask == 0).unsqueeze(1).expand_as(base)
    expected = ((base - target)[~invalid] ** 2).mean().item()
    assert loss == pytest.approx(expected, rel=1e-6)
    changed_target = target.clone()
    changed_target[invalid] = float("nan")
    changed_prediction = base.clone()
    changed_prediction[invalid] = 1e6
    loss2, grad2 = loss_and_grad(changed_prediction, changed_target)
    assert loss2 == pytest.approx(loss, rel=1e-6)
    assert torch.equal(grad2, grad) and (grad[invalid] == 0).all() and (grad[~invalid] != 0).any()


def test_a_cube_without_a_valid_variable_trains_on_its_finite_pixels(tiny_cube, tmp_path):
    """A cube made elsewhere may have no 'valid' (forecast accepts it): training read ds['valid'] and
    raised a KeyError."""
    pytest.importorskip("torch")
    from insarcast.cube import open_cube
    from insarcast.training.data import Windows

    ds = open_cube(tiny_cube).load()
    bare = tmp_path / "bare.zarr"
    ds.drop_vars("valid").to_zarr(bare, zarr_format=2, consolidated=True)
    windows = Windows.from_cube(bare, history=8, horizon=6, patch=16, stride=16)
    finite = np.isfinite(ds["displacement"].values).all(axis=0)
    assert (windows.mask == finite).all() and windows.mask.any()


def test_an_infinite_value_is_a_missing_one_for_training(tiny_cube):
    """As in forecast: the pixel is left out, and the residual statistics' fits raise no RuntimeWarning."""
    import warnings

    pytest.importorskip("torch")
    from insarcast.cube import open_cube
    from insarcast.training.data import Windows

    ds = open_cube(tiny_cube).load()
    d = ds["displacement"].values.copy()
    missing = d.copy()
    d[5, 3, 4], missing[5, 3, 4] = np.inf, np.nan
    kwargs = dict(history=8, horizon=6, patch=16, stride=16, inputs="residual-hindcast")
    expected = Windows.from_arrays(missing, ds["valid"].values, ds["t"].values, **kwargs)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        windows = Windows.from_arrays(d, ds["valid"].values, ds["t"].values, **kwargs)
        anchor = int(windows.anchors("train")[-1])            # after the infinite epoch: it is in the history
        sample = windows.sample(anchor, (0, 0))
    assert not windows.mask[3, 4] and (windows.mask == expected.mask).all()
    assert windows.norm == expected.norm
    for got, want in zip(sample, expected.sample(anchor, (0, 0))):
        np.testing.assert_array_equal(np.asarray(got), np.asarray(want))
