"""Ablation: scalar-lambda CSC with a *learned* dictionary (what do the learned maps add over
the learned dictionary alone?). The solver is the JAX float32 reconstruction (T = 64, a = 1,
the host CSC baseline's settings), lambda tuned on the 7 validation slices the host tuned
the baselines on, by mean whole-image PSNR (magnitudes, peak = max |target|, as the host
metric), then measured on the whole test split.

Inputs: the host's simulations of the acquisition (identical to what `eval` simulates)::

    target/release/sparsemap-host simulate --split data/test.npz --out /tmp/sim/test.npz
    target/release/sparsemap-host simulate --split data/validation.npz --out /tmp/sim/validation.npz
    PYTHONPATH=models models/.venv/bin/python -m sparsemap_train.ablation_scalar_csc \\
        --dictionary models/dictionaries/cdl_k32_s9.npy --sim /tmp/sim        # ~10 min, one core
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib

os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1")

import jax  # noqa: E402
import numpy as np  # noqa: E402

from . import recon  # noqa: E402
from .train import psnr  # noqa: E402

VALIDATION_SLICES = [0, 2, 4, 7, 9, 11, 13]



def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dictionary", required=True)
    ap.add_argument("--sim", required=True, help="folder with test.npz and validation.npz from `simulate`")
    args = ap.parse_args(argv)
    d = np.load(args.dictionary)
    solve = jax.jit(lambda k, m, lam: recon.reconstruct(k, m, d, lam, 64, 1.0)["x"])
    sim = pathlib.Path(args.sim)
    with np.load(sim / "validation.npz") as z:
        kv, mv, tv = z["kspace"], z["mask"], z["target"]
    best = None
    for lam in np.geomspace(0.002, 0.03, 7):
        p = np.mean([psnr(np.asarray(solve(kv[i], mv[i], lam)), tv[i]) for i in VALIDATION_SLICES])
        print(json.dumps({"lambda": float(lam), "validation_psnr": float(p)}), flush=True)
        if best is None or p > best[1]:
            best = (lam, p)
    with np.load(sim / "test.npz") as z:
        kt, mt, tt = z["kspace"], z["mask"], z["target"]
    ps = [psnr(np.asarray(solve(kt[i], mt[i], best[0])), tt[i]) for i in range(len(tt))]
    print(json.dumps({"dictionary": args.dictionary, "best_lambda": float(best[0]),
                      "test_psnr_mean": float(np.mean(ps)), "slices": len(ps)}))


if __name__ == "__main__":
    main()
