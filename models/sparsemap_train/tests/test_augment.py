"""Domain randomisation (augment.py): shapes, range, determinism, the background rule, and the
1-D variable-density mask."""

from __future__ import annotations

import numpy as np
import pytest

from sparsemap_train import augment, train


@pytest.fixture(scope="module")
def example():
    targets, heads = train.load_split(train.REPO / "examples")
    return targets[0], heads[0]


def test_output_finite_max_one_shape(example):
    target, head = example
    rng = np.random.default_rng(0)
    for _ in range(12):
        out, hm = augment.augment(target, head, rng)
        assert out.shape == target.shape and out.dtype == np.complex64 and hm.shape == head.shape
        assert np.all(np.isfinite(out))
        assert abs(np.abs(out).max() - 1) < 1e-6
        assert set(np.unique(hm)) <= {0.0, 1.0} and hm.dtype == head.dtype


def test_deterministic_for_a_seed(example):
    target, head = example
    a = [augment.augment(target, head, np.random.default_rng(7)) for _ in range(2)]
    b = augment.augment(target, head, np.random.default_rng(8))
    assert np.array_equal(a[0][0], a[1][0]) and np.array_equal(a[0][1], a[1][1])
    assert not np.array_equal(a[0][0], b[0])


def test_everything_off_keeps_the_slice(example):
    target, head = example
    out, hm = augment.augment(target, head, np.random.default_rng(0), augment.OFF)
    assert np.allclose(out, target / np.abs(target).max(), atol=1e-6) and np.array_equal(hm, head)


def test_background_stays_zero_without_the_background_ingredient(example):
    target, head = example
    target = target * (head > 0)  # a skull-stripped slice: zero outside the head
    cfg = dict(augment.DEFAULT, background_prob=0.0, blur_prob=0.0, zoom_prob=0.0,
               contrast_prob=1.0, bias_prob=1.0, gamma_prob=1.0, phase_prob=1.0)
    rng = np.random.default_rng(1)
    for _ in range(10):
        out, _ = augment.augment(target, head, rng, cfg)
        assert np.all(out[target == 0] == 0)
        assert np.abs(out).max() == pytest.approx(1, abs=1e-6)


def test_contrast_curve_fixes_zero_and_stays_in_range():
    m = np.linspace(0, 1, 101)
    rng = np.random.default_rng(2)
    non_monotone = 0
    for _ in range(50):
        c = augment.contrast_curve(m, rng)
        assert c[0] == 0 and c.min() >= 0 and 0.5 < c.max() <= 1  # (the knot of value 1 may fall between samples)
        non_monotone += bool(np.any(np.diff(c) < -1e-12))
    assert 5 < non_monotone < 50  # some curves invert the contrast, not all


def test_background_only_outside_the_head(example):
    target, head = example
    target = target * (head > 0)
    cfg = dict(augment.OFF, background_prob=1.0)
    changed = 0
    for seed in range(6):
        out, _ = augment.augment(target, head, np.random.default_rng(seed), cfg)
        inside = head > 0
        ratio = np.abs(out[inside]) / np.abs(target[inside]).clip(1e-12)
        ok = np.abs(target[inside]) > 1e-3
        assert np.allclose(ratio[ok], ratio[ok][0], rtol=1e-4)  # the head is only rescaled
        assert np.abs(out[~inside]).max() <= 0.15 / ratio[ok][0] + 1e-6
        changed += bool(np.any(out[~inside] != 0))
    assert changed >= 4  # (an amplitude draw near 0 is possible)


def test_zoom_keeps_the_size_and_zooms_about_the_centre(example):
    target, head = example
    z, hz = augment.zoom(target, head, 0.8)
    assert z.shape == target.shape and hz.shape == head.shape
    assert hz.sum() == pytest.approx(head.sum() * 0.64, rel=0.05)
    z, hz = augment.zoom(target, head, 1.0)
    assert np.allclose(z, target, atol=1e-6) and np.array_equal(hz, head)


@pytest.mark.parametrize("n,acc,centre", [(256, 4.0, 20), (128, 2.5, 12), (64, 3.0, 6)])
def test_variable_density_mask(n, acc, centre):
    mask = augment.variable_density_mask(n, np.random.default_rng(0), acc, centre)
    assert mask.shape == (n, n) and mask.dtype == np.uint8
    rows = mask[:, 0].astype(bool)
    assert np.all(mask == mask[:, :1])  # whole ky rows
    assert rows.sum() == round(n / acc)
    assert abs(n / rows.sum() - acc) <= acc * 2 / n * acc + 1e-9
    c0 = n // 2 - centre // 2
    assert rows[c0:c0 + centre].all()


def test_variable_density_mask_prefers_the_centre():
    n = 256
    hits = np.zeros(n)
    rng = np.random.default_rng(3)
    for _ in range(40):
        hits += augment.variable_density_mask(n, rng, 4.0, 20)[:, 0]
    d = np.abs(np.arange(n) - n // 2)
    assert hits[(d > 10) & (d < 50)].mean() > 2 * hits[d > 90].mean()


def test_random_vd_mask_in_range():
    rng = np.random.default_rng(4)
    for n in (64, 128, 256):
        for _ in range(20):
            rows = augment.random_vd_mask(n, rng)[:, 0].astype(bool)
            assert 2 - 0.1 <= n / rows.sum() <= 4 + 0.3
            centre = n // 2 + np.arange(-int(0.04 * n), int(0.04 * n))  # >= 8 % of the lines
            assert rows[centre].all()
