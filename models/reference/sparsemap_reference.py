"""Independent float64 NumPy reference of the sparsemap reconstruction (docs/design.md §3).

Written from the maths in docs/design.md §3.2, §3.3, §3.5, §3.6 and §3.7, deliberately
plain: explicit ``fftshift``/``ifftshift`` around ``np.fft``, no modulation tricks, every
intermediate in float64 / complex128. The Rust implementation in ``crates/`` is tested
against the fixtures this module produces (``models/reference/make_fixtures.py``).

Notation (all arrays row-major ``[N_y, N_x]``, k-space centred: DC at ``[N_y/2, N_x/2]``):

* ``F x = fftshift(fft2(ifftshift(x))) / sqrt(N)``, ``N = N_y N_x`` (unitary, centred);
  ``F^H = F^{-1} = fftshift(ifft2(ifftshift(.))) * sqrt(N)``.
* Dictionary ``d[K, s, s]`` (s odd, real). ``(D z) = sum_k d_k (*) z_k`` with circular
  *convolution* whose origin is the centre tap ``c = s // 2``::

      (d_k (*) z)[n_y, n_x] = sum_{i,j} d_k[i, j] z[(n_y - (i - c)) mod N_y, (n_x - (j - c)) mod N_x]

  i.e. ``sum_{i,j} d_k[i, j] * np.roll(z, (i - c, j - c), axis=(0, 1))``.
* ``h_k = fftshift(fft2(pad(d_k)))``, ``pad`` putting tap ``(i, j)`` at
  ``((i - c) mod N_y, (j - c) mod N_x)``. Then ``F(d_k (*) z) = h_k (.) F z``.
* ``A D z = M (.) sum_k h_k (.) F z_k`` (synthesis operator, codes -> k-space) and its
  adjoint ``(A D)^H r = [F^H(conj(h_k) (.) M (.) r)]_k``.
"""

from __future__ import annotations

import numbers

import numpy as np

__all__ = [
    "centred_fft2",
    "centred_ifft2",
    "pad_centred",
    "filter_responses",
    "circular_conv",
    "lowpass_filter",
    "percentile99",
    "lipschitz",
    "soft",
    "synthesis",
    "synthesis_adjoint",
    "objective",
    "fista",
    "reconstruct",
    "LOWPASS_WEIGHT",
    "ITERATIONS",
]

#: Default constants of docs/design.md §3.7 (``ReconConfig``).
ITERATIONS = 64
LOWPASS_WEIGHT = 1.0
#: Background gate (§3.7 item 7): default threshold kappa, Gaussian width (pixels), and the
#: outermost fraction of the sampled positions the noise is estimated from.
BACKGROUND_GATE = 8.0
GATE_SMOOTHING = 2.0
NOISE_OUTER_FRACTION = 0.1


# ----------------------------------------------------------------------------- §3.2 FFT


def centred_fft2(x: np.ndarray) -> np.ndarray:
    """Unitary centred 2-D DFT over the last two axes.

    ``F x = fftshift(fft2(ifftshift(x))) / sqrt(N_y N_x)``.
    Leading axes (e.g. the filter axis K) are batched.
    """
    x = np.asarray(x, dtype=np.complex128)
    ny, nx = x.shape[-2:]
    ax = (-2, -1)
    return np.fft.fftshift(np.fft.fft2(np.fft.ifftshift(x, axes=ax), axes=ax), axes=ax) / np.sqrt(ny * nx)


def centred_ifft2(k: np.ndarray) -> np.ndarray:
    """Inverse (= adjoint) of :func:`centred_fft2` over the last two axes.

    ``F^H k = fftshift(ifft2(ifftshift(k))) * sqrt(N_y N_x)``.
    """
    k = np.asarray(k, dtype=np.complex128)
    ny, nx = k.shape[-2:]
    ax = (-2, -1)
    return np.fft.fftshift(np.fft.ifft2(np.fft.ifftshift(k, axes=ax), axes=ax), axes=ax) * np.sqrt(ny * nx)


# ----------------------------------------------------------------------- §3.3 dictionary


def _check_dictionary(d, ny: int | None = None, nx: int | None = None) -> np.ndarray:
    d = np.asarray(d)
    if d.ndim != 3:
        raise ValueError(f"dictionary must have shape [K, s, s], got shape {d.shape}")
    k, s1, s2 = d.shape
    if k < 1:
        raise ValueError("dictionary must hold at least one filter (K >= 1)")
    if s1 != s2:
        raise ValueError(f"dictionary filters must be square, got {s1}x{s2}")
    if s1 % 2 != 1:
        raise ValueError(f"dictionary filter size must be odd, got {s1}")
    if np.iscomplexobj(d):
        raise ValueError("dictionary filters must be real")
    d = d.astype(np.float64)
    if not np.all(np.isfinite(d)):
        raise ValueError("dictionary contains non-finite values")
    if ny is not None and (s1 > ny or s1 > nx):
        raise ValueError(f"filter size {s1} exceeds the image grid {ny}x{nx}")
    return d


