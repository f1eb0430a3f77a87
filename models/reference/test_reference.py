"""Tests of the float64 NumPy reference (run: models/.venv/bin/python -m pytest models/reference)."""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys

import numpy as np
import pytest

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import sparsemap_reference as ref  # noqa: E402

REPO = HERE.parents[1]
FIXTURES = REPO / "tests" / "fixtures" / "reference"


def crandn(rng, *shape):
    return rng.standard_normal(shape) + 1j * rng.standard_normal(shape)


def vdot(a, b):
    """<a, b> = sum conj(a) b."""
    return np.vdot(np.ravel(a), np.ravel(b))


# ------------------------------------------------------------------------------ FFT


@pytest.mark.parametrize("shape", [(8, 8), (32, 64), (64, 32)])
def test_fft_unitary_parseval_and_round_trip(shape):
    rng = np.random.default_rng(1)
    x = crandn(rng, *shape)
    k = ref.centred_fft2(x)
    assert np.sum(np.abs(k) ** 2) == pytest.approx(np.sum(np.abs(x) ** 2), rel=1e-12)
    np.testing.assert_allclose(ref.centred_ifft2(k), x, atol=1e-12)
    np.testing.assert_allclose(ref.centred_fft2(ref.centred_ifft2(x)), x, atol=1e-12)
    # adjoint: <F x, y> = <x, F^H y>
    y = crandn(rng, *shape)
    assert vdot(ref.centred_fft2(x), y) == pytest.approx(vdot(x, ref.centred_ifft2(y)), rel=1e-12)


