"""Domain randomisation of training slices and acquisition randomisation (pure NumPy/SciPy).

The training data are a handful of real volumes; a model that has only seen their contrast,
resolution and field of view learns them. :func:`augment` turns one clean complex slice
(``target`` with ``max |target| = 1`` and its head mask) into a random relative of it
*before* the acquisition is simulated. Every ingredient is a separate function with its
probability and strength in a config dict (:data:`DEFAULT`), so each can be switched off for
an ablation (probability 0). The order is

1. **geometry** (:func:`zoom`): zoom by a factor log-uniform in ``zoom_range`` about the
   centre (bilinear on the complex slice, nearest on the head mask, same output size, zero
   outside). The 8 flips/transposes stay in :mod:`train` (``train._orient``), drawn where they
   always were so that an unaugmented run is unchanged.
2. on the magnitude ``m = |target| / max``:
   - **contrast** (:func:`contrast_curve`): a random piecewise-linear transfer curve with
     3–6 knots, ``curve(0) = 0`` (the background stays background), knot values uniform in
     [0, 1] and rescaled so the largest is 1; with probability ``contrast_monotone`` the
     values are sorted (a monotone remapping), otherwise they stay in random order, which
     usually makes the curve non-monotone (contrast inversion, T1 <-> T2-like);
   - **gamma** (:func:`gamma`): ``m ** g``, ``log g`` uniform in ``log gamma_range``;
   - **bias field** (:func:`bias_field`): ``m · exp(b)``, ``b`` a random quadratic in
     ``u, v`` normalised by ``Σ|c|`` times an amplitude uniform in ``[0, bias_amplitude]``;
   - **background** (:func:`background`): with a small probability a faint smooth random
     texture or a scalp/skull-like ring (a band at a random distance outside the head mask,
     modulated by the texture), at most ``background_level`` of the maximum, added only
     outside the head mask; otherwise the background stays as it was (zero);
   - **blur** (:func:`blur`): Gaussian, ``sigma`` uniform in ``[0, blur_sigma]`` px (lower
     resolution);
3. **phase** (:func:`random_phase`): a new smooth phase ``φ = (π/2) p(u, v)``, ``p`` a random
   quadratic in ``u, v ∈ linspace(-1, 1)`` normalised by ``Σ|c|`` — the rule of
   ``sparsemap-host export`` — replaces the slice's phase;
4. renormalise so that ``max |target| = 1``. The head mask follows the geometry only.

Acquisition: :func:`variable_density_mask` is the 1-D variable-density ky-line mask of the
host (``host/src/simulate.rs``, ``MaskKind::VariableDensity1d``: fully sampled central lines,
the rest drawn without replacement with weight ``(1 - d)^2``, Efraimidis–Spirakis), and
:func:`random_vd_mask` draws its acceleration and centre fraction.

All randomness comes from the ``np.random.Generator`` passed in: same generator state, same
result.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

#: The augmentation of the ``multisource`` preset. ``*_prob`` are probabilities per slice.
DEFAULT = {
    "zoom_prob": 0.5, "zoom_range": (0.8, 1.25),
    "contrast_prob": 0.7, "contrast_knots": (3, 6), "contrast_monotone": 0.5,
    "gamma_prob": 1.0, "gamma_range": (0.6, 1.6),
    "bias_prob": 1.0, "bias_amplitude": 0.4,
    "background_prob": 0.2, "background_level": 0.15,
    "blur_prob": 0.3, "blur_sigma": 1.5,
    "phase_prob": 1.0,
}

#: Everything off: :func:`augment` returns the slice unchanged (up to the renormalisation).
OFF = {k: (0.0 if k.endswith("_prob") else v) for k, v in DEFAULT.items()}

#: Weight exponent of the 1-D variable-density mask (the host's ``VD1D_POWER``).
VD1D_POWER = 2


def _coords(n: int) -> np.ndarray:
    return np.linspace(-1.0, 1.0, n)


def _quadratic(rng: np.random.Generator, shape) -> np.ndarray:
    """``(c0 + c1 u + c2 v + c3 u² + c4 u v + c5 v²) / Σ|c|`` with ``c`` uniform in [-1, 1)
    (so ``|p| <= 1``), ``u`` along rows and ``v`` along columns, ``linspace(-1, 1)``."""
    c = rng.uniform(-1.0, 1.0, 6)
    u, v = _coords(shape[0])[:, None], _coords(shape[1])[None, :]
    p = c[0] + c[1] * u + c[2] * v + c[3] * u * u + c[4] * u * v + c[5] * v * v
    norm = np.sum(np.abs(c))
    return p / norm if norm > 0 else np.zeros(shape)


def zoom(target: np.ndarray, head: np.ndarray, factor: float):
    """Zoom by ``factor`` about the centre, same output size, zero outside: bilinear on the
    complex ``target``, nearest neighbour on ``head``."""
    ny, nx = target.shape
    r = ((np.arange(ny) - (ny - 1) / 2) / factor + (ny - 1) / 2)[:, None]
    c = ((np.arange(nx) - (nx - 1) / 2) / factor + (nx - 1) / 2)[None, :]
    coords = np.stack(np.broadcast_arrays(r, c))
    def warp(x, order):
        return ndimage.map_coordinates(x, coords, order=order, mode="constant", cval=0.0)
    z = warp(target.real.astype(np.float64), 1) + 1j * warp(target.imag.astype(np.float64), 1)
    return z, warp(head.astype(np.float64), 0).astype(head.dtype)


def contrast_curve(m: np.ndarray, rng: np.random.Generator, knots=(3, 6), monotone: float = 0.5):
    """A random piecewise-linear transfer curve applied to ``m`` in [0, 1]: ``k`` knots
    (``k`` uniform in ``knots``, inclusive) at 0, ``k - 2`` sorted uniform positions and 1;
    values 0 at 0, the others uniform in [0, 1] rescaled so the largest is 1, sorted with
    probability ``monotone`` (else usually non-monotone: contrast inversion)."""
    k = int(rng.integers(knots[0], knots[1] + 1))
    xs = np.concatenate([[0.0], np.sort(rng.uniform(0.0, 1.0, k - 2)), [1.0]])
    ys = rng.uniform(0.0, 1.0, k - 1)
    if rng.random() < monotone:
        ys = np.sort(ys)
    ys = np.concatenate([[0.0], ys / max(ys.max(), 1e-6)])
    return np.interp(m, xs, ys)


def gamma(m: np.ndarray, rng: np.random.Generator, gamma_range=(0.6, 1.6)):
    """``m ** g``, ``log g`` uniform in ``log gamma_range`` (``m >= 0``; 0 stays 0)."""
    g = np.exp(rng.uniform(np.log(gamma_range[0]), np.log(gamma_range[1])))
    return m ** g


def bias_field(m: np.ndarray, rng: np.random.Generator, amplitude: float = 0.4):
    """``m · exp(a p(u, v))``: ``p`` a random quadratic with ``|p| <= 1`` (:func:`_quadratic`),
    ``a`` uniform in ``[0, amplitude]`` — a smooth multiplicative field within ``±a`` in log."""
    a = rng.uniform(0.0, amplitude)
    return m * np.exp(a * _quadratic(rng, m.shape))


def smooth_texture(shape, rng: np.random.Generator, sigma_range=(4.0, 16.0)) -> np.ndarray:
    """Gaussian-filtered white noise rescaled to [0, 1] (smoothness uniform in ``sigma_range`` px)."""
    t = ndimage.gaussian_filter(rng.standard_normal(shape), rng.uniform(*sigma_range), mode="wrap")
    t -= t.min()
    return t / max(t.max(), 1e-12)


def background(m: np.ndarray, head: np.ndarray, rng: np.random.Generator, level: float = 0.15):
    """Adds, outside the head mask only, a faint structure of peak ``U(0, level) · max(m)``:
    either a smooth random texture over the whole background or a ring (a band of random
    radius and width at the distance from the head mask, modulated by a texture), like scalp,
    skull and fat that a skull-stripped slice does not have."""
    outside = head <= 0
    if not np.any(outside) or not np.any(~outside):
        return m
    amp = rng.uniform(0.0, level) * m.max()
    texture = smooth_texture(m.shape, rng)
    if rng.random() < 0.5:
        structure = texture
    else:
        dist = ndimage.distance_transform_edt(outside)
        r0, width = rng.uniform(2.0, 12.0), rng.uniform(1.5, 6.0)
        structure = np.exp(-(((dist - r0) / width) ** 2)) * (0.5 + 0.5 * texture)
    return m + amp * structure * outside


def blur(m: np.ndarray, rng: np.random.Generator, sigma: float = 1.5):
    """Gaussian blur with ``sigma`` uniform in ``[0, sigma]`` px (a lower resolution)."""
    s = rng.uniform(0.0, sigma)
    return ndimage.gaussian_filter(m, s, mode="constant") if s > 0 else m


def random_phase(shape, rng: np.random.Generator) -> np.ndarray:
    """The export's synthetic phase rule: ``φ = (π/2) p(u, v)`` (:func:`_quadratic`), radians."""
    return 0.5 * np.pi * _quadratic(rng, shape)


