"""How much of each method's whole-image error is background, from a per-source eval.

For every test slice of ``sources.json`` (``sparsemap-host eval --per-source``) the whole-image
and head PSNRs (both with data range 1 on magnitudes normalised by max|target|) give the two
mean squared errors; with ``f`` the head mask's share of the 256² grid,

    MSE_whole = f · MSE_head + (1 − f) · MSE_background,

so ``1 − f · MSE_head / MSE_whole`` is the background's share of the error and
``−10 log10(f · MSE_head)`` the whole-image PSNR the method would reach with a perfect
background and its own head error: an upper bound on what a background lever (an identity atom
or a regularised low-pass) can give. Prints, per acquisition and source, each method's whole
PSNR, that bound and the background share, and the learned method's bound minus the best
classical method's actual whole PSNR (the margin a perfect background would give).

    models/.venv/bin/python models/tools/background_bound.py results/sources/sources.json
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict

import numpy as np

CLASSICAL = ("csc", "tv", "bart-wavelet", "bart-tv")


def main(path: str, learned: str = "learned-int8") -> None:
    report = json.load(open(path))
    share = {}
    for source in report["sources"]:
        with np.load(source["test"]) as z:
            masks = z["head_mask"]
        share[source["name"]] = {i: float(masks[i].mean()) for i in source["test_slices"]}
    rows = defaultdict(list)
    for r in report["results"]:
        f = share[r["dataset"]][r["slice"]]
        mse_whole, mse_head = 10 ** (-r["psnr"] / 10), 10 ** (-r["psnr_head"] / 10)
        rows[(r["acquisition"], r["dataset"], r["method"])].append(
            (r["psnr"], -10 * np.log10(f * mse_head), 1 - f * mse_head / mse_whole))
    for acquisition in dict.fromkeys(a for a, _, _ in rows):
        print(f"## {acquisition}")
        margins = []
        for source in share:
            means = {m: np.mean(v, axis=0) for (a, s, m), v in rows.items() if a == acquisition and s == source}
            best = max((means[m][0], m) for m in CLASSICAL if m in means)
            cells = [f"{m} {v[0]:.2f}/{v[1]:.2f}/{v[2]:.2f}" for m, v in means.items() if m in ("tv", "bart-tv", learned)]
            margin = means[learned][1] - best[0]
            margins.append(margin)
            print(f"{source:14s} whole/bg-free bound/bg share: " + "  ".join(cells)
                  + f"  | {learned} bound - best classical ({best[1]}) {margin:+.2f}")
        print(f"mean margin with a perfect background: {np.mean(margins):+.2f} dB\n")


if __name__ == "__main__":
    main(*sys.argv[1:])
