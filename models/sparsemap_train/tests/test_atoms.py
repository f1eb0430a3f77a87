"""The low-pass atom (sparsemap_train.atoms) is the truncated kernel of (I + b grad^H grad)^-1,
and appending it leaves the other filters' responses unchanged."""

from __future__ import annotations

import numpy as np

from sparsemap_train import atoms, recon


def test_atom_response_is_the_lowpass_gain():
    atom = atoms.lowpass_atom(weight=1.0, side=9)
    assert atom.shape == (9, 9) and abs(float(atom.sum()) - 1.0) < 1e-6
    n = 64
    h = np.abs(np.asarray(recon.filter_responses(atom[None].astype(np.float64), n, n)))[0]
    g = np.asarray(recon.lowpass_filter(n, n, 1.0))
    # truncation to 9x9 and the rescaling to sum 1 (measured 0.027; b = 2 gives 0.16)
    assert np.max(np.abs(h - g)) < 0.05


def test_appending_pads_and_keeps_the_filters():
    d = np.random.default_rng(0).standard_normal((3, 5, 5)).astype(np.float32)
    out = atoms.with_lowpass_atom(d)
    assert out.shape == (4, 9, 9)
    n = 32
    before = np.asarray(recon.filter_responses(d.astype(np.float64), n, n))
    after = np.asarray(recon.filter_responses(out[:3].astype(np.float64), n, n))
    np.testing.assert_allclose(after, before, atol=1e-5)
    np.testing.assert_array_equal(out[3], atoms.lowpass_atom())
