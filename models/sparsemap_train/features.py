"""Input features of the Lambda network (docs/design.md §4), version 1.

Computed from the *scaled* problem of §3.7 (after items 1–4: masked k-space ``y`` scaled by
``c = 1/p99(|F^H y|)``, its high-pass part ``y' = (1 - G) (.) y`` for the model's low-pass
weight ``a``, the dictionary responses ``h_k`` and the Lipschitz constant ``L`` over the
sampled frequencies). Output float32 ``[K, C = 3, N_y, N_x]``, channel order:

0. ``r_k = |F^H(conj(h_k) (.) y')| / sqrt(L)`` — magnitude of filter k's correlation
   ``d_k^T (*) x0'`` with the high-pass zero-filled image ``x0' = F^H y'``; it is the magnitude
   of the first FISTA gradient ``(A D)^H y'`` for filter k, so Lambda_k (compared with it in
   the first soft-threshold) lives on the same scale. Dividing by ``sqrt(L)`` makes the
   channel invariant to a global rescaling of the dictionary.
1. ``|x0|`` with ``x0 = F^H y`` — the scaled zero-filled magnitude (its 99th percentile is 1);
   the same map for every k.
2. ``mean_k r_k`` — cross-filter context (a mean over the filter axis: permutation invariant,
   so the network stays equivariant); the same map for every k.

The Rust runtime (``crates/edge/src/lambda_net.rs``) computes exactly this list; the ONNX
file names it in ``metadata_props["sparsemap.features"]`` = :data:`FEATURES_V1`.
"""

from __future__ import annotations

import jax.numpy as jnp

from . import recon

#: Identifier written to ``sparsemap.features``; the runtime refuses any other value.
FEATURES_V1 = "v1:corr_highpass_abs_over_sqrt_lipschitz,zero_filled_abs,corr_highpass_abs_filter_mean"
CHANNELS = 3


def features(prepared):
    """Features ``[K, 3, N_y, N_x]`` (float32 or float64, as the prepared problem) from the
    output of :func:`recon.prepare`."""
    h, yp, big_l, x0 = prepared["h"], prepared["y_prime"], prepared["L"], prepared["x0"]
    corr = recon.centred_ifft2(jnp.conj(h) * yp[None])
    r = jnp.abs(corr) / jnp.sqrt(big_l)
    zf = jnp.broadcast_to(jnp.abs(x0)[None], r.shape)
    mean = jnp.broadcast_to(jnp.mean(r, axis=0, keepdims=True), r.shape)
    return jnp.stack([r, zf, mean], axis=1)


def features_from_kspace(kspace, mask, dictionary, lowpass_weight=recon.LOWPASS_WEIGHT):
    """Convenience: :func:`recon.prepare` then :func:`features`; returns ``(features, prepared)``."""
    pr = recon.prepare(kspace, mask, dictionary, lowpass_weight)
    return features(pr), pr
