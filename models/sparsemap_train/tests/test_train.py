"""The training step runs end to end (features -> network -> unrolled FISTA -> loss -> Adam)."""

from __future__ import annotations

import numpy as np

from sparsemap_train import export, train


def test_two_training_steps(tmp_path):
    res = train.train("test", tmp_path / "m")
    hist = res["history"]
    assert len(hist) == 2 and all(np.isfinite(h["loss"]) for h in hist)
    assert all(0 < h["head"] and 0 <= h["background"] for h in hist)
    params, info = export.load_params(tmp_path / "m.params.npz")
    assert info["iterations"] == 4 and info["lowpass_weight"] != 1.0  # a is learned
    assert set(params) == {f"{c}.{t}" for c in ("c1", "c2", "c3", "c4", "c5", "c6") for t in ("w", "b")}
