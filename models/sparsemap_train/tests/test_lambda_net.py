"""The Lambda network: permutation equivariance, any K and filter size, bounded output."""

from __future__ import annotations

import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sparsemap_train import features as feat
from sparsemap_train import lambda_net, recon

REPO = pathlib.Path(__file__).resolve().parents[3]


def problem(n=64, k=16, s=5, seed=0):
    """A small k-space problem (an ellipse phantom, central-block mask) and a random zero-mean dictionary."""
    rng = np.random.default_rng(seed)
    yy, xx = np.meshgrid(np.linspace(-1, 1, n), np.linspace(-1, 1, n), indexing="ij")
    img = (((yy / 0.8) ** 2 + (xx / 0.6) ** 2) <= 1) * 1.0 + 0.5 * (((yy - 0.2) / 0.2) ** 2 + (xx / 0.3) ** 2 <= 1)
    img = img + 0.05 * rng.standard_normal((n, n))
    mask = np.zeros((n, n), np.uint8)
    mask[n // 4: 3 * n // 4, n // 4: 3 * n // 4] = 1
    kspace = (np.asarray(recon.centred_fft2(jnp.asarray(img.astype(np.complex128)))) * mask).astype(np.complex64)
    d = rng.standard_normal((k, s, s))
    d -= d.mean(axis=(1, 2), keepdims=True)
    d /= np.sqrt(np.sum(d ** 2, axis=(1, 2), keepdims=True)) * np.sqrt(k)
    return kspace, mask, d.astype(np.float32)


@pytest.mark.parametrize("k,s", [(16, 5), (24, 9)])
def test_permuting_filters_permutes_outputs_exactly(k, s):
    kspace, mask, d = problem(k=k, s=s)
    params = lambda_net.init(seed=1)
    x, _ = feat.features_from_kspace(kspace, mask, d)
    assert x.shape == (k, 3, 64, 64) and x.dtype == jnp.float32
    out = lambda_net.apply(params, x)
    assert out.shape == (k, 1, 64, 64)
    perm = np.random.default_rng(2).permutation(k)
    xp, _ = feat.features_from_kspace(kspace, mask, d[perm])
    # the features permute with the filters (channel 2, a mean over K, up to summation order)
    np.testing.assert_allclose(xp, x[perm], rtol=1e-5, atol=1e-6)
    # given permuted features, the network's output is exactly the permuted output
    np.testing.assert_array_equal(lambda_net.apply(params, x[perm]), out[perm])
    np.testing.assert_allclose(lambda_net.apply(params, xp), out[perm], rtol=1e-5, atol=1e-7)


def test_output_bounded_and_initial_value():
    kspace, mask, d = problem()
    params = lambda_net.init(seed=3)
    x, _ = feat.features_from_kspace(kspace, mask, d)
    out = np.asarray(lambda_net.apply(params, x))
    assert np.all(out >= 0) and np.all(out <= lambda_net.LAMBDA_MAX)
    # small output weights: maps start near LAMBDA_INIT
    assert abs(np.median(out) - lambda_net.LAMBDA_INIT) < 0.5 * lambda_net.LAMBDA_INIT
    # huge logits saturate at the bounds without NaN
    big = dict(params)
    big["c6.b"] = jnp.asarray([1e4], jnp.float32)
    assert np.allclose(np.asarray(lambda_net.apply(big, x)), lambda_net.LAMBDA_MAX)


def test_features_definition():
    kspace, mask, d = problem(k=4, s=3)
    x, pr = feat.features_from_kspace(kspace.astype(np.complex128), mask, d.astype(np.float64))
    # channel 1 is |x0| with p99 = 1
    assert float(np.percentile(np.asarray(x[0, 1]), 99)) == pytest.approx(1.0, rel=1e-12)
    # channel 0 is |d_k^T (*) x0'| / sqrt(L): spatial correlation with the flipped filter
    x0p = np.asarray(recon.centred_ifft2(pr["y_prime"]))
    c = d.shape[1] // 2
    corr = sum(d[1, i, j] * np.roll(x0p, (-(i - c), -(j - c)), axis=(0, 1)) for i in range(3) for j in range(3))
    np.testing.assert_allclose(np.asarray(x[1, 0]), np.abs(corr) / np.sqrt(float(pr["L"])), atol=1e-12)
    np.testing.assert_allclose(np.asarray(x[0, 2]), np.asarray(x[:, 0]).mean(axis=0), atol=1e-15)


def test_up2_is_bilinear_interior():
    """The fixed transposed convolution is a x2 bilinear interpolation away from the border."""
    v = jnp.asarray(np.arange(8.0))[None, None, None, :] * jnp.ones((1, 1, 8, 1))
    u = np.asarray(lambda_net._up2(v))[0, 0, 4]
    assert u.shape == (16,)
    np.testing.assert_allclose(u[1:-1], np.arange(16)[1:-1] / 2 - 0.25, atol=1e-12)


def test_macs_at_design_point():
    m = lambda_net.macs(32, 256, 256)
    assert m["total"] < 1.2e9  # about 2 GFLOP at K = 32, N = 256
