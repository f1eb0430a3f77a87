"""The background gate's threshold and smoothing width on the validation splits (issue 12).

For 6 evenly spaced slices of each validation split (colin27, mni152_t1, inia19_t1,
synthetic_t2), block 128 of 256 at s = 0.075, 0.15, 0.3 (seeded per slice), the bundled f32
Lambda network's reconstruction (JAX, float32) without and with the gate of docs/design.md
§3.7 item 7 (``sparsemap_train.recon.background_gate``, the runtime's definition) for kappa in
{2, 4, 8, 16} and Gaussian width w in {1, 2, 3} pixels: mean whole-image PSNR, and the ratio
of the estimated to the true noise level. It chooses settings; the tables come from the host.

Run (repository root, after ``sparsemap-host export --out-dir data``):

    PYTHONPATH=models models/.venv/bin/python models/tools/gate_kappa_scan.py > results/sources/gate_kappa_validation.txt
"""

import os

os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1")

import jax  # noqa: E402
import numpy as np  # noqa: E402

from sparsemap_train import export, features as feat, lambda_net, recon, train  # noqa: E402

SPLITS = ["validation", "mni152_t1_validation", "inia19_t1_validation", "synthetic_t2_validation"]


def main():
    net, info = export.load_params("models/lambda/default.params.npz")
    a = info["lowpass_weight"]
    d = np.load("models/dictionaries/cdl_k32_s9.npy")

    @jax.jit
    def solve(k, m):
        pr = recon.prepare(k, m, d, a)
        lam = lambda_net.apply(net, feat.features(pr))[:, 0]
        return recon.reconstruct(k, m, d, lam, 32, a, prepared=pr)["x"], pr["y"], pr["g"], pr["c"]

    gate = jax.jit(recon.background_gate, static_argnames="smoothing")

    def psnr(x, t):
        e = (np.abs(x) - np.abs(t)) ** 2
        return 10 * np.log10(np.abs(t).max() ** 2 / e.mean())

    print("split, s, mean estimated/true sigma, PSNR without gate, then PSNR per (kappa, w)")
    for split in SPLITS:
        with np.load(f"data/{split}.npz") as z:
            targets = z["target"]
        for s in [0.075, 0.15, 0.3]:
            acc = {}
            for i in np.linspace(0, len(targets) - 1, 6).round().astype(int):
                t = targets[i].astype(np.complex64)
                sig = s * np.sqrt(np.mean(np.abs(t) ** 2))
                k, m = train.simulate(t, np.random.default_rng(i), sig, 0.5)
                x, y, g, c = solve(k, m)
                x = np.asarray(x)
                sigma = np.sqrt(float(recon.noise_variance(y, m))) / float(c)  # k-space units
                acc.setdefault("sigma ratio", []).append(sigma / sig)
                acc.setdefault("no gate", []).append(psnr(x, t))
                for w in [1.0, 2.0, 3.0]:
                    for kappa in [2.0, 4.0, 8.0, 16.0]:
                        gated = np.asarray(gate(y, m, g, kappa, smoothing=w)) * x
                        acc.setdefault(f"k{kappa:g} w{w:g}", []).append(psnr(gated, t))
            print(split, s, ", ".join(f"{name} {np.mean(v):.2f}" for name, v in acc.items()), flush=True)


if __name__ == "__main__":
    main()
