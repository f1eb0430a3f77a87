"""tests/fixtures/metrics/ is exactly what make_metric_fixtures.py writes, and its numbers
discriminate: plausible-but-wrong SSIM settings miss them by more than the 1e-4 tolerance
that host/tests/metrics_vs_skimage.rs uses."""

from __future__ import annotations

import json

import numpy as np
import pytest
from skimage.metrics import structural_similarity

import make_metric_fixtures as mmf

TOL = 1e-4


@pytest.fixture(scope="module")
def fresh():
    return mmf.build()


def test_fixtures_regenerate_byte_for_byte(fresh):
    on_disk = sorted(p.name for p in mmf.OUT.iterdir() if p.is_dir())
    assert on_disk == sorted(fresh), "fixture cases on disk differ from make_metric_fixtures.CASES"
    for case, files in fresh.items():
        d = mmf.OUT / case
        assert sorted(p.name for p in d.iterdir()) == sorted(files), case
        for fname, data in files.items():
            assert (d / fname).read_bytes() == data, f"{case}/{fname} differs from a fresh run"


def _load(case):
    d = mmf.OUT / case
    ref, deg = np.load(d / "reference.npy"), np.load(d / "degraded.npy")
    return ref, deg, json.loads((d / "expected.json").read_text())


@pytest.mark.parametrize("case", sorted(mmf.CASES))
def test_uniform_window_ssim_is_caught(case):
    ref, deg, expected = _load(case)
    r, x = mmf.normalise(ref, deg)
    for win in (7, 11):
        wrong = structural_similarity(r, x, data_range=1.0, win_size=win)
        assert abs(wrong - expected["ssim"]) > TOL, (case, win, wrong)


@pytest.mark.parametrize("case", sorted(mmf.CASES))
def test_masked_values_are_consistent(case):
    ref, deg, expected = _load(case)
    mask = np.load(mmf.OUT / case / "mask.npy").astype(bool)
    # An all-true mask reproduces the whole-image numbers (the crop is applied to SSIM either way).
    full, _ = mmf.expected_values(ref, deg, np.ones_like(mask))
    for key in ("psnr", "nrmse", "ssim"):
        assert abs(full[f"{key}_masked"] - expected[key]) < 1e-12, (case, key)
    assert int(mask.sum()) == expected["mask_pixels"] > 0


def test_colin27_head_mask_changes_ssim():
    # The reason for masked metrics: whole-image SSIM is dominated by the background.
    _, _, e = _load("colin27")
    assert e["ssim_masked"] - e["ssim"] > 0.2
