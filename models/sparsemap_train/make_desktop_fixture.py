"""Write tests/fixtures/learned/: the desktop float64 reconstruction (:func:`desktop.reconstruct`)
of the bundled example slice (examples/colin27: Colin27 axial 90, central 128 block of 256,
s = 0.15) with the committed default models and the dictionary they ship with, which the
edge runtime's learned reconstruction is compared against (tests/tests/learned_agreement.rs).

Files: ``x_f32.npy`` and ``x_int8.npy`` (complex64 [256, 256], the image on the scale of
``F^H y``) and ``summary.json`` (inputs, model metadata, PSNR against the target).

Run (from the repository root; a few seconds)::

    PYTHONPATH=models models/.venv/bin/python -m sparsemap_train.make_desktop_fixture
"""

from __future__ import annotations

import json
import pathlib

import numpy as np

from . import desktop
from .train import psnr

REPO = pathlib.Path(__file__).resolve().parents[2]
OUT = REPO / "tests" / "fixtures" / "learned"
EXAMPLE = REPO / "examples" / "colin27"
MODELS = {"f32": REPO / "models/lambda/default.f32.onnx", "int8": REPO / "models/lambda/default.int8.onnx"}
DICTIONARY = REPO / "models/dictionaries/cdl_k32_s9.npy"



def reconstructions() -> dict:
    kspace, mask = np.load(EXAMPLE / "kspace.npy"), np.load(EXAMPLE / "mask.npy")
    d = np.load(DICTIONARY)
    return {p: desktop.reconstruct(kspace, mask, path, d) for p, path in MODELS.items()}


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    target = np.load(EXAMPLE / "target.npy")
    summary = {"example": "examples/colin27", "dictionary": "models/dictionaries/cdl_k32_s9.npy", "cases": {}}
    for precision, out in reconstructions().items():
        np.save(OUT / f"x_{precision}.npy", out["x"].astype(np.complex64))
        summary["cases"][precision] = {"model": str(MODELS[precision].relative_to(REPO)),
                                       "psnr_db": psnr(out["x"], target),
                                       "lambda_mean": float(np.mean(out["lambda_maps"]))}
    (OUT / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
