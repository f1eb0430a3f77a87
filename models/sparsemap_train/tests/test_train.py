"""The training step runs end to end (features -> network -> unrolled FISTA -> loss -> Adam)."""

from __future__ import annotations

import numpy as np
import pytest

from sparsemap_train import export, train


def test_two_training_steps(tmp_path):
    res = train.train("test", tmp_path / "m")
    hist = res["history"]
    assert len(hist) == 2 and all(np.isfinite(h["loss"]) for h in hist)
    assert all(0 < h["head"] and 0 <= h["background"] for h in hist)
    params, info = export.load_params(tmp_path / "m.params.npz")
    assert info["iterations"] == 4 and info["lowpass_weight"] != 1.0  # a is learned
    assert set(params) == {f"{c}.{t}" for c in ("c1", "c2", "c3", "c4", "c5", "c6") for t in ("w", "b")}


def test_augmented_training_steps(tmp_path):
    """The `test_aug` preset (domain randomisation, wider noise, variable-density masks)."""
    res = train.train("test_aug", tmp_path / "m", steps=4)
    hist = res["history"]
    assert len(hist) == 4 and all(np.isfinite(h["loss"]) for h in hist)
    _, info = export.load_params(tmp_path / "m.params.npz")
    assert info["augment"]["contrast_prob"] > 0 and info["config"]["vd_prob"] > 0
    assert "augmentation zoom_prob 0.5" in info["description"]
    _, info = export.load_params(_two_steps(tmp_path / "plain"))
    assert info["augment"] is None and "no augmentation" in info["description"]


def _two_steps(prefix):
    train.train("test", prefix)
    return str(prefix) + ".params.npz"


def _write_split(path, targets, heads):
    np.savez(path, target=targets.astype(np.complex64), head_mask=heads.astype(np.uint8))
    return str(path)


def test_several_files_train_and_validate_per_file(tmp_path):
    targets, heads = train.load_split(train.REPO / "examples")
    a = _write_split(tmp_path / "a.npz", targets[:1], heads[:1])
    b = _write_split(tmp_path / "b.npz", np.stack([targets[1]] * 5), np.stack([heads[1]] * 5))
    paths = train.split_paths(f"{a}, {b}")
    assert [p.name for p in paths] == ["a.npz", "b.npz"]
    res = train.train("test", tmp_path / "m", data=f"{a},{b}", seed=3)
    assert len(res["history"]) == 2 and res["info"]["config"]["seed"] == 3
    assert res["info"]["config"]["data"] == f"{a},{b}"
    cfg = dict(train.PRESETS["test"], validation=f"{a},{b}", validation_slices=2)
    v = train.Validator(cfg, np.load(train.REPO / "models/dictionaries/dct3.npy"))
    assert len(v.cases) == 4  # 2 per file, whatever the file's size


def test_missing_file_names_it(tmp_path, monkeypatch):
    missing = tmp_path / "mni152_t1_train.npz"
    with pytest.raises(SystemExit, match="mni152_t1_train.npz.*sparsemap-host export --out-dir data"):
        train.split_paths(f"examples,{missing}")
    with pytest.raises(SystemExit, match="mni152_t1_train.npz"):
        train.train("test", tmp_path / "m", data=f"examples,{missing}")
    # with validation on, a missing validation file fails before any training
    monkeypatch.setitem(train.PRESETS, "test_val", dict(train.PRESETS["test"], validate_every=1))
    with pytest.raises(SystemExit, match="no_validation.npz"):
        train.train("test_val", tmp_path / "m", validation=f"examples,{tmp_path / 'no_validation.npz'}")
