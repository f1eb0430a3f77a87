"""The U-Net baseline: its ONNX graph equals the JAX network (onnxruntime), on non-square
grids; its untrained output is the zero-filled image; training steps lower the loss."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

from sparsemap_train import export, recon, train, unet


def _spread(params):
    # the initial output layer is ~0 (identity network); make the correction visible
    p = dict(params)
    p["out.w"] = p["out.w"] * 100
    return p


@pytest.mark.parametrize("ny,nx", [(64, 64), (48, 80)])
def test_onnxruntime_equals_jax(ny, nx):
    params = _spread(unet.init(seed=3, width=8))
    model = unet.build_onnx(params, "test")
    x = np.random.default_rng(1).standard_normal((1, 2, ny, nx)).astype(np.float32)
    ours = np.asarray(unet.apply(params, x))
    ort = export.run_ort(model, x, unet.INPUT, unet.OUTPUT)
    assert ort.shape == (1, 2, ny, nx)
    correction = ours - x
    assert np.linalg.norm(correction) > 0.1 * np.linalg.norm(x)  # the check sees the network
    assert np.linalg.norm(ort - ours) / np.linalg.norm(correction) <= 1e-5  # observed ~1e-7


def test_metadata_and_grid():
    model = unet.build_onnx(unet.init(seed=0, width=4), "describe me")
    meta = {p.key: p.value for p in model.metadata_props}
    assert meta["sparsemap.unet.version"] == unet.CONTRACT_VERSION
    assert meta["sparsemap.grid_multiple"] == "8"
    with pytest.raises(ValueError, match="multiples of 8"):
        unet.apply(unet.init(seed=0, width=4), np.zeros((1, 2, 60, 64), np.float32))


def test_untrained_network_returns_the_zero_filled_image():
    target = np.load(train.REPO / "examples/colin27/target.npy").astype(np.complex64)
    kspace, mask = train.simulate(target, np.random.default_rng(0), 0.0, 0.5)
    zero_filled = np.asarray(recon.centred_ifft2(kspace * mask))
    x = np.asarray(unet.reconstruct(unet.init(seed=0), kspace, mask.astype(np.float32)))
    rel = np.linalg.norm(x - zero_filled) / np.linalg.norm(zero_filled)
    assert rel < 0.05, rel


def test_training_improves_on_zero_filled(tmp_path):
    """80 steps of the `test` preset (64^2 crops of the example slices, s in [0.075, 0.3])
    already lift the held-out example slice above the zero-filled image."""
    out = unet.train_unet("test", tmp_path / "u", steps=80, width=8)
    assert (tmp_path / "u.unet.onnx").is_file() and len(out["history"]) == 80
    params, _ = unet.load_params(str(tmp_path / "u.params.npz"))
    target = np.load(train.REPO / "examples/colin27/validation/target.npy").astype(np.complex64)
    sigma = 0.15 * np.sqrt(np.mean(np.abs(target) ** 2))
    kspace, mask = train.simulate(target, np.random.default_rng(7), sigma, 0.5)
    zero_filled = train.psnr(np.asarray(recon.centred_ifft2(kspace * mask)), target)
    trained = train.psnr(np.asarray(unet.reconstruct(params, kspace, mask.astype(np.float32))), target)
    assert trained > zero_filled + 0.25, (trained, zero_filled)  # observed +0.39 dB; untrained: +0.0


def test_fixture_regenerates(tmp_path):
    """tests/fixtures/unet (the Rust runner's oracle) is what make_fixture writes today."""
    unet.make_fixture(tmp_path)
    for name in ("zero_filled.npy", "expected.npy"):
        np.testing.assert_allclose(np.load(tmp_path / name), np.load(unet.FIXTURE_DIR / name), rtol=1e-6, atol=1e-9)
    a, b = (onnx.load(d / "tiny.unet.onnx") for d in (tmp_path, unet.FIXTURE_DIR))
    for ta, tb in zip(a.graph.initializer, b.graph.initializer, strict=True):
        np.testing.assert_allclose(onnx.numpy_helper.to_array(ta), onnx.numpy_helper.to_array(tb), rtol=1e-6)
