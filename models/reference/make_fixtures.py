"""Write the deterministic Rust-agreement fixtures into tests/fixtures/reference/<case>/.

Per case:
  kspace.npy           complex64 [N_y, N_x]  centred k-space (unitary convention), 0 off the mask
  mask.npy             uint8     [N_y, N_x]  1 where sampled
  dictionary.npy       float32   [K, s, s]
  lambda.npy           float32   [K, N_y, N_x]  Lambda maps in units of the scaled problem
  params.json          {"iterations": T, "lowpass_weight": a, "description": ...}
  expected_image.npy   complex128 [N_y, N_x]  reference image x (scale of F^H y)
  expected_z.npy       complex128 [K, N_y, N_x]  final codes z^T (scaled problem); only if K N_y N_x <= 40000
  expected_image_gated.npy complex128 [N_y, N_x]  x with the background gate (§3.7 item 7, kappa 8)
  expected_scalars.json {"scale_c": c, "lipschitz_L": L, ...}

The expected outputs are computed in float64 by sparsemap_reference.reconstruct from the
*float32-rounded* inputs exactly as stored (read back from the written files' arrays).

Run: models/.venv/bin/python models/reference/make_fixtures.py [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import sparsemap_reference as ref  # noqa: E402

REPO = pathlib.Path(__file__).resolve().parents[2]
Z_LIMIT = 40000  # store expected_z only when K * N_y * N_x <= this


# ------------------------------------------------------------------------------ inputs


def smooth_image(rng: np.random.Generator, ny: int, nx: int) -> np.ndarray:
    """Smooth-ish complex test image: low-pass noise + piecewise-constant shapes, smooth phase."""
    yy, xx = np.meshgrid(np.linspace(-1, 1, ny), np.linspace(-1, 1, nx), indexing="ij")
    # low-pass filtered noise (Gaussian in frequency)
    noise = rng.standard_normal((ny, nx))
    fy = np.fft.fftfreq(ny)[:, None]
    fx = np.fft.fftfreq(nx)[None, :]
    lp = np.exp(-(fy ** 2 + fx ** 2) / (2 * 0.04 ** 2))
    smooth = np.real(np.fft.ifft2(np.fft.fft2(noise) * lp))
    smooth = smooth / np.max(np.abs(smooth))
    mag = 0.3 + 0.2 * smooth
    # edges: random ellipses and rectangles
    for _ in range(4):
        cy, cx = rng.uniform(-0.6, 0.6, 2)
        ry, rx = rng.uniform(0.1, 0.4, 2)
        mag = mag + rng.uniform(0.2, 0.6) * (((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1.0)
    for _ in range(2):
        y0, x0 = rng.uniform(-0.8, 0.5, 2)
        hgt, wid = rng.uniform(0.1, 0.3, 2)
        mag = mag - rng.uniform(0.1, 0.3) * ((yy >= y0) & (yy < y0 + hgt) & (xx >= x0) & (xx < x0 + wid))
    mag = np.clip(mag, 0.0, None) * (yy ** 2 + xx ** 2 <= 0.95)  # object support
    coef = rng.uniform(-1, 1, 6)
    phase = 0.5 * np.pi * (coef[0] + coef[1] * yy + coef[2] * xx + coef[3] * yy ** 2 + coef[4] * yy * xx
                           + coef[5] * xx ** 2) / np.sum(np.abs(coef))
    return mag * np.exp(1j * phase)


def central_block(ny: int, nx: int, by: int, bx: int) -> np.ndarray:
    m = np.zeros((ny, nx), dtype=np.uint8)
    m[ny // 2 - by // 2: ny // 2 + by // 2, nx // 2 - bx // 2: nx // 2 + bx // 2] = 1
    return m


def variable_density_1d(rng: np.random.Generator, ny: int, nx: int, centre: int, frac: float) -> np.ndarray:
    """Random phase-encode lines (rows), probability ~ 1/(1 + (dist/w)^2), fully sampled centre."""
    dist = np.abs(np.arange(ny) - ny // 2).astype(np.float64)
    prob = 1.0 / (1.0 + (dist / (0.1 * ny)) ** 2)
    prob *= frac * ny / prob.sum()
    rows = rng.uniform(size=ny) < np.clip(prob, 0, 1)
    rows[ny // 2 - centre // 2: ny // 2 + centre // 2] = True
    return np.repeat(rows[:, None], nx, axis=1).astype(np.uint8)


def random_2d(rng: np.random.Generator, ny: int, nx: int, frac: float, centre: int) -> np.ndarray:
    ky = (np.arange(ny) - ny // 2)[:, None] / ny
    kx = (np.arange(nx) - nx // 2)[None, :] / nx
    prob = np.exp(-(ky ** 2 + kx ** 2) / (2 * 0.2 ** 2))
    prob *= frac * ny * nx / prob.sum()
    m = rng.uniform(size=(ny, nx)) < np.clip(prob, 0, 1)
    m[ny // 2 - centre // 2: ny // 2 + centre // 2, nx // 2 - centre // 2: nx // 2 + centre // 2] = True
    return m.astype(np.uint8)


def random_dictionary(rng: np.random.Generator, k: int, s: int, zero_mean: bool) -> np.ndarray:
    d = rng.standard_normal((k, s, s))
    if zero_mean:
        d -= d.mean(axis=(1, 2), keepdims=True)
    d /= np.sqrt(np.sum(d ** 2, axis=(1, 2), keepdims=True))
    return d


def smooth_positive_map(rng: np.random.Generator, ny: int, nx: int) -> np.ndarray:
    """Per-pixel positive map in [0.25, 1.75] (smooth random field)."""
    noise = rng.standard_normal((ny, nx))
    fy = np.fft.fftfreq(ny)[:, None]
    fx = np.fft.fftfreq(nx)[None, :]
    f = np.real(np.fft.ifft2(np.fft.fft2(noise) * np.exp(-(fy ** 2 + fx ** 2) / (2 * 0.05 ** 2))))
    f = (f - f.min()) / (f.max() - f.min())
    return 0.25 + 1.5 * f


# ------------------------------------------------------------------------------- cases

CASES = [
    dict(name="c32_block_k4_s3", seed=101, ny=32, nx=32, k=4, s=3, T=10, a=4.0, mask="block", block=(16, 16),
         zero_mean=True, lam="scalar", lam_scale=0.3, noise=0.02,
         description="32x32, K=4 zero-mean 3x3 filters, central 16x16 block, scalar lambda stored as maps, T=10"),
    dict(name="c64_vd1d_k8_s5", seed=202, ny=64, nx=64, k=8, s=5, T=20, a=4.0, mask="vd1d",
         zero_mean=False, lam="maps", lam_scale=0.1, noise=0.03,
         description="64x64, K=8 random 5x5 filters, 1D variable-density random phase-encode mask "
                     "(8 central rows), per-pixel varying lambda maps, T=20"),
    dict(name="c64x128_rand2d_k6_s7", seed=303, ny=64, nx=128, k=6, s=7, T=15, a=2.0, mask="rand2d",
         zero_mean=False, lam="maps", lam_scale=0.2, noise=0.03,
         description="Ny=64, Nx=128 (non-square), K=6 random 7x7 filters, random 2D variable-density mask, "
                     "per-pixel varying lambda maps (times a per-filter factor), lowpass_weight=2, T=15"),
    dict(name="c128_block_k16_s9", seed=404, ny=128, nx=128, k=16, s=9, T=8, a=4.0, mask="block", block=(64, 64),
         zero_mean=True, lam="vector", lam_scale=0.2, noise=0.02,
         description="128x128, K=16 zero-mean 9x9 filters, central 64x64 block, per-filter lambda vector "
                     "stored as maps, T=8"),
]


def make_inputs(case: dict) -> dict:
    rng = np.random.default_rng(case["seed"])
    ny, nx, k, s = case["ny"], case["nx"], case["k"], case["s"]
    img = smooth_image(rng, ny, nx)
    if case["mask"] == "block":
        mask = central_block(ny, nx, *case["block"])
    elif case["mask"] == "vd1d":
        mask = variable_density_1d(rng, ny, nx, centre=8, frac=0.35)
    else:
        mask = random_2d(rng, ny, nx, frac=0.3, centre=8)
    full = ref.centred_fft2(img)
    rms = np.sqrt(np.mean(np.abs(full) ** 2))
    noise = case["noise"] * rms / np.sqrt(2) * (rng.standard_normal((ny, nx)) + 1j * rng.standard_normal((ny, nx)))
    kspace = np.where(mask != 0, full + noise, 0).astype(np.complex64)
    d = random_dictionary(rng, k, s, case["zero_mean"]).astype(np.float32)

    # Lambda in scaled-problem units, relative to the typical size of the first FISTA gradient
    # |tau (A D)^H y'| so the solution is neither all-zero nor dense.
    y = kspace.astype(np.complex128) * (mask != 0)
    c = 1.0 / ref.percentile99(np.abs(ref.centred_ifft2(y)))
    g = ref.lowpass_filter(ny, nx, case["a"])
    h = ref.filter_responses(d, ny, nx)
    big_l = ref.lipschitz(h, mask)
    b = np.abs(ref.synthesis_adjoint((1 - g) * c * y, h, mask)) / big_l  # |tau A^H y'|
    base = case["lam_scale"] * float(np.percentile(b, 90)) * big_l     # threshold tau*lam ~ scale * p90
    if case["lam"] == "scalar":
        lam = np.full((k, ny, nx), base)
    elif case["lam"] == "vector":
        lam = np.broadcast_to((base * rng.uniform(0.5, 1.5, k))[:, None, None], (k, ny, nx))
    else:
        lam = base * rng.uniform(0.5, 1.5, k)[:, None, None] * np.stack(
            [smooth_positive_map(rng, ny, nx) for _ in range(k)])
    return dict(kspace=kspace, mask=mask.astype(np.uint8), dictionary=d, lam=np.ascontiguousarray(lam, np.float32))


def write_case(case: dict, out: pathlib.Path) -> dict:
    inp = make_inputs(case)
    d = out / case["name"]
    d.mkdir(parents=True, exist_ok=True)
    np.save(d / "kspace.npy", inp["kspace"])
    np.save(d / "mask.npy", inp["mask"])
    np.save(d / "dictionary.npy", inp["dictionary"])
    np.save(d / "lambda.npy", inp["lam"])
    params = {"iterations": case["T"], "lowpass_weight": case["a"], "description": case["description"]}
    (d / "params.json").write_text(json.dumps(params, indent=2) + "\n")

    # reference in float64 on the float32-rounded inputs
    res = ref.reconstruct(inp["kspace"].astype(np.complex128), inp["mask"], inp["dictionary"].astype(np.float64),
                          inp["lam"].astype(np.float64), case["T"], case["a"])
    np.save(d / "expected_image.npy", res["x"].astype(np.complex128))
    # the same with the background gate of §3.7 item 7 at its default threshold
    gated = ref.reconstruct(inp["kspace"].astype(np.complex128), inp["mask"], inp["dictionary"].astype(np.float64),
                            inp["lam"].astype(np.float64), case["T"], case["a"],
                            background_gate_kappa=ref.BACKGROUND_GATE)
    np.save(d / "expected_image_gated.npy", gated["x"].astype(np.complex128))
    k, ny, nx = res["z"].shape
    if k * ny * nx <= Z_LIMIT:
        np.save(d / "expected_z.npy", res["z"].astype(np.complex128))
    elif (d / "expected_z.npy").exists():
        (d / "expected_z.npy").unlink()
    h = ref.filter_responses(inp["dictionary"], ny, nx)
    l_all = float(np.max(np.sum(np.abs(h) ** 2, axis=0)))
    nz = float(np.mean(res["z"] != 0))
    scalars = {
        "scale_c": res["scale_c"],
        "lipschitz_L": res["lipschitz_L"],
        "lipschitz_L_all_frequencies": l_all,
        "nonzero_fraction_z": nz,
        "sampled_fraction": float(np.mean(inp["mask"] != 0)),
        "gate_mean": float(np.mean(gated["gate"])),
    }
    (d / "expected_scalars.json").write_text(json.dumps(scalars, indent=2) + "\n")
    return dict(name=case["name"], shape=f"{ny}x{nx}", k=k, s=case["s"], T=case["T"], a=case["a"],
                sampled=scalars["sampled_fraction"], nz=nz, c=res["scale_c"], L=res["lipschitz_L"], l_all=l_all,
                z="yes" if k * ny * nx <= Z_LIMIT else "no")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=pathlib.Path, default=REPO / "tests" / "fixtures" / "reference")
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args()
    rows = [write_case(c, args.out) for c in CASES]
    if not args.quiet:
        print(f"{'case':24s} {'grid':>7s} {'K':>3s} {'s':>2s} {'T':>3s} {'a':>4s} {'sampled':>8s} "
              f"{'nz(z)':>7s} {'scale_c':>12s} {'L(sampled)':>12s} {'L(all)':>12s} {'z?':>3s}")
        for r in rows:
            print(f"{r['name']:24s} {r['shape']:>7s} {r['k']:3d} {r['s']:2d} {r['T']:3d} {r['a']:4.1f} "
                  f"{r['sampled']:8.3f} {r['nz']:7.3f} {r['c']:12.6g} {r['L']:12.6g} {r['l_all']:12.6g} {r['z']:>3s}")


if __name__ == "__main__":
    main()
