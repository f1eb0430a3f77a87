"""The float64 desktop reconstruction with a model equals the JAX f32 pipeline to f32 accuracy."""

from __future__ import annotations

import pathlib

import numpy as np

from sparsemap_train import desktop, lambda_net, recon
from sparsemap_train import features as feat

FIX = pathlib.Path(__file__).resolve().parents[3] / "tests" / "fixtures" / "lambda_net"


def test_desktop_matches_jax_float32_pipeline():
    kspace, mask = np.load(FIX / "kspace.npy"), np.load(FIX / "mask.npy")
    d = np.load(FIX / "rand7" / "dictionary.npy")
    out = desktop.reconstruct(kspace, mask, FIX / "model.f32.onnx", d, iterations=20)
    lam = np.load(FIX / "rand7" / "lambda_f32.npy")[:, 0]
    np.testing.assert_allclose(out["lambda_maps"], lam, rtol=0, atol=1e-6)
    jx = recon.reconstruct(kspace, mask, d, lam, 20, 1.0, background_gate_kappa=recon.BACKGROUND_GATE)["x"]
    assert np.linalg.norm(out["x"] - jx) / np.linalg.norm(out["x"]) < 1e-5
    # the int8 file gives maps within quantisation error
    q = desktop.reconstruct(kspace, mask, FIX / "model.int8.onnx", d, iterations=1)
    assert np.max(np.abs(q["lambda_maps"] - lam)) < 0.02 * lambda_net.LAMBDA_MAX
    assert feat.FEATURES_V1 in open(FIX / "model.f32.onnx", "rb").read().decode("latin1")


def test_committed_desktop_fixture_is_current():
    """tests/fixtures/learned (the edge runtime's reference) is what the committed models give."""
    from sparsemap_train import make_desktop_fixture as mdf

    for precision, out in mdf.reconstructions().items():
        stored = np.load(mdf.OUT / f"x_{precision}.npy")
        assert np.linalg.norm(out["x"] - stored) / np.linalg.norm(out["x"]) < 1e-6, precision
