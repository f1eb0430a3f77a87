"""Convolutional dictionary learning on the high-pass part of training images.

Model: ``x_high ~ sum_k d_k (*) z_k`` with sparse codes, alternating

* codes: ``T_z`` FISTA iterations of §3.5 with a full mask (``M = 1``), the same solver as the
  reconstruction (:func:`recon.fista`), a scalar ``lam`` and ``tau = 1/L``;
* filters: one Adam step on ``1/2 ||sum_k h_k (.) F z_k - F x_high||^2`` with the codes fixed,
  then projection onto zero-mean, unit-norm filters (the low-pass part is not the
  dictionary's job, and the norm removes the scale ambiguity between d and z).

``x_high = F^H((1 - G) (.) F x)`` with the low-pass response ``G`` of §3.7 (weight ``a``), on
random ``crop x crop`` windows of the images (circular convolution on a crop is a small
approximation; the windows are random, so its edge effects average out). Images are
scaled so that their 99th-percentile magnitude is 1 (as the reconstruction scales ``x0``).

At the end the dictionary is scaled to ``L = 1`` over all frequencies of a 256x256 grid (the
convention of models/dictionaries: the solver's step is then about 1 with any mask).

Run (from the repository root; ``scripts/train-model.sh`` runs the four committed ones)::

    PYTHONPATH=models models/.venv/bin/python -m sparsemap_train.cdl --k 32 --s 9 --steps 1500 --seed 2 \
        --data data/train.npz --out models/dictionaries/cdl_k32_s9
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import sys

os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402

from . import recon  # noqa: E402

#: Grid on which the final dictionary is normalised to L = 1 (all frequencies).
NORMALISE_GRID = 256


def project(d):
    """Zero-mean, unit-norm filters."""
    d = d - jnp.mean(d, axis=(1, 2), keepdims=True)
    return d / jnp.sqrt(jnp.sum(d ** 2, axis=(1, 2), keepdims=True))


def highpass(x: np.ndarray, a: float) -> np.ndarray:
    n_y, n_x = x.shape
    g = recon.lowpass_filter(n_y, n_x, a, jnp.float32)
    return np.asarray(recon.centred_ifft2((1.0 - g) * recon.centred_fft2(jnp.asarray(x, jnp.complex64))))


def lipschitz_all(d, n: int = NORMALISE_GRID) -> float:
    h = recon.filter_responses(jnp.asarray(d, jnp.float64 if jax.config.jax_enable_x64 else jnp.float32), n, n)
    return float(jnp.max(jnp.sum(jnp.abs(h) ** 2, axis=0)))


def learn(images, k: int, s: int, steps: int = 200, crop: int = 64, lam: float = 0.05, code_iterations: int = 30,
          lr: float = 1e-2, a: float = recon.LOWPASS_WEIGHT, seed: int = 0, log=print):
    """Learns ``[k, s, s]`` filters; returns ``(d, history)`` with ``d`` normalised to L = 1."""
    rng = np.random.default_rng(seed)
    scaled = []
    for x in images:
        x = np.asarray(x, np.complex64)
        scaled.append(x / np.percentile(np.abs(x), 99))
    d = project(jnp.asarray(rng.standard_normal((k, s, s)), jnp.float32))
    opt = optax.adam(lr)
    state = opt.init(d)
    ones = jnp.ones((crop, crop), jnp.float32)

    @jax.jit
    def step(d, state, window):
        y = recon.centred_fft2(window)
        h = recon.filter_responses(d, crop, crop)
        big_l = jnp.max(jnp.sum(jnp.abs(h) ** 2, axis=0))
        z = jax.lax.stop_gradient(recon.fista(y, h, ones, jnp.full(h.shape, lam, jnp.float32), 1.0 / big_l,
                                              code_iterations))

        def data_term(d):
            return 0.5 * jnp.sum(jnp.abs(recon.synthesis(z, recon.filter_responses(d, crop, crop), ones) - y) ** 2)

        f, g = jax.value_and_grad(data_term)(d)
        sparsity = lam * jnp.sum(jnp.abs(z))
        updates, state = opt.update(g, state, d)
        d = project(optax.apply_updates(d, updates))
        rel = 2 * f / jnp.sum(jnp.abs(y) ** 2)
        return d, state, f + sparsity, rel, jnp.mean(z != 0)

    history = []
    for i in range(steps):
        # Windows mostly outside the head teach nothing: draw until one is at least half object.
        for _ in range(100):
            x = scaled[rng.integers(len(scaled))]
            oy, ox = rng.integers(0, x.shape[0] - crop + 1), rng.integers(0, x.shape[1] - crop + 1)
            if np.mean(np.abs(x[oy:oy + crop, ox:ox + crop]) > 0.1) >= 0.5:
                break
        window = jnp.asarray(highpass(x[oy:oy + crop, ox:ox + crop], a))
        d, state, obj, rel, nz = step(d, state, window)
        rec = {"step": i, "objective": float(obj), "relative_residual": float(rel), "nonzero": float(nz)}
        history.append(rec)
        if log and (i % 20 == 0 or i == steps - 1):
            log(json.dumps(rec))
    d = np.asarray(d, np.float64)
    d = d / np.sqrt(lipschitz_all(d))
    return d.astype(np.float32), history


def load_targets(path) -> np.ndarray:
    """The ``target`` images ``[n, N, N]`` of an exported split; errors name the file."""
    try:
        with np.load(path) as z:
            targets = z["target"]
    except (OSError, ValueError, KeyError) as e:
        raise SystemExit(f"{path}: not an exported split with a 'target' array ({e})")
    if targets.ndim != 3 or not np.all(np.isfinite(targets)):
        raise SystemExit(f"{path}: 'target' must be finite [n, N_y, N_x], got shape {targets.shape}")
    return targets


def save_png(d: np.ndarray, path: pathlib.Path, zoom: int = 8) -> None:
    """All filters on one sheet (each scaled to its own [-max, max] -> [0, 255], grey = 0)."""
    from PIL import Image

    k, s, _ = d.shape
    cols = int(np.ceil(np.sqrt(k)))
    rows = int(np.ceil(k / cols))
    cell = s * zoom + 2
    sheet = np.full((rows * cell, cols * cell), 255, np.uint8)
    for i in range(k):
        f = d[i] / (np.max(np.abs(d[i])) or 1.0)
        tile = np.kron(np.round(127.5 + 127.5 * f).astype(np.uint8), np.ones((zoom, zoom), np.uint8))
        r, c = divmod(i, cols)
        sheet[r * cell + 1: r * cell + 1 + s * zoom, c * cell + 1: c * cell + 1 + s * zoom] = tile
    Image.fromarray(sheet).save(path)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--k", type=int, required=True)
    ap.add_argument("--s", type=int, required=True)
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--crop", type=int, default=64)
    ap.add_argument("--lam", type=float, default=0.05)
    ap.add_argument("--seed", type=int, default=0)
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--data", help="an exported split (data/train.npz from sparsemap-host export): its targets")
    src.add_argument("--images", nargs="+", help=".npy images [N, N] (complex or real)")
    ap.add_argument("--out", required=True, help="output prefix: PREFIX.npy, PREFIX.json, PREFIX.png")
    args = ap.parse_args(argv)
    if args.data:
        images = list(load_targets(args.data))
        sources = [args.data]
    else:
        images = [np.load(p) for p in args.images]
        sources = list(args.images)
    d, history = learn(images, args.k, args.s, args.steps, args.crop, args.lam, seed=args.seed)
    out = pathlib.Path(args.out)
    np.save(out.with_suffix(".npy"), d)
    save_png(d, out.with_suffix(".png"))
    meta = {
        "name": out.name,
        "description": f"learned convolutional dictionary, K = {args.k} zero-mean {args.s}x{args.s} filters, "
                       f"scaled to L = 1 over all frequencies of a {NORMALISE_GRID}x{NORMALISE_GRID} grid",
        "how_learned": f"sparsemap_train.cdl: {args.steps} alternating steps (30 FISTA code iterations, lam "
                       f"{args.lam}; one Adam step on the filters) on random {args.crop}x{args.crop} high-pass "
                       f"windows (lowpass_weight {recon.LOWPASS_WEIGHT}), seed {args.seed}",
        "training_data": sources,
        "training_images": len(images),
        "made_by": "models/.venv/bin/python -m sparsemap_train.cdl " + " ".join(sys.argv[1:] if argv is None else argv),
        "final_relative_residual": history[-1]["relative_residual"],
        "K": args.k,
        "s": args.s,
    }
    out.with_suffix(".json").write_text(json.dumps(meta, indent=2) + "\n")


if __name__ == "__main__":
    main()
