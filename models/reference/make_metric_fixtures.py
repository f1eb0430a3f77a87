"""Write the image-quality metric fixtures (tests/fixtures/metrics/) from scikit-image.

The Rust metrics (host/src/metrics.rs) are checked against these numbers to 1e-4
(host/tests/metrics_vs_skimage.rs). Everything here is deterministic (fixed seeds, pinned
numpy / scipy / scikit-image in requirements.txt), and test_metric_fixtures.py checks that a
fresh run reproduces the files byte for byte.

Conventions, identical to host/src/metrics.rs:

* Images are real magnitude images, row-major ``[n_y][n_x]``, promoted to float64.
* Normalisation: both images are divided by ``max |reference|`` (:func:`normalise`), so
  the data range is 1 and every metric is called with ``data_range=1.0``.
* PSNR  = ``skimage.metrics.peak_signal_noise_ratio(r, x, data_range=1)``.
* NRMSE = ``skimage.metrics.normalized_root_mse(r, x, normalization='euclidean')``.
* SSIM  = ``skimage.metrics.structural_similarity(r, x, data_range=1, gaussian_weights=True,
  sigma=1.5, use_sample_covariance=False)``: 11-tap Gaussian (truncate 3.5), scipy 'reflect'
  borders, K1 = 0.01, K2 = 0.03, mean over the map with a 5-pixel border cropped.
* Masked variants (no scikit-image equivalent; defined here with numpy):
  ``psnr_masked = 10 log10(1 / mean_{mask}(r - x)^2)``,
  ``nrmse_masked = sqrt(mean_{mask}(r - x)^2) / sqrt(mean_{mask} r^2)``,
  ``ssim_masked = mean of the full SSIM map (full=True) over mask pixels inside the crop``.
  Normalisation is still by the max of the whole reference.
* Head mask: ``scipy.ndimage.binary_fill_holes(|r| > threshold * max|r|)`` (holes = background
  components not 4-connected to the image border).

Run from the repository root:  models/.venv/bin/python models/reference/make_metric_fixtures.py
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import scipy
import skimage
from scipy import ndimage as ndi
from skimage.metrics import normalized_root_mse, peak_signal_noise_ratio, structural_similarity

REPO = Path(__file__).resolve().parents[2]
OUT = REPO / "tests" / "fixtures" / "metrics"

SSIM_SIGMA = 1.5
SSIM_WIN_SIZE = 11  # 2 * int(3.5 * 1.5 + 0.5) + 1, what skimage uses with gaussian_weights
SSIM_PAD = (SSIM_WIN_SIZE - 1) // 2
DATA_RANGE = 1.0


def normalise(reference: np.ndarray, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Both images (as float64) divided by max |reference|."""
    r = np.asarray(reference, dtype=np.float64)
    x = np.asarray(image, dtype=np.float64)
    scale = np.max(np.abs(r))
    return r / scale, x / scale


def head_mask(reference: np.ndarray, threshold: float) -> np.ndarray:
    a = np.abs(np.asarray(reference, dtype=np.float64))
    return ndi.binary_fill_holes(a > threshold * a.max())


def ssim_full(r: np.ndarray, x: np.ndarray) -> tuple[float, np.ndarray]:
    return structural_similarity(
        r,
        x,
        data_range=DATA_RANGE,
        gaussian_weights=True,
        sigma=SSIM_SIGMA,
        use_sample_covariance=False,
        full=True,
    )


def crop_mask(shape: tuple[int, int]) -> np.ndarray:
    inside = np.zeros(shape, dtype=bool)
    inside[SSIM_PAD : shape[0] - SSIM_PAD, SSIM_PAD : shape[1] - SSIM_PAD] = True
    return inside


