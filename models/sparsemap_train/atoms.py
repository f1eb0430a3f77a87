"""A low-pass atom for a dictionary (issue 12, the background lever).

The reconstruction splits ``x = x_low + D z`` (docs/design.md §3.7): ``x_low = G_a y`` carries
the low frequencies *unregularised*, so a flat background keeps its low-frequency noise where
TV flattens it. With a larger split weight ``a`` only the lowest frequencies stay in
``x_low``; the band it used to carry goes through this atom instead, whose coefficients get a
Lambda map like every other filter. The network (equivariant: the atom is just one more
filter to it) can then penalise the band hard in the background and leave it free inside
the head.

The atom is the spatial kernel of ``(I + b grad^H grad)^{-1}`` with circular finite
differences: its DFT is ``G_b`` of §3.7 (1 at DC, falling off as the Laplacian's symbol
grows), truncated to ``side x side`` (with ``b = 1`` and ``side = 9`` the truncation drops
under 1e-4 of the kernel's energy) and scaled to sum 1, i.e. response 1 at DC.

Run (from the repository root, PYTHONPATH=models) to write ``models/dictionaries/NAME_lp``::

    models/.venv/bin/python -m sparsemap_train.atoms --dictionary cdl_k32_s9 dct5 cdl_k16_s7
"""

from __future__ import annotations

import argparse
import json
import pathlib

import numpy as np

REPO = pathlib.Path(__file__).resolve().parents[2]
#: ``b`` of the atom, and its side.
ATOM_WEIGHT = 1.0
ATOM_SIDE = 9
#: Suffix of a dictionary with the atom appended.
SUFFIX = "_lp"


def lowpass_atom(weight: float = ATOM_WEIGHT, side: int = ATOM_SIDE) -> np.ndarray:
    """``[side, side]`` float32: the truncated kernel of ``(I + weight grad^H grad)^{-1}``, sum 1."""
    n = 64
    k = np.arange(n)
    lap = 4 - 2 * np.cos(2 * np.pi * k / n)[:, None] - 2 * np.cos(2 * np.pi * k / n)[None, :]
    kernel = np.roll(np.real(np.fft.ifft2(1 / (1 + weight * lap))), (n // 2, n // 2), (0, 1))
    c = side // 2
    atom = kernel[n // 2 - c: n // 2 + c + 1, n // 2 - c: n // 2 + c + 1]
    return (atom / atom.sum()).astype(np.float32)


def with_lowpass_atom(d: np.ndarray, weight: float = ATOM_WEIGHT, side: int = ATOM_SIDE) -> np.ndarray:
    """``d [K, s, s]`` zero-padded to the common side ``max(s, side)`` with the atom appended
    last: ``[K + 1, s', s']`` (padding with zeros does not change a filter's response)."""
    k, s, _ = d.shape
    big = max(s, side)
    out = np.zeros((k + 1, big, big), np.float32)
    o = (big - s) // 2
    out[:k, o:o + s, o:o + s] = d
    oa = (big - side) // 2
    out[k, oa:oa + side, oa:oa + side] = lowpass_atom(weight, side)
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dictionary", nargs="+", required=True, help="names in models/dictionaries/")
    ap.add_argument("--weight", type=float, default=ATOM_WEIGHT)
    ap.add_argument("--side", type=int, default=ATOM_SIDE)
    args = ap.parse_args(argv)
    folder = REPO / "models" / "dictionaries"
    for name in args.dictionary:
        src = folder / f"{name}.npy"
        d = np.load(src)
        out = with_lowpass_atom(d, args.weight, args.side)
        np.save(folder / f"{name}{SUFFIX}.npy", out)
        meta = {"name": f"{name}{SUFFIX}",
                "description": f"{name} (zero-padded to {out.shape[1]}x{out.shape[2]}) with a low-pass atom "
                               f"appended last: the {args.side}x{args.side} kernel of (I + {args.weight} grad^H grad)^-1, "
                               "sum 1 (response 1 at DC)",
                "made_by": f"PYTHONPATH=models models/.venv/bin/python -m sparsemap_train.atoms --dictionary {name}"
                           + (f" --weight {args.weight}" if args.weight != ATOM_WEIGHT else "")
                           + (f" --side {args.side}" if args.side != ATOM_SIDE else ""),
                "K": int(out.shape[0]), "s": int(out.shape[1])}
        (folder / f"{name}{SUFFIX}.json").write_text(json.dumps(meta, indent=2) + "\n")
        print(f"wrote models/dictionaries/{name}{SUFFIX}.npy {out.shape}")


if __name__ == "__main__":
    main()
