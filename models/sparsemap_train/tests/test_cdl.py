"""Convolutional dictionary learning: the fit improves, filters are zero-mean, L = 1."""

from __future__ import annotations

import pathlib

import numpy as np
import pytest

from sparsemap_train import cdl

REPO = pathlib.Path(__file__).resolve().parents[3]


def test_learning_improves_the_fit_and_normalises(tmp_path):
    img = np.load(REPO / "examples" / "colin27" / "target.npy")
    d, hist = cdl.learn([img], k=6, s=5, steps=60, crop=32, lam=0.05, code_iterations=15, lr=3e-2, seed=1, log=None)
    assert d.shape == (6, 5, 5) and d.dtype == np.float32
    first = np.mean([h["relative_residual"] for h in hist[:10]])
    last = np.mean([h["relative_residual"] for h in hist[-10:]])
    assert last < 0.9 * first, (first, last)
    np.testing.assert_allclose(d.sum(axis=(1, 2)), 0, atol=1e-6)
    assert cdl.lipschitz_all(d) == pytest.approx(1.0, rel=1e-5)
    cdl.save_png(d, tmp_path / "d.png")
    assert (tmp_path / "d.png").stat().st_size > 100