def pad_centred(d: np.ndarray, ny: int, nx: int) -> np.ndarray:
    """Zero-pad filters ``d[K, s, s]`` to ``[K, N_y, N_x]`` with the centre tap at index (0, 0).

    Tap ``(i, j)`` goes to ``((i - s//2) mod N_y, (j - s//2) mod N_x)`` (§3.7 item 4).
    """
    d = _check_dictionary(d, ny, nx)
    k, s, _ = d.shape
    c = s // 2
    p = np.zeros((k, ny, nx), dtype=np.float64)
    for i in range(s):
        for j in range(s):
            p[:, (i - c) % ny, (j - c) % nx] += d[:, i, j]
    return p


def filter_responses(d: np.ndarray, ny: int, nx: int) -> np.ndarray:
    """Frequency responses ``h_k = fftshift(fft2(pad(d_k)))`` in the centred layout, ``[K, N_y, N_x]``.

    Unnormalised DFT, so that ``F(d_k (*) z) = h_k (.) F z`` (convolution theorem).
    """
    p = pad_centred(d, ny, nx)
    return np.fft.fftshift(np.fft.fft2(p, axes=(-2, -1)), axes=(-2, -1))


def circular_conv(d2: np.ndarray, z: np.ndarray) -> np.ndarray:
    """Direct circular convolution of one s x s filter with an image, origin at the centre tap.

    ``sum_{i,j} d[i, j] * roll(z, (i - c, j - c))``, ``c = s // 2`` — the spatial-domain
    definition of ``d (*) z``, used by the tests to pin :func:`filter_responses`.
    """
    d2 = np.asarray(d2, dtype=np.float64)
    z = np.asarray(z, dtype=np.complex128)
    s = d2.shape[0]
    c = s // 2
    out = np.zeros_like(z)
    for i in range(s):
        for j in range(s):
            out += d2[i, j] * np.roll(z, (i - c, j - c), axis=(0, 1))
    return out