def augment(target: np.ndarray, head: np.ndarray, rng: np.random.Generator, cfg: dict | None = None):
    """One random relative of the complex slice ``target`` (module docs): returns
    ``(target complex64 with max |target| = 1, head mask of head's dtype)``, same shape.
    ``cfg`` overrides entries of :data:`DEFAULT`."""
    c = dict(DEFAULT, **(cfg or {}))

    def on(name):
        p = c[name + "_prob"]
        return p > 0 and rng.random() < p

    z = np.asarray(target, np.complex128)
    if on("zoom"):
        lo, hi = np.log(c["zoom_range"][0]), np.log(c["zoom_range"][1])
        z, head = zoom(z, head, float(np.exp(rng.uniform(lo, hi))))
    m = np.abs(z)
    peak = m.max()
    if peak <= 0:
        return np.asarray(target, np.complex64), head
    m = m / peak
    if on("contrast"):
        m = contrast_curve(m, rng, c["contrast_knots"], c["contrast_monotone"])
    if on("gamma"):
        m = gamma(m, rng, c["gamma_range"])
    if on("bias"):
        m = bias_field(m, rng, c["bias_amplitude"])
    if on("background"):
        m = background(m, head, rng, c["background_level"])
    if on("blur"):
        m = blur(m, rng, c["blur_sigma"])
    phase = np.exp(1j * random_phase(m.shape, rng)) if on("phase") else np.exp(1j * np.angle(z))
    peak = m.max()
    if peak <= 0:  # a curve can in principle map the whole slice to ~0: keep the original
        return np.asarray(target, np.complex64), head
    return (m / peak * phase).astype(np.complex64), head


