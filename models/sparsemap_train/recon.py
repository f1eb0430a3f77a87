"""JAX implementation of the sparsemap reconstruction (docs/design.md §3.2, §3.3, §3.5–§3.7).

Same maths, same order of operations as the float64 NumPy reference
(``models/reference/sparsemap_reference.py``) and the Rust core, written with ``jax.numpy`` so
that it is differentiable end to end (with respect to the Lambda maps, the low-pass weight
``a`` and the dictionary) and can be unrolled inside a training loss.

Precision follows the inputs: complex128 / float64 when JAX runs with ``jax_enable_x64`` and
the caller passes float64 data (the tests compare with the reference to 1e-10 relative),
complex64 / float32 otherwise (what the Rust core computes; ~1e-5 relative to float64).

Differences from the reference that do not change values:

* The complex soft-threshold uses the "double where" form so that its gradient is finite
  where ``|u| = 0`` (the value is exactly the reference's).
* The scale ``c = 1 / p99(|F^H y|)`` is a data normalisation: it is computed exactly as
  §3.7 item 2 but treated as a constant for differentiation (``stop_gradient``).
* No input validation beyond shapes (the reference and the Rust core validate); this module
  is called on data the training pipeline made.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

#: Defaults of docs/design.md §3.7 (``ReconConfig`` in crates/core/src/recon.rs).
ITERATIONS = 64
LOWPASS_WEIGHT = 1.0
#: Percentile of ``|F^H y|`` that is scaled to one (§3.6).
SCALE_PERCENTILE = 0.99
#: Background gate (§3.7 item 7): default threshold, Gaussian width (pixels), outer fraction.
BACKGROUND_GATE = 8.0
GATE_SMOOTHING = 2.0
NOISE_OUTER_FRACTION = 0.1

_AX = (-2, -1)


def centred_fft2(x):
    """Unitary centred 2-D DFT over the last two axes: ``fftshift(fft2(ifftshift(x))) / sqrt(N)``."""
    ny, nx = x.shape[-2:]
    return jnp.fft.fftshift(jnp.fft.fft2(jnp.fft.ifftshift(x, axes=_AX), axes=_AX), axes=_AX) / float(np.sqrt(ny * nx))


def centred_ifft2(k):
    """Inverse (= adjoint) of :func:`centred_fft2`: ``fftshift(ifft2(ifftshift(k))) * sqrt(N)``."""
    ny, nx = k.shape[-2:]
    return jnp.fft.fftshift(jnp.fft.ifft2(jnp.fft.ifftshift(k, axes=_AX), axes=_AX), axes=_AX) * float(np.sqrt(ny * nx))


def pad_centred(d, ny: int, nx: int):
    """Zero-pad filters ``d[K, s, s]`` to ``[K, N_y, N_x]`` with tap ``(i, j)`` at
    ``((i - s//2) mod N_y, (j - s//2) mod N_x)`` (§3.7 item 4). Differentiable in ``d``."""
    k, s, _ = d.shape
    c = s // 2
    rows = (np.arange(s) - c) % ny
    cols = (np.arange(s) - c) % nx
    p = jnp.zeros((k, ny, nx), dtype=d.dtype)
    return p.at[:, rows[:, None], cols[None, :]].add(d)


def filter_responses(d, ny: int, nx: int):
    """``h_k = fftshift(fft2(pad(d_k)))`` (unnormalised DFT, centred layout), ``[K, N_y, N_x]``."""
    p = pad_centred(d, ny, nx)
    return jnp.fft.fftshift(jnp.fft.fft2(p.astype(_complex_of(p.dtype)), axes=_AX), axes=_AX)


def lowpass_filter(ny: int, nx: int, a, dtype=jnp.float64):
    """``G(ky, kx) = 1 / (1 + a (4 - 2cos(2 pi (ky - N_y/2)/N_y) - 2cos(2 pi (kx - N_x/2)/N_x)))``
    on the centred grid (§3.7 item 3). Differentiable in ``a``."""
    ky = np.arange(ny, dtype=np.float64)[:, None]
    kx = np.arange(nx, dtype=np.float64)[None, :]
    lap = 4.0 - 2.0 * np.cos(2.0 * np.pi * (ky - ny // 2) / ny) - 2.0 * np.cos(2.0 * np.pi * (kx - nx // 2) / nx)
    return 1.0 / (1.0 + jnp.asarray(a, dtype) * jnp.asarray(lap, dtype))


def percentile99(values):
    """99th percentile, linear interpolation between order statistics (NumPy ``method="linear"``):
    ``r = 0.99 (N - 1)``, ``p = v_floor(r) + (r - floor(r)) (v_ceil(r) - v_floor(r))``."""
    v = jnp.sort(jnp.ravel(values))
    n = v.shape[0]
    r = SCALE_PERCENTILE * (n - 1)
    lo = int(np.floor(r))
    hi = int(np.ceil(r))
    frac = r - lo
    return v[lo] + frac * (v[hi] - v[lo])


def soft(u, thr):
    """Complex soft-threshold ``u * max(0, 1 - thr/|u|)``, exactly 0 where ``u = 0``; gradient finite."""
    mag2 = jnp.real(u) ** 2 + jnp.imag(u) ** 2
    nonzero = mag2 > 0
    mag = jnp.sqrt(jnp.where(nonzero, mag2, 1.0))
    shrink = jnp.maximum(0.0, 1.0 - thr / mag)
    return jnp.where(nonzero, u * shrink, jnp.zeros_like(u))


def _complex_of(dtype):
    return jnp.complex128 if jnp.dtype(dtype) in (jnp.float64, jnp.complex128) else jnp.complex64


def _real_of(dtype):
    return jnp.float64 if jnp.dtype(dtype) in (jnp.float64, jnp.complex128) else jnp.float32


def prepare(kspace, mask, dictionary, lowpass_weight=LOWPASS_WEIGHT):
    """Items 1–4 of §3.7 (everything before the solver), as a dict of arrays:

    ``m`` (0/1 real mask), ``y`` (masked, scaled k-space), ``c`` (scale), ``g`` (low-pass
    response ``G``), ``y_prime = (1 - G) y``, ``h`` (responses), ``L`` (Lipschitz constant over
    the sampled frequencies), ``x0 = F^H y`` (scaled zero-filled image).

    The working precision is that of ``kspace`` (complex64 or complex128).
    """
    y = jnp.asarray(kspace)
    cdt = _complex_of(y.dtype)
    rdt = _real_of(y.dtype)
    y = y.astype(cdt)
    ny, nx = y.shape
    m = (jnp.asarray(mask) != 0)
    y = jnp.where(m, y, jnp.zeros_like(y))
    mr = m.astype(rdt)
    x0 = centred_ifft2(y)
    p = jax.lax.stop_gradient(percentile99(jnp.abs(x0)))
    c = 1.0 / p
    y = c * y
    x0 = c * x0
    g = lowpass_filter(ny, nx, lowpass_weight, rdt)
    y_prime = (1.0 - g) * y
    h = filter_responses(jnp.asarray(dictionary, rdt), ny, nx)
    energy = jnp.sum(jnp.real(h) ** 2 + jnp.imag(h) ** 2, axis=0)
    big_l = jnp.max(jnp.where(m, energy, jnp.zeros_like(energy)))
    return {"m": mr, "y": y, "c": c, "g": g, "y_prime": y_prime, "h": h, "L": big_l, "x0": x0}


def synthesis(z, h, m):
    """``A D z = M (.) sum_k h_k (.) F z_k``."""
    return m * jnp.sum(h * centred_fft2(z), axis=0)


def synthesis_adjoint(r, h, m):
    """``(A D)^H r = [F^H(conj(h_k) (.) M (.) r)]_k``."""
    return centred_ifft2(jnp.conj(h) * (m * r)[None])


def fista(y, h, m, lam_maps, tau, iterations: int, unroll: int = 1):
    """Fixed-iteration FISTA of §3.5 (``z^0 = 0``, ``t_1 = 1``); returns ``z^T`` ``[K, N_y, N_x]``.

    Written as a ``lax.scan`` over ``T`` steps so that reverse-mode differentiation through
    all iterations works (memory: the carry of every step is stored).
    """
    k = h.shape[0]
    ny, nx = y.shape
    z0 = jnp.zeros((k, ny, nx), dtype=y.dtype)
    thr = tau * lam_maps
    rdt = _real_of(y.dtype)

    def step(carry, _):
        z_prev, v, t = carry
        r = synthesis(v, h, m) - y
        grad = synthesis_adjoint(r, h, m)
        z = soft(v - tau * grad, thr)
        t_next = (1.0 + jnp.sqrt(1.0 + 4.0 * t * t)) / 2.0
        v = z + ((t - 1.0) / t_next) * (z - z_prev)
        return (z, v, t_next), None

    (z, _, _), _ = jax.lax.scan(step, (z0, z0, jnp.asarray(1.0, rdt)), None, length=iterations, unroll=unroll)
    return z


def noise_variance(y, m):
    """``sigma^2`` of one k-space sample (§3.7 item 7, as the reference's ``noise_variance``):
    ``median |y|^2 / ln 2`` over the sampled positions whose squared centred radius is at least
    the order statistic ``floor(0.9 (n - 1))`` of the ``n`` sampled ones. Written with fixed
    shapes (the mask may be traced): unselected entries sort to the ends."""
    ny, nx = y.shape
    u = np.arange(ny) - ny // 2
    v = np.arange(nx) - nx // 2
    r2 = jnp.asarray((u[:, None] ** 2 + v[None, :] ** 2).ravel(), jnp.float32)
    sampled = jnp.ravel(m) != 0
    count = jnp.sum(sampled)
    radii = jnp.sort(jnp.where(sampled, r2, -1.0))  # unsampled first
    rank = jnp.floor((1.0 - NOISE_OUTER_FRACTION) * (count - 1)).astype(jnp.int32)
    threshold = radii[r2.size - count + rank]
    outer = sampled & (r2 >= threshold)
    n_outer = jnp.sum(outer)
    power = jnp.abs(jnp.ravel(y)) ** 2
    values = jnp.sort(jnp.where(outer, power, jnp.inf))  # selected first
    r = 0.5 * (n_outer - 1)
    lo = jnp.floor(r).astype(jnp.int32)
    hi = jnp.minimum(lo + 1, n_outer - 1)
    median = values[lo] + (r - lo) * (values[hi] - values[lo])
    return jnp.where(count > 0, median / np.log(2.0), 0.0)


def background_gate(y, m, g, kappa, smoothing=GATE_SMOOTHING):
    """The gate ``clamp((E / s2 - kappa) / kappa, 0, 1)`` of §3.7 item 7 on the scaled problem
    (the reference's ``background_gate``; the noise estimate is a data statistic, no gradient).
    ``smoothing``: the Gaussian's width in pixels (the runtime's is :data:`GATE_SMOOTHING`;
    other values are for ``models/tools/gate_kappa_scan.py``)."""
    ny, nx = y.shape
    rdt = _real_of(y.dtype)
    s2 = jax.lax.stop_gradient(noise_variance(y, m)) * jnp.sum(jnp.where(m != 0, g ** 2, 0.0)) / (ny * nx)
    energy = jnp.abs(centred_ifft2(g * y)) ** 2
    u = (np.arange(ny) - ny // 2) / ny
    v = (np.arange(nx) - nx // 2) / nx
    gamma = jnp.asarray(np.exp(-2.0 * np.pi ** 2 * smoothing ** 2 * (u[:, None] ** 2 + v[None, :] ** 2)), rdt)
    smoothed = jnp.real(centred_ifft2(gamma * centred_fft2(energy.astype(y.dtype))))
    gate = jnp.clip((smoothed / s2 - kappa) / kappa, 0.0, 1.0)
    return jnp.where(s2 > 0, gate, jnp.ones_like(gate))


def reconstruct(kspace, mask, dictionary, lam_maps, iterations: int = ITERATIONS,
                lowpass_weight=LOWPASS_WEIGHT, prepared=None, background_gate_kappa=None):
    """Reconstruction of docs/design.md §3.7; returns a dict with ``x`` (image on the scale of
    ``F^H y``), ``x_low`` (same scale), ``z`` (codes of the scaled problem), ``c``, ``L``.

    ``lam_maps``: Lambda broadcastable to ``[K, N_y, N_x]`` (scaled-problem units).
    ``prepared``: optionally the result of :func:`prepare` for the same inputs (saves work
    when the Lambda network needed it first). ``background_gate_kappa``: item 7's threshold,
    ``None`` for no gate.
    """
    pr = prepared if prepared is not None else prepare(kspace, mask, dictionary, lowpass_weight)
    h, m, big_l = pr["h"], pr["m"], pr["L"]
    rdt = _real_of(pr["y"].dtype)
    lam = jnp.broadcast_to(jnp.asarray(lam_maps, rdt), h.shape)
    tau = 1.0 / big_l
    z = fista(pr["y_prime"], h, m, lam, tau, iterations)
    y_low = pr["g"] * pr["y"]
    x = centred_ifft2(y_low + jnp.sum(h * centred_fft2(z), axis=0)) / pr["c"]
    x_low = centred_ifft2(y_low) / pr["c"]
    if background_gate_kappa is not None:
        x = background_gate(pr["y"], pr["m"], pr["g"], background_gate_kappa) * x
    return {"x": x, "x_low": x_low, "z": z, "c": pr["c"], "L": big_l}