def lowpass_filter(ny: int, nx: int, a: float) -> np.ndarray:
    """Centred-grid low-pass response ``G`` of ``(I + a grad^H grad)^{-1}`` (§3.7 item 3).

    ``G(ky, kx) = 1 / (1 + a (4 - 2 cos(2 pi (ky - N_y/2)/N_y) - 2 cos(2 pi (kx - N_x/2)/N_x)))``
    with ``ky in 0..N_y-1``, ``kx in 0..N_x-1`` (centred indices; ``G = 1`` at DC).
    """
    a = _check_nonneg_scalar(a, "lowpass_weight")
    ky = np.arange(ny, dtype=np.float64)[:, None]
    kx = np.arange(nx, dtype=np.float64)[None, :]
    lap = 4.0 - 2.0 * np.cos(2.0 * np.pi * (ky - ny // 2) / ny) - 2.0 * np.cos(2.0 * np.pi * (kx - nx // 2) / nx)
    return 1.0 / (1.0 + a * lap)


# --------------------------------------------------------------------- §3.6/§3.7 scalars


def percentile99(values: np.ndarray) -> float:
    """99th percentile of all values, linear interpolation (NumPy ``method="linear"``).

    Sort ascending ``v_0..v_{N-1}``, ``r = 0.99 (N - 1)``,
    ``p = v_floor(r) + (r - floor(r)) (v_ceil(r) - v_floor(r))``.
    """
    v = np.asarray(values, dtype=np.float64).ravel()
    if v.size == 0:
        raise ValueError("percentile of an empty array")
    return float(np.percentile(v, 99.0))


def lipschitz(h: np.ndarray, mask: np.ndarray) -> float:
    """``L = max_{w : M(w) = 1} sum_k |h_k(w)|^2`` — the maximum over the *sampled* frequencies only.

    Exact squared operator norm of ``M F D`` (diagonal per frequency).
    """
    m = np.asarray(mask) != 0
    if not m.any():
        raise ValueError("mask samples no frequency")
    energy = np.sum(np.abs(np.asarray(h)) ** 2, axis=0)
    return float(np.max(energy[m]))


# ---------------------------------------------------------------------------- §3.5 FISTA


def soft(u: np.ndarray, a) -> np.ndarray:
    """Complex soft-threshold ``soft(u, a) = u * max(0, 1 - a/|u|)``, 0 where ``u = 0``.

    Proximal map of ``a |.|`` on complex numbers (shrinks the magnitude, keeps the phase);
    ``a`` broadcasts against ``u`` and must be ``>= 0``. ``|u| <= a`` gives exactly 0.
    """
    u = np.asarray(u, dtype=np.complex128)
    a = np.asarray(a, dtype=np.float64)
    mag = np.abs(u)
    safe = np.where(mag > 0, mag, 1.0)
    shrink = np.maximum(0.0, 1.0 - a / safe)
    return np.where(mag > 0, u * shrink, 0.0 + 0.0j)


def synthesis(z: np.ndarray, h: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """``A D z = M (.) sum_k h_k (.) F z_k`` — codes ``[K, N_y, N_x]`` to centred k-space ``[N_y, N_x]``."""
    m = (np.asarray(mask) != 0).astype(np.float64)
    return m * np.sum(h * centred_fft2(z), axis=0)


def synthesis_adjoint(r: np.ndarray, h: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """``(A D)^H r = [F^H(conj(h_k) (.) M (.) r)]_k`` — k-space ``[N_y, N_x]`` to codes ``[K, N_y, N_x]``."""
    m = (np.asarray(mask) != 0).astype(np.float64)
    return centred_ifft2(np.conj(h) * (m * np.asarray(r, dtype=np.complex128))[None])


def objective(z: np.ndarray, y: np.ndarray, h: np.ndarray, mask: np.ndarray, lam_maps: np.ndarray) -> float:
    """Objective of (P): ``1/2 ||A D z - y||^2 + sum_k ||Lambda_k (.) z_k||_1``."""
    r = synthesis(z, h, mask) - y
    return float(0.5 * np.sum(np.abs(r) ** 2) + np.sum(lam_maps * np.abs(z)))


def fista(y: np.ndarray, h: np.ndarray, mask: np.ndarray, lam_maps: np.ndarray, tau: float, iterations: int,
          callback=None) -> np.ndarray:
    """Fixed-iteration FISTA of docs/design.md §3.5 for (P); returns ``z^T`` ``[K, N_y, N_x]``.

    ::

        z^0 = 0, v^1 = z^0, t_1 = 1
        for i = 1..T:
            r       = M (.) sum_k h_k (.) F v_k - y
            g_k     = F^H(conj(h_k) (.) M (.) r)
            z^i_k   = soft(v_k - tau g_k, tau Lambda_k)
            t_{i+1} = (1 + sqrt(1 + 4 t_i^2)) / 2
            v^{i+1} = z^i + ((t_i - 1) / t_{i+1}) (z^i - z^{i-1})

    ``y`` is the (already masked) k-space the codes are fitted to, ``lam_maps`` are the
    ``[K, N_y, N_x]`` thresholds Lambda (the solver uses ``tau * Lambda``).
    ``callback(i, z)`` (optional) is called after each iteration with ``z^i``.
    """
    k = h.shape[0]
    ny, nx = y.shape
    z_prev = np.zeros((k, ny, nx), dtype=np.complex128)  # z^{i-1}
    v = z_prev.copy()                                      # v^1 = z^0
    t = 1.0
    thr = tau * np.asarray(lam_maps, dtype=np.float64)
    for i in range(1, iterations + 1):
        r = synthesis(v, h, mask) - y
        g = synthesis_adjoint(r, h, mask)
        z = soft(v - tau * g, thr)
        t_next = (1.0 + np.sqrt(1.0 + 4.0 * t * t)) / 2.0
        v = z + ((t - 1.0) / t_next) * (z - z_prev)
        z_prev, t = z, t_next
        if callback is not None:
            callback(i, z)
    return z_prev


# -------------------------------------------------------------------- §3.7 reconstruction


def _check_nonneg_scalar(a, name: str) -> float:
    if isinstance(a, (bool, np.bool_)) or not isinstance(a, (numbers.Real, np.floating, np.integer)):
        raise ValueError(f"{name} must be a real number, got {a!r}")
    a = float(a)
    if not np.isfinite(a) or a < 0:
        raise ValueError(f"{name} must be finite and >= 0, got {a}")
    return a


def lambda_maps(lam, k: int, ny: int, nx: int) -> np.ndarray:
    """Broadcast Lambda (scalar, ``[K]`` or ``[K, N_y, N_x]``) to float64 maps ``[K, N_y, N_x]``.

    Negative or non-finite values are errors.
    """
    arr = np.asarray(lam)
    if np.iscomplexobj(arr) or not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
        raise ValueError(f"lambda must be real numbers, got dtype {arr.dtype}")
    arr = arr.astype(np.float64)
    if arr.ndim == 0:
        maps = np.full((k, ny, nx), float(arr))
    elif arr.ndim == 1:
        if arr.shape[0] != k:
            raise ValueError(f"lambda vector has length {arr.shape[0]}, expected K = {k}")
        maps = np.broadcast_to(arr[:, None, None], (k, ny, nx)).copy()
    elif arr.ndim == 3:
        if arr.shape != (k, ny, nx):
            raise ValueError(f"lambda maps have shape {arr.shape}, expected {(k, ny, nx)}")
        maps = arr.copy()
    else:
        raise ValueError(f"lambda must be a scalar, [K] or [K, N_y, N_x], got shape {arr.shape}")
    if not np.all(np.isfinite(maps)):
        raise ValueError("lambda contains non-finite values")
    if np.any(maps < 0):
        raise ValueError("lambda contains negative values")
    return maps


def noise_variance(y: np.ndarray, m: np.ndarray) -> float:
    """``sigma^2`` of one k-space sample of ``y`` (§3.7 item 7): ``median |y|^2 / ln 2`` over the
    sampled positions whose squared centred radius is at least the order statistic
    ``floor(0.9 (n - 1))`` of the ``n`` sampled squared radii. 0 if nothing is sampled."""
    ny, nx = y.shape
    u = np.arange(ny) - ny // 2
    v = np.arange(nx) - nx // 2
    r2 = u[:, None] ** 2 + v[None, :] ** 2
    radii = r2[m]
    if radii.size == 0:
        return 0.0
    threshold = np.sort(radii)[int(np.floor((1.0 - NOISE_OUTER_FRACTION) * (radii.size - 1)))]
    outer = np.abs(y[m & (r2 >= threshold)]) ** 2
    return float(np.percentile(outer, 50)) / np.log(2.0)


def background_gate(y: np.ndarray, m: np.ndarray, g: np.ndarray, kappa: float) -> np.ndarray:
    """The gate of §3.7 item 7 on the scaled problem (``y`` scaled and masked, ``g`` the low-pass
    gains): ``clamp((E / s2 - kappa) / kappa, 0, 1)`` with ``E = F^H(Gamma (.) F |x_low|^2)``,
    ``Gamma = exp(-2 pi^2 w^2 ((ky - N_y/2)^2/N_y^2 + (kx - N_x/2)^2/N_x^2))`` (a circular
    Gaussian of width ``w`` pixels) and ``s2 = sigma^2 sum_sampled g^2 / N``. All ones when the
    estimated noise is zero."""
    kappa = float(kappa)
    if not (np.isfinite(kappa) and kappa > 0):
        raise ValueError(f"background gate must be finite and > 0, got {kappa}")
    ny, nx = y.shape
    s2 = noise_variance(y, m) * float(np.sum(g[m] ** 2)) / (ny * nx)
    if not (np.isfinite(s2) and s2 > 0):
        return np.ones((ny, nx))
    energy = np.abs(centred_ifft2(g * y)) ** 2
    u = (np.arange(ny) - ny // 2) / ny
    v = (np.arange(nx) - nx // 2) / nx
    gamma = np.exp(-2.0 * np.pi ** 2 * GATE_SMOOTHING ** 2 * (u[:, None] ** 2 + v[None, :] ** 2))
    smoothed = np.real(centred_ifft2(gamma * centred_fft2(energy)))
    return np.clip((smoothed / s2 - kappa) / kappa, 0.0, 1.0)


def reconstruct(kspace, mask, dictionary, lam, iterations: int = ITERATIONS,
                lowpass_weight: float = LOWPASS_WEIGHT, background_gate_kappa: float | None = None) -> dict:
    """Reconstruction of docs/design.md §3.7, in float64.

    1. ``y <- M (.) y`` (entries outside the mask are replaced by 0, even NaN/inf).
    2. ``x0 = F^H y``, ``p = percentile(|x0|, 99)`` (linear); ``p = 0`` or non-finite is an
       error; ``c = 1/p``; ``y <- c y``.
    3. ``G`` = :func:`lowpass_filter`; ``F x_low = G (.) y``; ``y' = (1 - G) (.) y``.
    4. ``h = filter_responses(d)``; ``L = max_{M(w)=1} sum_k |h_k(w)|^2``; ``L = 0`` is an error;
       ``tau = 1/L``.
    5. ``z = fista(y', h, M, Lambda, tau, T)``.
    6. ``x = F^H(G (.) y + sum_k h_k (.) F z_k) / c``.
    7. With ``background_gate_kappa``: ``x <- gate (.) x`` (:func:`background_gate`).

    Returns a dict:

    * ``x``          complex128 ``[N_y, N_x]`` — the image on the scale of ``F^H y`` (divided by c).
    * ``x_low``      complex128 ``[N_y, N_x]`` — ``F^H(G (.) y)`` on the scale of ``F^H y``
      (already divided by c, i.e. ``x = x_low + (D z)/c``).
    * ``z``          complex128 ``[K, N_y, N_x]`` — final codes ``z^T`` of the *scaled* problem.
    * ``scale_c``    float — ``c = 1/p``.
    * ``lipschitz_L`` float — ``L`` over the sampled frequencies.
    * ``y_prime``    complex128 — ``y'`` of the scaled problem; ``lambda_maps`` float64 ``[K, N_y, N_x]``.
    * ``gate``       float64 ``[N_y, N_x]`` — the background gate (all ones without one).
    """
    y = np.asarray(kspace)
    if y.ndim != 2:
        raise ValueError(f"kspace must have shape [N_y, N_x], got {y.shape}")
    ny, nx = y.shape
    if ny < 2 or nx < 2 or ny % 2 or nx % 2:
        raise ValueError(f"N_y and N_x must be even and >= 2, got {ny}x{nx}")
    if not (np.issubdtype(y.dtype, np.complexfloating) or np.issubdtype(y.dtype, np.floating)):
        raise ValueError(f"kspace must be complex (or real) floating point, got dtype {y.dtype}")
    m_arr = np.asarray(mask)
    if m_arr.shape != (ny, nx):
        raise ValueError(f"mask has shape {m_arr.shape}, expected {(ny, nx)}")
    if np.iscomplexobj(m_arr) or not (m_arr.dtype == np.bool_ or np.issubdtype(m_arr.dtype, np.number)):
        raise ValueError(f"mask must be bool, integer or real, got dtype {m_arr.dtype}")
    if np.issubdtype(m_arr.dtype, np.floating) and not np.all(np.isfinite(m_arr)):
        raise ValueError("mask contains non-finite values")
    m = m_arr != 0
    d = _check_dictionary(dictionary, ny, nx)
    k = d.shape[0]
    if isinstance(iterations, (bool, np.bool_)) or not isinstance(iterations, (numbers.Integral, np.integer)):
        raise ValueError(f"iterations must be an integer, got {iterations!r}")
    iterations = int(iterations)
    if iterations < 0:
        raise ValueError(f"iterations must be >= 0, got {iterations}")
    a = _check_nonneg_scalar(lowpass_weight, "lowpass_weight")
    lam_m = lambda_maps(lam, k, ny, nx)

    # 1. keep only sampled entries (select, not multiply: NaN * 0 would stay NaN)
    y = np.where(m, y.astype(np.complex128), 0.0 + 0.0j)
    # 2. scale
    x0 = centred_ifft2(y)
    p = percentile99(np.abs(x0))
    if not np.isfinite(p):
        raise ValueError("99th percentile of |F^H y| is not finite (non-finite k-space samples)")
    if p == 0.0:
        raise ValueError("99th percentile of |F^H y| is 0 (nothing measured)")
    c = 1.0 / p
    y = c * y
    # 3. low-pass split
    g = lowpass_filter(ny, nx, a)
    y_low = g * y
    y_prime = (1.0 - g) * y
    # 4. responses and step
    h = filter_responses(d, ny, nx)
    big_l = lipschitz(h, m)
    if big_l == 0.0:
        raise ValueError("Lipschitz constant is 0: the dictionary has no response at any sampled frequency")
    tau = 1.0 / big_l
    # 5. FISTA
    z = fista(y_prime, h, m, lam_m, tau, iterations)
    # 6. image
    x = centred_ifft2(y_low + np.sum(h * centred_fft2(z), axis=0)) / c
    x_low = centred_ifft2(y_low) / c
    # 7. background gate
    gate = np.ones((ny, nx)) if background_gate_kappa is None else background_gate(y, m, g, background_gate_kappa)
    x = gate * x
    return {
        "gate": gate,
        "x": x,
        "x_low": x_low,
        "z": z,
        "scale_c": c,
        "lipschitz_L": big_l,
        "y_prime": y_prime,
        "lambda_maps": lam_m,
    }