def variable_density_mask(n: int, rng: np.random.Generator, acceleration: float, centre_lines: int) -> np.ndarray:
    """``[n, n]`` uint8 mask of whole ky rows (rows = axis 0): ``round(n / acceleration)``
    rows, the ``centre_lines`` around ``n/2`` always, the rest drawn without replacement with
    weight ``(1 - d)^2``, ``d = |ky - n/2| / (n/2 + 1)`` (the host's
    ``MaskKind::VariableDensity1d``, with NumPy's generator)."""
    lines = int(round(n / acceleration))
    if not 1 <= centre_lines <= lines <= n:
        raise ValueError(f"variable-density mask: {centre_lines} centre lines, {lines} lines of {n}")
    c0 = n // 2 - centre_lines // 2
    rows = np.zeros(n, bool)
    rows[c0:c0 + centre_lines] = True
    rest = np.flatnonzero(~rows)
    d = np.abs(rest - n // 2) / (n / 2 + 1)
    keys = np.log(1.0 - rng.random(rest.size)) / (1.0 - d) ** VD1D_POWER  # Efraimidis–Spirakis
    rows[rest[np.argsort(-keys, kind="stable")[:lines - centre_lines]]] = True
    return np.repeat(rows[:, None], n, axis=1).astype(np.uint8)


def random_vd_mask(n: int, rng: np.random.Generator, acceleration=(2.0, 4.0), centre=(0.08, 0.16)) -> np.ndarray:
    """:func:`variable_density_mask` with acceleration uniform in ``acceleration`` and a fully
    sampled centre of a fraction uniform in ``centre`` of the lines (even, at least 2)."""
    acc = rng.uniform(*acceleration)
    lines = int(round(n / acc))
    centre_lines = min(max(2, int(round(rng.uniform(*centre) * n / 2)) * 2), lines)
    return variable_density_mask(n, rng, acc, centre_lines)
