"""Write tests/fixtures/lambda_net/: a small test Lambda model (f32 + int8 ONNX) and, per case,
the inputs and the expected outputs that the Rust runtime (crates/edge/tests/lambda_net.rs,
tract) is compared with.

Model: :func:`lambda_net.init` (seed 5) with the output layer's weights multiplied by 10 so
that the maps vary (an untrained network would be nearly constant and test nothing);
quantised with :func:`export.quantize_int8`, calibrated on the features of this file's
own N = 64 input with both dictionaries.

Input (shared): N = 64 version of the Colin27 test slice: the central 64x64 of
``F target`` times 64/256 (the same object at a quarter of the resolution, same image
scale), complex Gaussian noise of 5 % of its rms (default_rng(64)), mask = central 32x32 block.

Cases (``<case>/``):

* ``dct3``   — models/dictionaries/dct3.npy (K = 8, 3x3); also ``features.npy``, the JAX f32
  features ``[K, 3, 64, 64]``, to check the Rust feature computation on its own.
* ``rand7``  — K = 12 random zero-mean 7x7 filters (default_rng(7)), scaled to L = 1.
* ``rand7_perm`` — the same filters permuted (``perm.npy``); its outputs must be those of
  ``rand7`` permuted the same way (checked here in JAX; not stored again).

Per case: ``dictionary.npy`` float32 ``[K, s, s]``, ``lambda_f32.npy`` (JAX, f32) and
``lambda_int8_ort.npy`` (onnxruntime on the int8 file) ``[K, 1, 64, 64]``;
``summary.json`` lists the observed JAX-vs-onnxruntime(f32) and int8-vs-f32 differences.

Run: models/.venv/bin/python -m sparsemap_train.make_lambda_fixtures   (from models/)
"""

from __future__ import annotations

import json
import os
import pathlib

os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1")

import jax  # noqa: E402

# float64 for the input's preparation (the N = 64 k-space, the random dictionary's scaling),
# whichever mode the caller's JAX is in; the features and the network still run in float32
# because their inputs are float32 (complex64 k-space, float32 dictionary and parameters).
jax.config.update("jax_enable_x64", True)

import numpy as np  # noqa: E402
import onnx  # noqa: E402

from . import export, lambda_net, recon  # noqa: E402
from . import features as feat  # noqa: E402

REPO = pathlib.Path(__file__).resolve().parents[2]
OUT = REPO / "tests" / "fixtures" / "lambda_net"
N = 64
LOWPASS_WEIGHT = 1.0
ITERATIONS = 64


def small_input():
    target = np.load(REPO / "examples" / "colin27" / "target.npy").astype(np.complex128)
    full = np.asarray(recon.centred_fft2(target))
    c = target.shape[0] // 2
    k = full[c - N // 2: c + N // 2, c - N // 2: c + N // 2] * (N / target.shape[0])
    rng = np.random.default_rng(64)
    rms = np.sqrt(np.mean(np.abs(k) ** 2))
    k = k + 0.05 * rms / np.sqrt(2) * (rng.standard_normal((N, N)) + 1j * rng.standard_normal((N, N)))
    mask = np.zeros((N, N), np.uint8)
    mask[N // 4: 3 * N // 4, N // 4: 3 * N // 4] = 1
    return (k * mask).astype(np.complex64), mask


def rand_dictionary():
    rng = np.random.default_rng(7)
    d = rng.standard_normal((12, 7, 7))
    d -= d.mean(axis=(1, 2), keepdims=True)
    h = np.asarray(recon.filter_responses(jax.numpy.asarray(d), 256, 256))
    d /= np.sqrt(np.max(np.sum(np.abs(h) ** 2, axis=0)))
    return d.astype(np.float32)


def test_params():
    p = lambda_net.init(seed=5)
    p["c6.w"] = p["c6.w"] * 10
    return p


def main(out: pathlib.Path = OUT, verbose: bool = True):
    kspace, mask = small_input()
    dicts = {"dct3": np.load(REPO / "models" / "dictionaries" / "dct3.npy"), "rand7": rand_dictionary()}
    perm = np.random.default_rng(12).permutation(12)
    dicts["rand7_perm"] = dicts["rand7"][perm]
    params = test_params()
    desc = "TEST MODEL (untrained, seed 5, output weights x10) for tests/fixtures/lambda_net"
    f32 = export.build_f32(params, export.metadata(ITERATIONS, LOWPASS_WEIGHT, "f32", desc, "dct3, rand7"))
    cal = export.calibration_features([dicts["dct3"], dicts["rand7"]], [(kspace, mask)], LOWPASS_WEIGHT)
    int8 = export.quantize_int8(f32, cal, export.metadata(ITERATIONS, LOWPASS_WEIGHT, "int8", desc, "dct3, rand7"))
    out.mkdir(parents=True, exist_ok=True)
    onnx.save(f32, out / "model.f32.onnx")
    onnx.save(int8, out / "model.int8.onnx")
    np.save(out / "kspace.npy", kspace)
    np.save(out / "mask.npy", mask)
    summary = {}
    for name, d in dicts.items():
        cdir = out / name
        cdir.mkdir(exist_ok=True)
        x, _ = feat.features_from_kspace(kspace, mask, d, LOWPASS_WEIGHT)
        x = np.asarray(x, np.float32)
        lam = np.asarray(lambda_net.apply(params, x), np.float32)
        lam_ort = export.run_ort(f32, x)
        lam_q = export.run_ort(int8, x)
        np.save(cdir / "dictionary.npy", np.ascontiguousarray(d, np.float32))
        if name == "rand7_perm":
            # the expected maps are rand7's, permuted: checked here, not stored twice
            np.save(cdir / "perm.npy", perm.astype(np.int64))
            base = np.load(out / "rand7" / "lambda_f32.npy")
            np.testing.assert_allclose(lam, base[perm], rtol=1e-5, atol=1e-8)
        else:
            np.save(cdir / "lambda_f32.npy", lam)
            np.save(cdir / "lambda_int8_ort.npy", lam_q)
        if name == "dct3":
            np.save(cdir / "features.npy", x)
        summary[name] = {
            "K": int(d.shape[0]), "s": int(d.shape[1]),
            "lambda_min": float(lam.min()), "lambda_max": float(lam.max()), "lambda_std": float(lam.std()),
            "ort_f32_vs_jax_max_abs": float(np.max(np.abs(lam_ort - lam))),
            "ort_int8_vs_f32_max_abs": float(np.max(np.abs(lam_q - lam))),
            "ort_int8_vs_f32_rel_l2": float(np.linalg.norm(lam_q - lam) / np.linalg.norm(lam)),
        }
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    if verbose:
        print(json.dumps(summary, indent=2))
        print("int8 ops:", export.op_types(int8))


if __name__ == "__main__":
    main()