def expected_values(reference: np.ndarray, image: np.ndarray, mask: np.ndarray) -> dict:
    r, x = normalise(reference, image)
    mssim, smap = ssim_full(r, x)
    sq = (r - x) ** 2
    m = mask.astype(bool)
    sel = m & crop_mask(r.shape)
    return {
        "psnr": float(peak_signal_noise_ratio(r, x, data_range=DATA_RANGE)),
        "nrmse": float(normalized_root_mse(r, x, normalization="euclidean")),
        "ssim": float(mssim),
        "psnr_masked": float(10.0 * np.log10(DATA_RANGE**2 / np.mean(sq[m]))),
        "nrmse_masked": float(np.sqrt(np.mean(sq[m])) / np.sqrt(np.mean(r[m] ** 2))),
        "ssim_masked": float(np.mean(smap[sel])),
        "mask_pixels": int(m.sum()),
    }, smap


def case_colin27(rng: np.random.Generator):
    target = np.load(REPO / "examples" / "colin27" / "target.npy")  # complex64, max |.| = 1
    ref = np.abs(target).astype(np.float32)
    blurred = ndi.gaussian_filter(target.real, 0.8) + 1j * ndi.gaussian_filter(target.imag, 0.8)
    noise = 0.03 * (rng.standard_normal(target.shape) + 1j * rng.standard_normal(target.shape))
    degraded = np.abs(blurred + noise).astype(np.float32)
    return ref, degraded, 0.1


def case_random_64x48(rng: np.random.Generator):
    ref = rng.random((64, 48))
    degraded = ref + 0.1 * rng.standard_normal(ref.shape)
    return ref, degraded, 0.5


def case_constant_background(rng: np.random.Generator):
    n_y, n_x = 40, 56
    yy, xx = np.mgrid[0:n_y, 0:n_x]
    rr = np.hypot((yy - 19.5) / 14.0, (xx - 27.5) / 20.0)
    ref = np.full((n_y, n_x), 0.2)
    ref[rr < 1.0] = 1.0
    ref[rr < 0.4] = 0.1  # dark core: a hole the head mask has to fill
    degraded = ref.copy()
    inside = rr < 1.0
    degraded[inside] += 0.05 * rng.standard_normal(int(inside.sum()))
    return ref, degraded, 0.5


def case_tiny_11x13(rng: np.random.Generator):
    ref = rng.random((11, 13)) + 0.5
    degraded = 0.9 * ref + 0.05 * rng.standard_normal(ref.shape)
    return ref, degraded, 0.0


CASES = {
    "colin27": (case_colin27, 27),
    "random_64x48": (case_random_64x48, 6448),
    "constant_background": (case_constant_background, 4056),
    "tiny_11x13": (case_tiny_11x13, 1113),
}


def build() -> dict[str, dict[str, bytes]]:
    """Every fixture file, as ``{case: {file name: bytes}}``."""
    import io

    out: dict[str, dict[str, bytes]] = {}
    for name, (make, seed) in CASES.items():
        ref, degraded, threshold = make(np.random.default_rng(seed))
        mask = head_mask(ref, threshold)
        values, smap = expected_values(ref, degraded, mask)
        values = {
            "threshold": threshold,
            "shape": list(ref.shape),
            "dtype": str(ref.dtype),
            **values,
            "versions": {
                "numpy": np.__version__,
                "scipy": scipy.__version__,
                "scikit-image": skimage.__version__,
            },
        }
        files = {}
        for fname, arr in [
            ("reference.npy", ref),
            ("degraded.npy", degraded),
            ("mask.npy", mask.astype(np.uint8)),
            ("ssim_map.npy", smap.astype(np.float64)),
        ]:
            buf = io.BytesIO()
            np.save(buf, np.ascontiguousarray(arr), allow_pickle=False)
            files[fname] = buf.getvalue()
        files["expected.json"] = (json.dumps(values, indent=2, sort_keys=True) + "\n").encode()
        out[name] = files
    return out


def main() -> int:
    for case, files in build().items():
        d = OUT / case
        d.mkdir(parents=True, exist_ok=True)
        for fname, data in files.items():
            (d / fname).write_bytes(data)
        print(f"wrote {d.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
