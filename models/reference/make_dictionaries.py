"""Write the analytic DCT dictionaries models/dictionaries/dct{3,5}.npy (+ JSON sidecars).

Construction (for filter size s): the 2-D orthonormal DCT-II basis of R^{s x s},
``b_{u,v}[i, j] = c_u[i] c_v[j]`` with ``c_u[n] = alpha_u cos(pi (2n + 1) u / (2s))``,
``alpha_0 = sqrt(1/s)``, ``alpha_u = sqrt(2/s)``; the constant atom (u, v) = (0, 0) is dropped,
leaving K = s^2 - 1 atoms in row-major (u, v) order (u = vertical / y frequency). All atoms are
then scaled by ``1/sqrt(L)`` where ``L = sup_w sum_k |h_k(w)|^2`` over *all* frequencies, so
that the scaled dictionary has L = 1. For this basis ``sum_k |h_k(w)|^2 = s^2 - |H_dc(w)|^2``,
whose supremum ``s^2`` is reached where the DC atom's response vanishes (w a non-zero multiple
of 2 pi / s); L is evaluated numerically on a (64 s) x (64 s) grid, which contains those
frequencies, so the factor is 1/s up to rounding.

Run: models/.venv/bin/python models/reference/make_dictionaries.py [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from sparsemap_reference import filter_responses  # noqa: E402

REPO = pathlib.Path(__file__).resolve().parents[2]


def dct_basis_1d(s: int) -> np.ndarray:
    n = np.arange(s)
    c = np.array([np.cos(np.pi * (2 * n + 1) * u / (2 * s)) for u in range(s)])
    c[0] *= np.sqrt(1.0 / s)
    c[1:] *= np.sqrt(2.0 / s)
    return c  # [u, n], orthonormal rows


def dct_dictionary(s: int) -> tuple[np.ndarray, float]:
    c = dct_basis_1d(s)
    atoms = [np.outer(c[u], c[v]) for u in range(s) for v in range(s) if (u, v) != (0, 0)]
    d = np.stack(atoms)
    grid = 64 * s
    h = filter_responses(d, grid, grid)
    big_l = float(np.max(np.sum(np.abs(h) ** 2, axis=0)))
    return d / np.sqrt(big_l), big_l


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=pathlib.Path, default=REPO / "models" / "dictionaries")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    for s in (3, 5):
        d, big_l = dct_dictionary(s)
        d32 = d.astype(np.float32)
        name = f"dct{s}"
        np.save(args.out / f"{name}.npy", d32)
        h256 = filter_responses(d32, 256, 256)
        l256 = float(np.max(np.sum(np.abs(h256) ** 2, axis=0)))
        side = {
            "name": name,
            "description": (
                f"2-D orthonormal DCT-II basis of size {s}x{s} without the constant (DC) atom, "
                f"K = {s * s - 1} atoms in row-major (u, v) order (u = vertical frequency), all scaled by "
                f"1/sqrt(L) with L = sup_w sum_k |h_k(w)|^2 over all frequencies before scaling "
                f"(= {big_l:.12g}, evaluated on a {64 * s}x{64 * s} grid), so the dictionary has L = 1. "
                f"On a 256x256 grid the all-frequency L of the float32 file is {l256:.9f}."
            ),
            "how_learned": "not learned: analytic DCT-II basis",
            "training_data": None,
            "made_by": "models/.venv/bin/python models/reference/make_dictionaries.py",
            "K": int(d32.shape[0]),
            "s": s,
        }
        (args.out / f"{name}.json").write_text(json.dumps(side, indent=2) + "\n")
        print(f"{name}: K={d32.shape[0]} s={s} L_before={big_l:.15g} scale={1 / np.sqrt(big_l):.15g} L256={l256:.9f}")


if __name__ == "__main__":
    main()
