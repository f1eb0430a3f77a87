"""The T lever (issue 12 part 4): does the learned method lose to TV on the MNI152 anatomy
because 32 FISTA iterations have not converged? The bundled int8 model's maps (trained for
T = 32) with T = 32, 64 and 128 on two test slices per source (block 128 of 256, noise
s = 0.075 and 0.3, seeds 1 and 4), float64 desktop reference with the background gate.
Writes results/sources/iterations_scan.txt (about 5 min on one core).

    PYTHONPATH=models models/.venv/bin/python models/tools/iterations_scan.py
"""

from __future__ import annotations

import jax
import numpy as np

jax.config.update("jax_enable_x64", True)

from sparsemap_train import desktop, train  # noqa: E402

SLICES = (1, 4)
ITERATIONS = (32, 64, 128)


def main() -> None:
    d = np.load(train.REPO / "models/dictionaries/cdl_k32_s9.npy")
    model = train.REPO / "models/lambda/default.int8.onnx"
    lines = ["# whole-image PSNR (dB), mean of test slices " + ", ".join(map(str, SLICES)) +
             "; bundled int8 maps (trained for T = 32) solved with T = " + ", ".join(map(str, ITERATIONS))]
    for source in ("synthetic_t2", "mni152_t1"):
        targets, _ = train.load_split(train.REPO / f"data/{source}_test.npz")
        for s in (0.075, 0.3):
            rows = {t: [] for t in ITERATIONS}
            for i in SLICES:
                rng = np.random.default_rng(i)
                sigma = s * np.sqrt(np.mean(np.abs(targets[i]) ** 2))
                kspace, mask = train.simulate(targets[i], rng, sigma, 0.5)
                for t in ITERATIONS:
                    x = desktop.reconstruct(kspace, mask, model, d, iterations=t)["x"]
                    rows[t].append(train.psnr(x, targets[i]))
            line = f"{source} s={s}: " + ", ".join(f"T={t} {np.mean(v):.2f}" for t, v in rows.items())
            print(line, flush=True)
            lines.append(line)
    out = train.REPO / "results/sources/iterations_scan.txt"
    out.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
