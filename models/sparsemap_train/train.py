"""Supervised training of the Lambda network through the unrolled reconstruction.

The loss runs the reconstruction of docs/design.md §3.7 exactly as the Rust core does
(:mod:`recon`: scaling, low-pass split with weight ``a``, ``L`` over the sampled
frequencies, fixed-T FISTA) with Lambda maps predicted by :mod:`lambda_net` from the
features of :mod:`features`, and compares the image with the target:

    loss = log(||x - target||^2 / ||target||^2)      (complex, on the scale of F^H y)

The log makes a step's gradient independent of how hard the slice is, and its mean over
slices is, up to a constant, minus the mean PSNR that the evaluation reports.

The low-pass weight is learned too (``a = exp(log_a)``): ``x_low`` passes its
low-frequency noise with no sparsity penalty, so ``a`` trades that noise against what the
dictionary has to represent. Errors inside the head mask and in the background are logged
separately.

Data (preset ``default``): the ``train`` split of ``sparsemap-host export`` (data/train.npz,
targets and head masks). Each step draws one slice, a random ``crop x crop`` window of it
(with a random flip/transpose), a relative noise level ``s`` (log-uniform in the project's
range) and a central-block fraction, simulates the acquisition as the host does (complex
Gaussian noise with ``E|n|^2 = (s rms(F target))^2``, the rms taken over the *whole* slice so
that a crop sees the slice's noise level), then draws a dictionary and a random permutation
of its filters. Two phases:

1. crops (``crop``, default 128 with a 64 block: the same resolution ratio as 128 of 256),
   ``iterations`` = the model's T — 4x cheaper per step than the full grid;
2. fine-tuning on whole 256x256 slices for ``finetune_steps`` (what the model meets at
   inference: the full field of view and its background).

Every ``validate_every`` steps the current parameters reconstruct validation slices at
N = 256, block 128, s = 0.15 (the acceptance setting) and the best-scoring parameters are
what is saved. All randomness comes from ``seed``: a run is reproducible.

Several sources (issue 12). ``data`` and ``validation`` are comma-separated lists of split
files (repository-relative ``.npz`` with ``target`` and ``head_mask``; ``examples`` = the two
bundled slices); a missing file stops the run naming it. A training step draws a *file*
uniformly, then a slice of it (the sources differ a lot in size; with one file there is no
file draw, so ``default`` keeps its random stream). Validation takes ``validation_slices``
evenly spaced slices of *every* file, so each source takes part in model selection.

Domain randomisation (``augment``: a dict of :data:`augment.DEFAULT` entries, ``None`` = off):
before the crop, the whole clean slice goes through :func:`augment.augment` — random zoom
(0.8–1.25), random piecewise-linear contrast curve with ``curve(0) = 0`` (often
non-monotone: contrast inversion), gamma, smooth multiplicative bias field, occasional
faint background structure outside the head mask, occasional blur, a new smooth random
phase (the export's rule), renormalised to ``max |target| = 1``; the head mask follows the
geometry. The noise is then ``s`` times the rms of the *augmented* slice. Acquisition
randomisation: with probability ``vd_prob`` the mask is a 1-D variable-density ky-line mask
(:func:`augment.random_vd_mask`: acceleration 2–4, fully sampled central 8–16 % of the
lines) instead of a central block. With ``augment=None`` and ``vd_prob=0`` training is
exactly what it was before these options existed.

Presets:

* ``default`` — the committed model (one file, no augmentation);
* ``multisource`` — all six training sources, four validation files (2 slices each),
  augmentation :data:`augment.DEFAULT`, ``s`` log-uniform in [0.05, 0.4], ``vd_prob`` 0.25;
  the budget of ``default`` (1200 crop steps + 100 whole-slice steps, T = 32);
* ``multisource_noaug`` — the same data with no augmentation and the noise and masks of
  ``default`` (the ablation);
* ``multisource_lp`` — ``multisource`` with a low-pass atom (:mod:`atoms`) in every dictionary
  and a split weight starting at 30 (a background lever that lost: see models/README.md);
* ``multisource_gate`` — ``multisource`` trained through the background gate of
  docs/design.md §3.7 item 7 (``background_gate`` = its threshold), which the edge runtime
  applies to a model's image by default;
* ``test`` / ``test_aug`` — seconds-long smoke runs on ``examples`` (without / with the
  augmented path and variable-density masks).

``--data LIST``, ``--validation LIST`` and ``--seed`` override the preset (e.g. for
leave-one-source-out runs); ``--steps`` and ``--finetune-steps`` the step counts. The saved
parameters' info records the whole config, the augmentation dict and a description.

Run (from the repository root)::

    models/.venv/bin/python -m sparsemap_train.train --preset default --out models/lambda/default
    models/.venv/bin/python -m sparsemap_train.train --preset multisource --out models/lambda/multisource
    # leave one source out (here the synthetic T2):
    models/.venv/bin/python -m sparsemap_train.train --preset multisource --out /tmp/no_t2 --data \\
        data/train.npz,data/colin27_bet_train.npz,data/colin27_hires_train.npz,data/mni152_t1_train.npz,data/inia19_t1_train.npz
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

from . import augment, export, lambda_net, recon  # noqa: E402
from . import features as feat  # noqa: E402

REPO = pathlib.Path(__file__).resolve().parents[2]

_COMMON = dict(noise=(0.075, 0.3), blocks=(0.375, 0.5, 0.5, 0.625), seed=0, lr=2e-3, lr_final=1e-4,
               validation="data/validation.npz", validation_slices=4, validate_every=250,
               data="data/train.npz", dictionaries=["cdl_k16_s7", "cdl_k32_s9", "dct5"],
               augment=None, vd_prob=0.0, lowpass_init=1.0, background_gate=None)
# Several sources (``sparsemap-host export --out-dir data``): each file is drawn equally often.
_MULTI = dict(data="data/train.npz,data/colin27_bet_train.npz,data/colin27_hires_train.npz,"
                   "data/mni152_t1_train.npz,data/synthetic_t2_train.npz,data/inia19_t1_train.npz",
              validation="data/validation.npz,data/mni152_t1_validation.npz,"
                         "data/synthetic_t2_validation.npz,data/inia19_t1_validation.npz",
              validation_slices=2)
PRESETS = {
    # the model that is committed (models/lambda/default.*): about 45 min on one core
    "default": dict(_COMMON, crop=128, iterations=32, steps=1200, finetune_steps=100),
    # issue 12: all sources, domain randomisation (augment.DEFAULT), wider noise, 1-D
    # variable-density masks in a quarter of the steps; the budget of `default`
    "multisource": dict(_COMMON, **_MULTI, crop=128, iterations=32, steps=1200, finetune_steps=100,
                        augment=dict(augment.DEFAULT), noise=(0.05, 0.4), vd_prob=0.25),
    # the background lever: every dictionary with the low-pass atom of `atoms` appended, and a
    # split weight starting at 30 (x_low keeps only the lowest frequencies; the atom's Lambda
    # map regularises the band x_low carried before)
    "multisource_lp": dict(_COMMON, **_MULTI, crop=128, iterations=32, steps=1200, finetune_steps=100,
                           augment=dict(augment.DEFAULT), noise=(0.05, 0.4), vd_prob=0.25,
                           dictionaries=["cdl_k16_s7_lp", "cdl_k32_s9_lp", "dct5_lp"], lowpass_init=30.0),
    # `multisource` trained through the background gate of §3.7 item 7 (the edge runtime gates
    # a model's image by default): the maps need not clean the background
    "multisource_gate": dict(_COMMON, **_MULTI, crop=128, iterations=32, steps=1200, finetune_steps=100,
                             augment=dict(augment.DEFAULT), noise=(0.05, 0.4), vd_prob=0.25,
                             background_gate=recon.BACKGROUND_GATE),
    # its ablation: the same data, no augmentation, the noise and masks of `default`
    "multisource_noaug": dict(_COMMON, **_MULTI, crop=128, iterations=32, steps=1200, finetune_steps=100),
    # seconds: the test suite's check that training steps run and change the parameters
    "test": dict(_COMMON, crop=64, iterations=4, steps=2, finetune_steps=0, validate_every=0,
                 data="examples", dictionaries=["dct3"]),
}
# the same with the augmented path of `multisource` (vd masks in half the steps)
PRESETS["test_aug"] = dict(PRESETS["test"], augment=dict(augment.DEFAULT), noise=(0.05, 0.4), vd_prob=0.5)

EXPORT_HINT = "run `sparsemap-host export --out-dir data` first"


def split_paths(spec: str) -> list:
    """The files of a comma-separated list of repository-relative splits (``examples``: the
    two bundled example slices). A missing file is a ``SystemExit`` that names it."""
    paths = [REPO / part.strip() for part in spec.split(",") if part.strip()]
    if not paths:
        raise SystemExit(f"no data files in {spec!r}")
    for path in paths:
        if path.name != "examples" and not path.is_file():
            raise SystemExit(f"{path}: no such split file; {EXPORT_HINT}")
    return paths


def load_split(path: pathlib.Path):
    """``(targets [n, N, N] complex64, head_masks [n, N, N] float32)`` of an exported split,
    or of the two bundled example slices when ``path`` is ``examples`` (tests)."""
    if path.name == "examples":
        targets = np.stack([np.load(REPO / "examples/colin27" / s / "target.npy") for s in ("", "validation")])
        return targets.astype(np.complex64), (np.abs(targets) > 0.05 * np.abs(targets).max()).astype(np.float32)
    try:
        with np.load(path) as z:
            targets, heads = z["target"], z["head_mask"]
    except (OSError, ValueError, KeyError) as e:
        raise SystemExit(f"{path}: not an exported split with 'target' and 'head_mask' ({e}); {EXPORT_HINT}")
    if targets.ndim != 3 or targets.shape != heads.shape or not np.all(np.isfinite(targets)):
        raise SystemExit(f"{path}: 'target' and 'head_mask' must be finite [n, N_y, N_x] of one shape")
    return targets.astype(np.complex64), heads.astype(np.float32)


def simulate(target: np.ndarray, rng: np.random.Generator, sigma: float, block: float | None,
             mask: np.ndarray | None = None):
    """Central-block k-space (side ``block * N``, even; or the given ``mask``) plus complex
    Gaussian noise with ``E|n|^2 = sigma^2`` on the sampled samples (the host's model,
    docs/design.md §8.1)."""
    n = target.shape[0]
    k = np.asarray(recon.centred_fft2(jnp.asarray(target, jnp.complex64)))
    k = k + sigma / np.sqrt(2) * (rng.standard_normal(k.shape) + 1j * rng.standard_normal(k.shape))
    if mask is None:
        b = int(round(block * n / 2)) * 2
        mask = np.zeros((n, n), np.uint8)
        mask[n // 2 - b // 2: n // 2 + b // 2, n // 2 - b // 2: n // 2 + b // 2] = 1
    return (k * mask).astype(np.complex64), mask


def learned_reconstruction(trainable, kspace, mask, d, iterations: int, background_gate=None):
    """The model's forward pass: features with the learned ``a``, Lambda maps, the T-step solve
    (then the background gate with threshold ``background_gate``, if not ``None``).
    Returns ``(x, lambda_maps)``."""
    a = jnp.exp(trainable["log_a"])
    pr = recon.prepare(kspace, mask, d, a)
    lam = lambda_net.apply(trainable["net"], feat.features(pr))[:, 0]
    x = recon.reconstruct(kspace, mask, d, lam, iterations, a, prepared=pr,
                          background_gate_kappa=background_gate)["x"]
    return x, lam


def make_loss(iterations: int, background_gate=None):
    def loss_fn(trainable, kspace, mask, d, target, head):
        x, lam = learned_reconstruction(trainable, kspace, mask, d, iterations, background_gate)
        err = jnp.abs(x - target) ** 2
        norm = jnp.sum(jnp.abs(target) ** 2)
        loss = jnp.log(jnp.sum(err) / norm)
        aux = {"head": jnp.sum(err * head) / jnp.sum(jnp.abs(target * head) ** 2),
               "background": jnp.sum(err * (1 - head)) / norm,
               "lambda_mean": jnp.mean(lam)}
        return loss, aux
    return loss_fn


def psnr(x, target) -> float:
    """PSNR of the magnitudes with the target's maximum as peak, as ``sparsemap-host eval``
    computes it (model selection and the Python-side checks; the tables come from the host)."""
    ref = np.abs(target)
    return float(10 * np.log10(ref.max() ** 2 / np.mean((np.abs(x) - ref) ** 2)))


def validation_cases(cfg) -> list:
    """The fixed validation problems ``(kspace, mask, target, head)`` of a preset: block 128 of
    256, s = 0.15, noise seeded by ``cfg["seed"] + 1`` (shared by the Lambda network's and the
    U-Net baseline's model selection)."""
    rng = np.random.default_rng(cfg["seed"] + 1)
    cases = []
    # `validation_slices` evenly spaced in every file: each source takes part in selection
    for path in split_paths(cfg["validation"]):
        targets, heads = load_split(path)
        pick = np.linspace(0, len(targets) - 1, cfg["validation_slices"]).round().astype(int)
        for i in pick:
            sigma = 0.15 * np.sqrt(np.mean(np.abs(targets[i]) ** 2))
            kspace, mask = simulate(targets[i], rng, sigma, 0.5)
            cases.append((kspace, mask, targets[i], heads[i]))
    return cases


class Validator:
    """The fixed validation problems (:func:`validation_cases`) and a jitted solve."""

    def __init__(self, cfg, dictionary: np.ndarray):
        self.cases = validation_cases(cfg)
        self.d = jnp.asarray(dictionary)
        t, gate = cfg["iterations"], cfg["background_gate"]

        self.solve = jax.jit(lambda trainable, kspace, mask:
                             learned_reconstruction(trainable, kspace, mask, self.d, t, gate)[0])

    def __call__(self, trainable) -> dict:
        whole, head = [], []
        for kspace, mask, target, hm in self.cases:
            x = np.asarray(self.solve(trainable, kspace, mask))
            whole.append(psnr(x, target))
            head.append(psnr(x[hm > 0], target[hm > 0]))
        return {"psnr": float(np.mean(whole)), "psnr_head": float(np.mean(head))}


def train(preset: str, out: pathlib.Path, steps: int | None = None, finetune_steps: int | None = None,
          data: str | None = None, validation: str | None = None, seed: int | None = None) -> dict:
    cfg = dict(PRESETS[preset])
    for key, value in (("steps", steps), ("finetune_steps", finetune_steps), ("data", data),
                       ("validation", validation), ("seed", seed)):
        if value is not None:
            cfg[key] = value
    data_paths = split_paths(cfg["data"])
    if cfg["validate_every"]:
        split_paths(cfg["validation"])  # a missing validation file fails before any work
    rng = np.random.default_rng(cfg["seed"])
    out.parent.mkdir(parents=True, exist_ok=True)
    files = load_training_files(data_paths)
    aug_cfg = cfg["augment"]
    dicts = [np.load(REPO / "models" / "dictionaries" / f"{name}.npy") for name in cfg["dictionaries"]]
    validate = Validator(cfg, dicts[len(dicts) // 2]) if cfg["validate_every"] else None
    trainable = {"net": lambda_net.init(seed=cfg["seed"]),
                 "log_a": jnp.asarray(np.log(cfg["lowpass_init"]), jnp.float32)}
    total = cfg["steps"] + cfg["finetune_steps"]
    schedule = optax.cosine_decay_schedule(cfg["lr"], total, cfg["lr_final"] / cfg["lr"])
    # A non-finite gradient (should not happen; it would poison Adam's moments) skips the step.
    opt = optax.apply_if_finite(optax.chain(optax.clip_by_global_norm(1.0), optax.adam(schedule)), 10)
    state = opt.init(trainable)
    grad_fn = jax.value_and_grad(make_loss(cfg["iterations"], cfg["background_gate"]), has_aux=True)

    @jax.jit
    def train_step(trainable, state, kspace, mask, d, target, head):
        (loss, aux), grads = grad_fn(trainable, kspace, mask, d, target, head)
        updates, state = opt.update(grads, state, trainable)
        return optax.apply_updates(trainable, updates), state, loss, aux

    history, best = [], {"psnr": -np.inf}
    t0 = time.time()
    for step in range(total):
        kspace, mask, target, head = draw_problem(files, cfg, rng, step)
        d = dicts[rng.integers(len(dicts))]
        d = d[rng.permutation(d.shape[0])]
        trainable, state, loss, aux = train_step(trainable, state, kspace, mask, d, target, head)
        rec = {"step": step, "loss": float(loss), "head": float(aux["head"]),
               "background": float(aux["background"]), "lambda_mean": float(aux["lambda_mean"]),
               "a": float(jnp.exp(trainable["log_a"])), "seconds": round(time.time() - t0, 1)}
        if validate and ((step + 1) % cfg["validate_every"] == 0 or step + 1 in (cfg["steps"], total)):
            rec.update(validate(trainable))
            if rec["psnr"] > best["psnr"]:
                best = {"psnr": rec["psnr"], "step": step, "trainable": trainable}
                # kept on disk too, so that an interrupted run still leaves its best model
                export.save_params(str(out) + ".best.params.npz", trainable["net"],
                                   {"iterations": cfg["iterations"], "lowpass_weight": float(jnp.exp(trainable["log_a"])),
                                    "step": step, "validation_psnr": rec["psnr"]})
        history.append(rec)
        if step % 25 == 0 or "psnr" in rec:
            print(json.dumps(rec), flush=True)
    if validate is None:
        best = {"step": total - 1, "trainable": trainable, "psnr": None}
    chosen = best["trainable"]
    if aug_cfg is None:
        aug_text = "no augmentation"
    else:
        aug_text = "augmentation " + ", ".join(f"{k} {v}" for k, v in aug_cfg.items())
    acq_text = f"noise s in {list(cfg['noise'])}, 1-D variable-density masks with probability {cfg['vd_prob']}"
    info = {"iterations": cfg["iterations"], "lowpass_weight": float(jnp.exp(chosen["log_a"])),
            "preset": preset, "config": cfg, "augment": aug_cfg, "chosen_step": best["step"],
            "validation_psnr": best["psnr"],
            "train_seconds": round(time.time() - t0, 1), "dictionaries": ", ".join(cfg["dictionaries"]),
            "description": f"sparsemap_train.train preset {preset}: {cfg['steps']} steps on {cfg['crop']}^2 crops "
                           f"+ {cfg['finetune_steps']} on whole slices of {cfg['data']}, T = {cfg['iterations']}, "
                           f"seed {cfg['seed']}; {aug_text}; {acq_text}; "
                           f"parameters of step {best['step']} (best validation PSNR)"}
    export.save_params(str(out) + ".params.npz", chosen["net"], info)
    (pathlib.Path(str(out) + ".history.json")).write_text(json.dumps(history, indent=1) + "\n")
    pathlib.Path(str(out) + ".best.params.npz").unlink(missing_ok=True)
    return {"history": history, "info": info}


def load_training_files(paths) -> list:
    """``(targets, head masks, rms per slice)`` of each split file; a step picks a file
    uniformly, then a slice (:func:`draw_problem`)."""
    files = []
    for path in paths:
        targets, heads = load_split(path)
        files.append((targets, heads, np.sqrt(np.mean(np.abs(targets) ** 2, axis=(1, 2)))))
    return files


def draw_problem(files, cfg: dict, rng: np.random.Generator, step: int):
    """One training problem ``(kspace, mask, target, head)`` of step ``step`` (crops before
    ``cfg["steps"]``, whole slices after): a file uniformly, a slice, the augmentation of
    ``cfg``, a random orientation, noise and mask. ``files``: ``(targets, heads, rms)`` per
    split file. Shared by the Lambda network's and the U-Net baseline's training, so both see
    the same problems for the same seed."""
    aug_cfg = cfg["augment"]
    # Windows that are mostly background teach little, and an all-zero one has no loss:
    # draw slice and window until at least a quarter of it is head.
    for _ in range(10_000):
        # (no draw for a single file: `default` keeps the random stream it always had)
        targets, heads, rms = files[rng.integers(len(files)) if len(files) > 1 else 0]
        i = rng.integers(len(targets))
        target, head, slice_rms = targets[i], heads[i], rms[i]
        if aug_cfg is not None:
            # the whole slice, before the crop: the noise level follows the new slice
            target, head = augment.augment(target, head, rng, aug_cfg)
            slice_rms = np.sqrt(np.mean(np.abs(target) ** 2))
        if step < cfg["steps"]:
            crop = cfg["crop"]
            oy, ox = rng.integers(0, target.shape[0] - crop + 1, size=2)
            target, head = target[oy:oy + crop, ox:ox + crop], head[oy:oy + crop, ox:ox + crop]
        if np.mean(head) >= 0.25 or (step >= cfg["steps"] and np.any(head)):
            break
    else:
        raise SystemExit(f"{cfg['data']}: no training window is a quarter head (head masks empty?)")
    sigma = np.exp(rng.uniform(*np.log(cfg["noise"]))) * slice_rms
    flip = rng.integers(8)
    target, head = _orient(target, flip), _orient(head, flip)
    if cfg["vd_prob"] > 0 and rng.random() < cfg["vd_prob"]:
        kspace, mask = simulate(target, rng, sigma, None, augment.random_vd_mask(target.shape[0], rng))
    else:
        kspace, mask = simulate(target, rng, sigma, cfg["blocks"][rng.integers(len(cfg["blocks"]))])
    return kspace, mask, target, head


def _orient(x: np.ndarray, code: int) -> np.ndarray:
    """One of the 8 flips/transposes of a square array."""
    if code & 1:
        x = x[::-1]
    if code & 2:
        x = x[:, ::-1]
    if code & 4:
        x = x.T
    return np.ascontiguousarray(x)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--preset", default="default", choices=sorted(PRESETS))
    ap.add_argument("--steps", type=int, default=None, help="crop steps (default: the preset's)")
    ap.add_argument("--finetune-steps", type=int, default=None, help="whole-slice steps (default: the preset's)")
    ap.add_argument("--data", default=None, metavar="LIST",
                    help="comma-separated training split files, repository-relative (default: the preset's)")
    ap.add_argument("--validation", default=None, metavar="LIST",
                    help="comma-separated validation split files (default: the preset's)")
    ap.add_argument("--seed", type=int, default=None, help="random seed (default: the preset's)")
    ap.add_argument("--out", required=True, help="output prefix: PREFIX.params.npz, PREFIX.history.json")
    args = ap.parse_args(argv)
    jax.config.update("jax_enable_x64", False)
    train(args.preset, pathlib.Path(args.out), args.steps, args.finetune_steps,
          data=args.data, validation=args.validation, seed=args.seed)


if __name__ == "__main__":
    main()
