"""Supervised training of the Lambda network through the unrolled reconstruction.

The loss runs the reconstruction of docs/design.md §3.7 exactly as the Rust core does
(:mod:`recon`: scaling, low-pass split with weight ``a``, ``L`` over the sampled
frequencies, fixed-T FISTA) with Lambda maps predicted by :mod:`lambda_net` from the
features of :mod:`features`, and compares the image with the target:

    loss = ||x - target||^2 / ||target||^2       (complex, on the scale of F^H y)

The low-pass weight is learned too (as ``a = exp(log_a)``): ``x_low`` passes its
low-frequency noise with no sparsity penalty, so ``a`` trades that noise against what the
dictionary has to represent. Errors are reported separately inside the head mask and in the
background.

Each step draws one training slice, one dictionary and a random permutation of its
filters (fixed seeds: a run is reproducible).

Status: the pipeline runs on the two example slices (``--preset smoke``); the real
training set (data/*.npz from the host crate) is not wired in yet.

Run (from models/)::

    .venv/bin/python -m sparsemap_train.train --preset smoke --out /tmp/smoke
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import time

os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402

from . import export, lambda_net, recon  # noqa: E402
from . import features as feat  # noqa: E402

REPO = pathlib.Path(__file__).resolve().parents[2]

PRESETS = {
    # seconds: the test suite's check that one training step runs and changes the parameters
    "test": dict(size=64, iterations=4, steps=2, lr=1e-3, noise=0.05, block=0.5, seed=0,
                 dictionaries=["dct3"], slices=["examples/colin27"]),
    # a few minutes on one core: the pipeline works and the loss goes down
    "smoke": dict(size=128, iterations=16, steps=40, lr=3e-3, noise=0.05, block=0.5, seed=0,
                  dictionaries=["dct3", "dct5"], slices=["examples/colin27", "examples/colin27/validation"]),
}


def downsample_slice(target: np.ndarray, size: int) -> np.ndarray:
    """The same object on a ``size`` grid: central ``size x size`` of ``F target`` times size/N."""
    full = np.asarray(recon.centred_fft2(jnp.asarray(target.astype(np.complex128))))
    n = target.shape[0]
    c = n // 2
    k = full[c - size // 2: c + size // 2, c - size // 2: c + size // 2] * (size / n)
    return np.asarray(recon.centred_ifft2(jnp.asarray(k)))


def simulate(target: np.ndarray, rng: np.random.Generator, noise: float, block: float):
    """Central-block k-space (side ``block * N``) with complex Gaussian noise of ``noise`` x rms."""
    n = target.shape[0]
    k = np.asarray(recon.centred_fft2(jnp.asarray(target)))
    rms = np.sqrt(np.mean(np.abs(k) ** 2))
    k = k + noise * rms / np.sqrt(2) * (rng.standard_normal(k.shape) + 1j * rng.standard_normal(k.shape))
    b = int(round(block * n / 2)) * 2
    mask = np.zeros((n, n), np.uint8)
    mask[n // 2 - b // 2: n // 2 + b // 2, n // 2 - b // 2: n // 2 + b // 2] = 1
    return (k * mask).astype(np.complex64), mask


def head_mask(target: np.ndarray) -> np.ndarray:
    """Head = |target| above 5 % of its maximum (until data/*.npz brings the real head_mask)."""
    mag = np.abs(target)
    return (mag > 0.05 * mag.max()).astype(np.float32)


def make_loss(iterations: int):
    def loss_fn(trainable, kspace, mask, d, target, head):
        a = jnp.exp(trainable["log_a"])
        pr = recon.prepare(kspace, mask, d, a)
        x_in = feat.features(pr)
        lam = lambda_net.apply(trainable["net"], x_in)[:, 0]
        out = recon.reconstruct(kspace, mask, d, lam, iterations, a, prepared=pr)
        err = jnp.abs(out["x"] - target) ** 2
        norm = jnp.sum(jnp.abs(target) ** 2)
        loss = jnp.sum(err) / norm
        aux = {"head": jnp.sum(err * head) / jnp.sum(jnp.abs(target * head) ** 2),
               "background": jnp.sum(err * (1 - head)) / norm,
               "lambda_mean": jnp.mean(lam)}
        return loss, aux
    return loss_fn


def train(preset: str, out: pathlib.Path, steps: int | None = None) -> dict:
    cfg = dict(PRESETS[preset])
    if steps is not None:
        cfg["steps"] = steps
    rng = np.random.default_rng(cfg["seed"])
    slices = []
    for s in cfg["slices"]:
        target = downsample_slice(np.load(REPO / s / "target.npy"), cfg["size"])
        kspace, mask = simulate(target, rng, cfg["noise"], cfg["block"])
        slices.append((kspace, mask, target.astype(np.complex64), head_mask(target)))
    dicts = [np.load(REPO / "models" / "dictionaries" / f"{name}.npy") for name in cfg["dictionaries"]]
    trainable = {"net": lambda_net.init(seed=cfg["seed"]),
                 "log_a": jnp.asarray(np.log(recon.LOWPASS_WEIGHT), jnp.float32)}
    opt = optax.adam(cfg["lr"])
    state = opt.init(trainable)
    grad_fn = jax.jit(jax.value_and_grad(make_loss(cfg["iterations"]), has_aux=True))
    history = []
    t0 = time.time()
    for step in range(cfg["steps"]):
        kspace, mask, target, head = slices[step % len(slices)]
        d = dicts[rng.integers(len(dicts))]
        d = d[rng.permutation(d.shape[0])]
        (loss, aux), grads = grad_fn(trainable, kspace, mask, d, target, head)
        updates, state = opt.update(grads, state, trainable)
        trainable = optax.apply_updates(trainable, updates)
        rec = {"step": step, "loss": float(loss), "head": float(aux["head"]),
               "background": float(aux["background"]), "lambda_mean": float(aux["lambda_mean"]),
               "a": float(jnp.exp(trainable["log_a"])), "seconds": round(time.time() - t0, 1)}
        history.append(rec)
        print(json.dumps(rec), flush=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    info = {"iterations": cfg["iterations"],
            "lowpass_weight": float(jnp.exp(trainable["log_a"])), "preset": preset, "config": cfg,
            "dictionaries": ", ".join(cfg["dictionaries"]),
            "description": f"sparsemap_train.train preset {preset} ({cfg['steps']} steps)"}
    export.save_params(str(out) + ".params.npz", trainable["net"], info)
    (pathlib.Path(str(out) + ".history.json")).write_text(json.dumps(history, indent=1) + "\n")
    return {"history": history, "info": info}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--preset", default="smoke", choices=sorted(PRESETS))
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument("--out", required=True, help="output prefix: PREFIX.params.npz, PREFIX.history.json")
    args = ap.parse_args(argv)
    jax.config.update("jax_enable_x64", False)
    train(args.preset, pathlib.Path(args.out), args.steps)


if __name__ == "__main__":
    main()
