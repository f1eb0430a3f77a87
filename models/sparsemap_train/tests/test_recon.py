"""The JAX reconstruction equals the float64 NumPy reference (and hence the Rust core)."""

from __future__ import annotations

import json
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import sparsemap_reference as ref
from sparsemap_train import recon

REPO = pathlib.Path(__file__).resolve().parents[3]
FIXTURES = REPO / "tests" / "fixtures" / "reference"
CASES = sorted(p.name for p in FIXTURES.iterdir() if p.is_dir())


def load(case):
    d = FIXTURES / case
    params = json.loads((d / "params.json").read_text())
    return (np.load(d / "kspace.npy"), np.load(d / "mask.npy"), np.load(d / "dictionary.npy"),
            np.load(d / "lambda.npy"), params["iterations"], params["lowpass_weight"],
            np.load(d / "expected_image.npy"))


def rel(a, b):
    return float(np.linalg.norm(np.asarray(a) - np.asarray(b)) / np.linalg.norm(np.asarray(b)))


def test_fixture_cases_exist():
    assert len(CASES) >= 4


@pytest.mark.parametrize("case", CASES)
def test_float64_matches_reference_fixture(case):
    k, m, d, lam, t, a, expected = load(case)
    out = recon.reconstruct(k.astype(np.complex128), m, d.astype(np.float64), lam.astype(np.float64), t, a)
    assert out["x"].dtype == jnp.complex128
    assert rel(out["x"], expected) <= 1e-12  # observed ~2e-16
    scalars = json.loads((FIXTURES / case / "expected_scalars.json").read_text())
    assert float(out["c"]) == pytest.approx(scalars["scale_c"], rel=1e-12)
    assert float(out["L"]) == pytest.approx(scalars["lipschitz_L"], rel=1e-12)
    zfile = FIXTURES / case / "expected_z.npy"
    if zfile.exists():
        assert rel(out["z"], np.load(zfile)) <= 1e-12


@pytest.mark.parametrize("case", CASES)
def test_float32_close_to_reference(case):
    k, m, d, lam, t, a, expected = load(case)
    out = recon.reconstruct(k.astype(np.complex64), m, d.astype(np.float32), lam.astype(np.float32), t, a)
    assert out["x"].dtype == jnp.complex64
    assert rel(out["x"], expected) <= 1e-6  # observed ~1.2e-7


@pytest.mark.parametrize("case", CASES)
def test_background_gate_matches_reference_fixture(case):
    """§3.7 item 7 (float64, and jitted with the mask traced, as in training) against the
    reference's gated image; the gate changes every fixture by > 1e-3, so this can fail."""
    k, m, d, lam, t, a, ungated = load(case)
    expected = np.load(FIXTURES / case / "expected_image_gated.npy")
    assert rel(expected, ungated) > 1e-3
    args = (k.astype(np.complex128), m, d.astype(np.float64), lam.astype(np.float64))
    out = recon.reconstruct(*args, t, a, background_gate_kappa=recon.BACKGROUND_GATE)
    assert rel(out["x"], expected) <= 1e-12  # observed ~2e-16
    jitted = jax.jit(lambda k, m: recon.reconstruct(k, m, args[2], args[3], t, a,
                                                    background_gate_kappa=recon.BACKGROUND_GATE)["x"])
    assert rel(jitted(jnp.asarray(args[0]), jnp.asarray(m)), expected) <= 1e-12
    assert recon.BACKGROUND_GATE == ref.BACKGROUND_GATE


def test_pieces_match_reference():
    rng = np.random.default_rng(7)
    d = rng.standard_normal((3, 7, 7))
    np.testing.assert_allclose(recon.filter_responses(jnp.asarray(d), 32, 64), ref.filter_responses(d, 32, 64),
                               rtol=0, atol=1e-12)
    np.testing.assert_allclose(recon.lowpass_filter(32, 64, 2.5), ref.lowpass_filter(32, 64, 2.5), rtol=1e-15)
    for n in (1, 2, 7, 100, 4097):
        v = rng.uniform(size=n)
        assert float(recon.percentile99(jnp.asarray(v))) == pytest.approx(ref.percentile99(v), rel=1e-14)
    u = rng.standard_normal((4, 5)) + 1j * rng.standard_normal((4, 5))
    u[0, 0] = 0
    thr = rng.uniform(0, 1.5, (4, 5))
    np.testing.assert_allclose(recon.soft(jnp.asarray(u), jnp.asarray(thr)), ref.soft(u, thr), atol=1e-15)


def test_differentiable_in_lambda_and_lowpass_weight():
    """Gradients through the unrolled solver are finite and agree with central differences."""
    k, m, d, lam, t, a, _ = load("c32_block_k4_s3")
    target = np.asarray(ref.reconstruct(k.astype(np.complex128), m, d.astype(np.float64), lam.astype(np.float64) * 0.5,
                                        t, a)["x"])

    @jax.jit
    def loss(scale, weight):
        out = recon.reconstruct(k.astype(np.complex128), m, d.astype(np.float64), scale * lam.astype(np.float64), t,
                                weight)
        return jnp.sum(jnp.abs(out["x"] - target) ** 2)

    g_scale, g_weight = jax.grad(loss, argnums=(0, 1))(1.0, a)
    assert np.isfinite(g_scale) and np.isfinite(g_weight) and g_scale != 0 and g_weight != 0
    eps = 1e-6
    fd_scale = (loss(1.0 + eps, a) - loss(1.0 - eps, a)) / (2 * eps)
    fd_weight = (loss(1.0, a + eps) - loss(1.0, a - eps)) / (2 * eps)
    assert float(g_scale) == pytest.approx(float(fd_scale), rel=1e-4)
    assert float(g_weight) == pytest.approx(float(fd_weight), rel=1e-4)
    # the gradient with respect to per-pixel maps is finite even where codes are exactly 0
    g_maps = jax.jit(jax.grad(lambda l: jnp.sum(jnp.abs(recon.reconstruct(k, m, d, l, t, a)["x"]) ** 2)))(
        jnp.asarray(lam, jnp.float64))
    assert np.all(np.isfinite(np.asarray(g_maps)))