def test_fft_matches_naive_centred_dft_8x8():
    """F[ky, kx] = 1/sqrt(N) sum_{y,x} x[y, x] exp(-2 pi i ((ky-4)(y-4)/8 + (kx-4)(x-4)/8)).

    Centred layout: frequency index ky <-> frequency ky - N/2, pixel index y <-> position y - N/2.
    """
    n = 8
    idx = np.arange(n) - n // 2
    w = np.exp(-2j * np.pi * np.outer(idx, idx) / n)  # [k, y]
    rng = np.random.default_rng(2)
    x = crandn(rng, n, n)
    naive = w @ x @ w.T / n
    np.testing.assert_allclose(ref.centred_fft2(x), naive, atol=1e-12)
    # DC is at [N/2, N/2]: a constant image puts all its energy there
    k = ref.centred_fft2(np.ones((n, n)))
    assert k[n // 2, n // 2] == pytest.approx(n)  # sqrt(64) * 1
    k[n // 2, n // 2] = 0
    assert np.max(np.abs(k)) < 1e-12
    # a centred delta (pixel [N/2, N/2]) has a flat, real, positive spectrum
    delta = np.zeros((n, n))
    delta[n // 2, n // 2] = 1
    np.testing.assert_allclose(ref.centred_fft2(delta), np.full((n, n), 1 / n), atol=1e-15)
    # negative control: an uncentred FFT is not the same operator
    assert not np.allclose(np.fft.fft2(x) / n, naive, atol=1e-6)


# ----------------------------------------------------------------------- dictionary


@pytest.mark.parametrize("ny,nx,s", [(16, 16, 3), (32, 64, 5), (64, 32, 7)])
def test_convolution_theorem_pins_padding_and_origin(ny, nx, s):
    rng = np.random.default_rng(3)
    d = rng.standard_normal((2, s, s))  # asymmetric filters
    h = ref.filter_responses(d, ny, nx)
    z = crandn(rng, ny, nx)
    for kk in range(2):
        direct = ref.circular_conv(d[kk], z)
        np.testing.assert_allclose(ref.centred_fft2(direct), h[kk] * ref.centred_fft2(z), atol=1e-10)
    # negative controls: correlation (flipped filter) and a corner-origin padding both differ
    corr = ref.circular_conv(d[0, ::-1, ::-1], z)
    assert not np.allclose(ref.centred_fft2(corr), h[0] * ref.centred_fft2(z), atol=1e-3)
    corner = np.zeros((ny, nx))
    corner[:s, :s] = d[0]
    h_corner = np.fft.fftshift(np.fft.fft2(corner))
    assert not np.allclose(h_corner, h[0], atol=1e-3)


def test_delta_filter_and_shift_convention():
    """A 3x3 filter with its only tap at (i, j) = (2, 1) shifts the image by +1 row: (d * z)[n] = z[n - (1, 0)]."""
    d = np.zeros((1, 3, 3))
    d[0, 2, 1] = 1.0
    z = np.arange(16 * 16, dtype=float).reshape(16, 16)
    out = ref.circular_conv(d[0], z)
    np.testing.assert_array_equal(out, np.roll(z, 1, axis=0))
    p = ref.pad_centred(d, 16, 16)
    assert p[0, 1, 0] == 1.0 and p.sum() == 1.0
    # centre tap only -> identity, h = 1 everywhere
    e = np.zeros((1, 5, 5))
    e[0, 2, 2] = 1
    np.testing.assert_allclose(ref.filter_responses(e, 32, 32), np.ones((1, 32, 32)), atol=1e-15)


def test_lowpass_filter():
    g = ref.lowpass_filter(32, 64, 4.0)
    assert g[16, 32] == 1.0  # DC
    assert g.max() == 1.0 and g.min() > 0
    # Nyquist corner: 1 / (1 + a (4 + 2 + 2))
    assert g[0, 0] == pytest.approx(1 / (1 + 4.0 * 8))
    # equals (I + a grad^H grad)^{-1} with circular forward differences, applied in image space
    rng = np.random.default_rng(4)
    x = crandn(rng, 32, 64)
    a = 4.0
    lap = lambda u: (4 * u - np.roll(u, 1, 0) - np.roll(u, -1, 0) - np.roll(u, 1, 1) - np.roll(u, -1, 1))  # noqa: E731
    x_low = ref.centred_ifft2(g * ref.centred_fft2(x))
    np.testing.assert_allclose(x_low + a * lap(x_low), x, atol=1e-10)
    np.testing.assert_array_equal(ref.lowpass_filter(8, 8, 0.0), np.ones((8, 8)))


def test_percentile99_is_numpy_linear():
    rng = np.random.default_rng(5)
    for n in (1, 2, 7, 100, 1024, 4097):
        v = rng.uniform(size=n)
        s = np.sort(v)
        r = 0.99 * (n - 1)
        lo, hi = int(np.floor(r)), int(np.ceil(r))
        explicit = s[lo] + (r - lo) * (s[hi] - s[lo])
        assert ref.percentile99(v) == pytest.approx(explicit, rel=1e-14, abs=0)


def test_lipschitz_is_max_over_sampled_frequencies_and_operator_norm():
    rng = np.random.default_rng(6)
    ny = nx = 32
    d = rng.standard_normal((3, 5, 5))
    d -= d.mean(axis=(1, 2), keepdims=True)  # high-pass
    h = ref.filter_responses(d, ny, nx)
    mask = np.zeros((ny, nx), dtype=np.uint8)
    mask[8:24, 8:24] = 1
    big_l = ref.lipschitz(h, mask)
    l_all = ref.lipschitz(h, np.ones((ny, nx)))
    assert big_l < l_all  # the sampled-only maximum is strictly smaller here
    # power iteration on (A D)^H (A D) converges to L
    z = crandn(rng, 3, ny, nx)
    for _ in range(300):
        z = ref.synthesis_adjoint(ref.synthesis(z, h, mask), h, mask)
        z /= np.linalg.norm(z)
    est = np.linalg.norm(ref.synthesis_adjoint(ref.synthesis(z, h, mask), h, mask))
    assert est == pytest.approx(big_l, rel=1e-3)


# ---------------------------------------------------------------------- operators


@pytest.mark.parametrize("ny,nx", [(32, 32), (32, 64)])
def test_adjoint_identity_of_masked_synthesis(ny, nx):
    rng = np.random.default_rng(7)
    k = 4
    d = rng.standard_normal((k, 5, 5))
    h = ref.filter_responses(d, ny, nx)
    mask = (rng.uniform(size=(ny, nx)) < 0.4).astype(np.uint8)
    z = crandn(rng, k, ny, nx)
    r = crandn(rng, ny, nx)
    lhs = vdot(ref.synthesis(z, h, mask), r)
    rhs = vdot(z, ref.synthesis_adjoint(r, h, mask))
    assert lhs == pytest.approx(rhs, rel=1e-12)
    # the synthesis is D followed by A = M F: compare with the direct spatial convolution
    dz = sum(ref.circular_conv(d[i], z[i]) for i in range(k))
    np.testing.assert_allclose(ref.synthesis(z, h, mask), (mask != 0) * ref.centred_fft2(dz), atol=1e-10)


def test_soft_threshold_is_the_prox():
    rng = np.random.default_rng(8)
    u = crandn(rng, 2000)
    a = rng.uniform(0, 2, 2000)
    p = ref.soft(u, a)
    # closed form: magnitude shrunk by a, phase kept
    np.testing.assert_allclose(np.abs(p), np.maximum(np.abs(u) - a, 0), atol=1e-14)
    nz = p != 0
    np.testing.assert_allclose(np.angle(p[nz]), np.angle(u[nz]), atol=1e-12)
    # optimality: 0 in p - u + a dl1(p): p != 0 -> u - p = a p/|p|; p == 0 -> |u| <= a
    np.testing.assert_allclose((u - p)[nz], a[nz] * p[nz] / np.abs(p[nz]), atol=1e-12)
    assert np.all(np.abs(u[~nz]) <= a[~nz])
    # and it minimises 1/2|q - u|^2 + a|q| against random perturbations
    f = lambda q: 0.5 * np.abs(q - u) ** 2 + a * np.abs(q)  # noqa: E731
    for _ in range(20):
        q = p + 0.05 * crandn(rng, 2000)
        assert np.all(f(q) >= f(p) - 1e-12)
    # edge cases: 0 stays 0 (no NaN), a = 0 is the identity, |u| == a gives exactly 0
    assert ref.soft(np.array([0j]), 0.0)[0] == 0
    assert ref.soft(np.array([0j]), 1.0)[0] == 0
    np.testing.assert_array_equal(ref.soft(u, 0.0), u)
    assert ref.soft(np.array([3 + 4j]), 5.0)[0] == 0


# -------------------------------------------------------------------------- FISTA


def test_fista_identity_dictionary_one_step_is_exact():
    """M = 1, d = [[1]]: (P) is 1/2||z - F^H y||^2 + lam ||z||_1, tau = 1, z* = soft(F^H y, lam) after one step."""
    rng = np.random.default_rng(9)
    ny = nx = 16
    y = crandn(rng, ny, nx)
    h = ref.filter_responses(np.ones((1, 1, 1)), ny, nx)
    mask = np.ones((ny, nx))
    lam = np.full((1, ny, nx), 0.7)
    z_star = ref.soft(ref.centred_ifft2(y), 0.7)[None]
    for t in (1, 2, 10):
        z = ref.fista(y, h, mask, lam, 1.0 / ref.lipschitz(h, mask), t)
        np.testing.assert_allclose(z, z_star, atol=1e-12)


def test_fista_converges_to_analytic_minimiser():
    """K = 2, d_1 = [[1]], d_2 = [[2]], M = 1, scalar lam. With b = F^H y the problem is
    min 1/2||z_1 + 2 z_2 - b||^2 + lam(||z_1||_1 + ||z_2||_1); since |z_1| + |z_2| >= |z_1 + 2 z_2|/2 with
    equality iff z_1 = 0, the unique minimiser is z_1 = 0, z_2 = soft(b, lam/2)/2. L = 5, and FISTA needs
    many iterations here (the first one gives z = (soft(b/5, lam/5), soft(2b/5, lam/5)))."""
    rng = np.random.default_rng(10)
    ny = nx = 16
    y = crandn(rng, ny, nx)
    lam_s = 0.8
    d = np.array([[[1.0]], [[2.0]]])
    h = ref.filter_responses(d, ny, nx)
    mask = np.ones((ny, nx))
    lam = np.full((2, ny, nx), lam_s)
    big_l = ref.lipschitz(h, mask)
    assert big_l == pytest.approx(5.0)
    b = ref.centred_ifft2(y)
    s = ref.soft(b, lam_s / 2)
    z_star = np.stack([np.zeros_like(b), s / 2])
    f_star = ref.objective(z_star, y, h, mask, lam)
    assert f_star == pytest.approx(float(np.sum(0.5 * np.abs(s - b) ** 2 + lam_s / 2 * np.abs(s))), rel=1e-12)
    gaps = []
    ref.fista(y, h, mask, lam, 1 / big_l, 300,
              callback=lambda i, z: gaps.append(ref.objective(z, y, h, mask, lam) - f_star))
    gaps = np.array(gaps)
    assert np.all(gaps >= -1e-9)
    # FISTA rate: F(z^k) - F* <= 2 L ||z^0 - z*||^2 / (k + 1)^2
    k = np.arange(1, 301)
    bound = 2 * big_l * np.sum(np.abs(z_star) ** 2) / (k + 1) ** 2
    assert np.all(gaps <= bound + 1e-12)
    assert gaps[0] > 1e-2 and gaps[-1] < 1e-8
    assert gaps[49] < 1e-2 * gaps[0]
    z = ref.fista(y, h, mask, lam, 1 / big_l, 300)
    np.testing.assert_allclose(z, z_star, atol=1e-5)


def test_fista_iterates_match_hand_unrolled_recursion():
    """Same K = 2 scalar-filter problem, unrolled by hand in the image domain (no FFT):
    g_1 = z_1 + 2 z_2 - b, g_2 = 2 g_1; pins the momentum sequence t_i and the use of z^{i-1}."""
    rng = np.random.default_rng(15)
    ny = nx = 8
    y = crandn(rng, ny, nx)
    b = ref.centred_ifft2(y)
    h = ref.filter_responses(np.array([[[1.0]], [[2.0]]]), ny, nx)
    mask = np.ones((ny, nx))
    lam = np.stack([np.full((ny, nx), 0.3), rng.uniform(0.1, 0.9, (ny, nx))])
    tau = 1 / 5
    z_prev = np.zeros((2, ny, nx), complex)
    v = z_prev.copy()
    t = 1.0
    for i in range(1, 6):
        r = v[0] + 2 * v[1] - b
        g = np.stack([r, 2 * r])
        z = ref.soft(v - tau * g, tau * lam)
        t_next = (1 + np.sqrt(1 + 4 * t * t)) / 2
        v = z + (t - 1) / t_next * (z - z_prev)
        z_prev, t = z, t_next
        if i == 1:
            assert t == pytest.approx((1 + np.sqrt(5)) / 2)
        np.testing.assert_allclose(ref.fista(y, h, mask, lam, tau, i), z, atol=1e-12)
    # momentum matters from z^3 on: plain ISTA iterates differ
    assert not np.allclose(ref.fista(y, h, mask, lam, tau, 5), ista(y, lam, tau, 5), atol=1e-6)


def ista(y, lam, tau, iterations):
    b = ref.centred_ifft2(y)
    z = np.zeros((2,) + y.shape, complex)
    for _ in range(iterations):
        r = z[0] + 2 * z[1] - b
        z = ref.soft(z - tau * np.stack([r, 2 * r]), tau * lam)
    return z


def test_fista_objective_decreases_on_convolutional_problem():
    rng = np.random.default_rng(11)
    ny = nx = 32
    d = rng.standard_normal((4, 5, 5))
    d /= np.linalg.norm(d.reshape(4, -1), axis=1)[:, None, None]
    h = ref.filter_responses(d, ny, nx)
    mask = (rng.uniform(size=(ny, nx)) < 0.5).astype(np.uint8)
    y = (mask != 0) * crandn(rng, ny, nx)
    lam = 0.05 * rng.uniform(0.5, 1.5, (4, ny, nx))
    big_l = ref.lipschitz(h, mask)
    objs = []
    ref.fista(y, h, mask, lam, 1 / big_l, 400, callback=lambda i, z: objs.append(ref.objective(z, y, h, mask, lam)))
    objs = np.array(objs)
    f0 = ref.objective(np.zeros((4, ny, nx)), y, h, mask, lam)
    assert objs[0] < f0
    f_best = objs.min()
    assert objs[9] - f_best < 0.5 * (objs[0] - f_best)
    assert objs[-1] - f_best < 1e-6 * (f0 - f_best)


# ------------------------------------------------------------------ reconstruction


def test_reconstruct_matches_closed_form_with_identity_dictionary():
    """M = 1, d = [[1]], any a: y' = (1 - G) c y, z* = soft(F^H y', lam), x = (F^H(G c y) + z*) / c."""
    rng = np.random.default_rng(12)
    ny, nx = 32, 64
    y = crandn(rng, ny, nx)
    mask = np.ones((ny, nx), dtype=np.uint8)
    a, lam = 4.0, 0.05
    res = ref.reconstruct(y, mask, np.ones((1, 1, 1)), lam, iterations=3, lowpass_weight=a)
    c = 1.0 / np.percentile(np.abs(ref.centred_ifft2(y)), 99)
    g = ref.lowpass_filter(ny, nx, a)
    z_star = ref.soft(ref.centred_ifft2((1 - g) * c * y), lam)
    assert res["scale_c"] == pytest.approx(c, rel=1e-14)
    assert res["lipschitz_L"] == pytest.approx(1.0, rel=1e-14)
    np.testing.assert_allclose(res["z"][0], z_star, atol=1e-12)
    np.testing.assert_allclose(res["x"], (ref.centred_ifft2(g * c * y) + z_star) / c, atol=1e-10)
    np.testing.assert_allclose(res["x_low"], ref.centred_ifft2(g * y), atol=1e-10)
    assert 0 < np.mean(res["z"] != 0) < 1


def test_reconstruct_ignores_unsampled_values_and_is_scale_equivariant():
    rng = np.random.default_rng(13)
    ny = nx = 32
    mask = np.zeros((ny, nx), dtype=np.float32)
    mask[8:24, 8:24] = 2.5  # any non-zero counts as sampled
    y = crandn(rng, ny, nx)
    d = rng.standard_normal((3, 3, 3))
    lam = rng.uniform(0.01, 0.05, 3)
    r1 = ref.reconstruct(y, mask, d, lam, 5, 4.0)
    junk = y.copy()
    junk[mask == 0] = np.nan  # never trusted
    r2 = ref.reconstruct(junk, mask, d, lam, 5, 4.0)
    np.testing.assert_array_equal(r1["x"], r2["x"])
    # T = 0 gives x = x_low
    r0 = ref.reconstruct(y, mask, d, lam, 0, 4.0)
    np.testing.assert_allclose(r0["x"], r0["x_low"], atol=1e-14)
    # scaling the data scales the image (lambda lives in the scaled problem)
    r3 = ref.reconstruct(1e3 * y, mask, d, lam, 5, 4.0)
    np.testing.assert_allclose(r3["x"], 1e3 * r1["x"], rtol=0, atol=1e-9 * np.max(np.abs(r3["x"])))
    # scalar / vector / maps forms agree
    maps = np.broadcast_to(lam[:, None, None], (3, ny, nx))
    r4 = ref.reconstruct(y, mask, d, maps, 5, 4.0)
    np.testing.assert_array_equal(r1["x"], r4["x"])


@pytest.mark.parametrize("kwargs,match", [
    (dict(kspace=np.zeros((4, 4, 4), complex)), "kspace"),
    (dict(kspace=np.zeros((15, 16), complex), mask=np.ones((15, 16))), "even"),
    (dict(mask=np.ones((16, 8))), "mask has shape"),
    (dict(mask=np.full((16, 16), np.nan)), "non-finite"),
    (dict(dictionary=np.ones((2, 4, 4))), "odd"),
    (dict(dictionary=np.ones((2, 3, 5))), "square"),
    (dict(dictionary=np.ones((3, 3))), r"\[K, s, s\]"),
    (dict(dictionary=np.ones((1, 17, 17))), "exceeds"),
    (dict(dictionary=np.full((1, 3, 3), np.inf)), "non-finite"),
    (dict(lam=-1.0), "negative"),
    (dict(lam=np.array([0.1, 0.2, 0.3])), "length"),
    (dict(lam=np.ones((2, 8, 8))), "shape"),
    (dict(lam=np.nan), "non-finite"),
    (dict(iterations=-1), "iterations"),
    (dict(iterations=2.5), "iterations"),
    (dict(lowpass_weight=-0.1), "lowpass_weight"),
    (dict(kspace=np.zeros((16, 16), complex)), "nothing measured"),
    (dict(mask=np.zeros((16, 16))), "nothing measured"),
    (dict(kspace=np.full((16, 16), np.inf + 0j)), "not finite"),
    (dict(dictionary=np.zeros((2, 3, 3))), "Lipschitz"),
])
@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_reconstruct_rejects_bad_input(kwargs, match):
    rng = np.random.default_rng(14)
    args = dict(kspace=crandn(rng, 16, 16), mask=np.ones((16, 16)), dictionary=rng.standard_normal((2, 3, 3)),
                lam=0.1, iterations=2, lowpass_weight=4.0)
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        ref.reconstruct(**args)


# ------------------------------------------------------------------------ data files


def test_fixtures_are_reproduced_bit_for_bit(tmp_path):
    subprocess.run([sys.executable, str(HERE / "make_fixtures.py"), "--out", str(tmp_path), "--quiet"], check=True)
    committed = sorted(p.relative_to(FIXTURES) for p in FIXTURES.rglob("*") if p.is_file())
    fresh = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*") if p.is_file())
    assert committed == fresh
    assert len(committed) >= 4 * 7
    for rel in committed:
        assert (FIXTURES / rel).read_bytes() == (tmp_path / rel).read_bytes(), f"{rel} differs"


def test_fixture_contract():
    cases = sorted(p for p in FIXTURES.iterdir() if p.is_dir())
    assert len(cases) >= 4
    varying = 0
    for case in cases:
        ksp = np.load(case / "kspace.npy")
        mask = np.load(case / "mask.npy")
        d = np.load(case / "dictionary.npy")
        lam = np.load(case / "lambda.npy")
        params = json.loads((case / "params.json").read_text())
        scalars = json.loads((case / "expected_scalars.json").read_text())
        img = np.load(case / "expected_image.npy")
        ny, nx = ksp.shape
        k = d.shape[0]
        assert ksp.dtype == np.complex64 and mask.dtype == np.uint8 and d.dtype == np.float32
        assert lam.dtype == np.float32 and lam.shape == (k, ny, nx) and np.all(lam > 0)
        assert img.dtype == np.complex128 and img.shape == (ny, nx)
        assert np.all(ksp[mask == 0] == 0)
        varying += int(np.any(lam != lam[:, :1, :1]))
        res = ref.reconstruct(ksp, mask, d, lam, params["iterations"], params["lowpass_weight"])
        np.testing.assert_array_equal(res["x"], img)
        assert res["scale_c"] == scalars["scale_c"] and res["lipschitz_L"] == scalars["lipschitz_L"]
        if (case / "expected_z.npy").exists():
            np.testing.assert_array_equal(np.load(case / "expected_z.npy"), res["z"])
        assert 0.05 < np.mean(res["z"] != 0) < 0.6
    assert varying >= 2


def test_dct_dictionaries():
    sys.path.insert(0, str(HERE))
    from make_dictionaries import dct_dictionary

    for s in (3, 5):
        path = REPO / "models" / "dictionaries" / f"dct{s}.npy"
        d = np.load(path)
        assert d.dtype == np.float32 and d.shape == (s * s - 1, s, s)
        np.testing.assert_array_equal(d, dct_dictionary(s)[0].astype(np.float32))
        flat = d.reshape(s * s - 1, -1).astype(np.float64)
        np.testing.assert_allclose(flat @ flat.T, np.eye(s * s - 1) / s ** 2, atol=1e-7)  # orthogonal, norm 1/s
        np.testing.assert_allclose(flat.sum(axis=1), 0, atol=1e-6)  # no DC atom
        h = ref.filter_responses(d, 64 * s, 64 * s)
        assert np.max(np.sum(np.abs(h) ** 2, axis=0)) == pytest.approx(1.0, abs=1e-6)
        side = json.loads(path.with_suffix(".json").read_text())
        assert side["K"] == s * s - 1 and side["s"] == s and side["name"] == f"dct{s}" and side["made_by"]


@pytest.mark.parametrize("sub", ["", "validation"])
def test_example_files(sub):
    out = REPO / "examples" / "colin27" / sub
    target = np.load(out / "target.npy")
    ksp = np.load(out / "kspace.npy")
    mask = np.load(out / "mask.npy")
    assert target.dtype == ksp.dtype == np.complex64 and target.shape == ksp.shape == (256, 256)
    assert mask.dtype == np.uint8 and mask.sum() == 128 * 128 and np.all(mask[64:192, 64:192] == 1)
    assert np.all(ksp[mask == 0] == 0)
    assert np.abs(target).max() == pytest.approx(1.0, abs=1e-6)
    # the measured samples are the target's k-space plus noise of about 0.15 rms
    kfull = ref.centred_fft2(target)
    rms = np.sqrt(np.mean(np.abs(kfull) ** 2))
    noise = (ksp - kfull)[mask != 0]
    assert np.sqrt(np.mean(np.abs(noise) ** 2)) == pytest.approx(0.15 * rms, rel=0.02)
    if pathlib.Path("/usr/share/mricron/templates/ch2.nii.gz").exists():
        from make_example import make_target, read_nifti, simulate

        vol, _ = read_nifti(pathlib.Path("/usr/share/mricron/templates/ch2.nii.gz"))
        zsl, seed = (70, 2027) if sub else (90, 2026)
        t = make_target(vol, zsl)
        np.testing.assert_array_equal(t, target)
        k2, m2 = simulate(t, seed)
        np.testing.assert_array_equal(k2, ksp)
        np.testing.assert_array_equal(m2, mask)
