"""Desktop reference reconstruction with a Lambda model, in float64:
``reconstruct(kspace, mask, model, dictionary)``.

Features (:mod:`features`) are computed in float64 when JAX runs with ``jax_enable_x64``
(else float32), rounded to float32 for the network (the ONNX contract), the network runs in
onnxruntime (f32 or int8 file), and the solve is the float64 NumPy reference
(``models/reference/sparsemap_reference.py``) with the model's low-pass weight and iteration
count (``metadata_props``), and the background gate the edge runtime applies by default. The
result is what the edge runtime should produce up to its float32 rounding.
"""

from __future__ import annotations

import pathlib
import sys

import numpy as np
import onnx

from . import export
from . import features as feat

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "reference"))
import sparsemap_reference as ref  # noqa: E402


def model_info(model: onnx.ModelProto) -> dict:
    props = {p.key: p.value for p in model.metadata_props}
    if props.get("sparsemap.version") != export.CONTRACT_VERSION:
        raise ValueError(f"unsupported sparsemap.version {props.get('sparsemap.version')!r}")
    if props.get("sparsemap.features") != feat.FEATURES_V1:
        raise ValueError(f"unknown sparsemap.features {props.get('sparsemap.features')!r}")
    return {"iterations": int(props["sparsemap.iterations"]),
            "lowpass_weight": float(props["sparsemap.lowpass_weight"])}


def reconstruct(kspace, mask, model, dictionary, iterations: int | None = None,
                background_gate: float | None = ref.BACKGROUND_GATE) -> dict:
    """``model``: path or ModelProto of a Lambda model; ``dictionary``: ``[K, s, s]``;
    ``background_gate``: the gate's threshold (docs/design.md §3.7 item 7; the edge runtime's
    default for a model), ``None`` for none.
    Returns :func:`sparsemap_reference.reconstruct`'s dict plus ``lambda_maps`` from the model."""
    m = model if isinstance(model, onnx.ModelProto) else onnx.load(str(model))
    info = model_info(m)
    t = info["iterations"] if iterations is None else iterations
    a = info["lowpass_weight"]
    k = np.asarray(kspace, np.complex128)
    d = np.asarray(dictionary, np.float64)
    x, _ = feat.features_from_kspace(k, mask, d, a)
    lam = export.run_ort(m, np.asarray(x, np.float32))[:, 0].astype(np.float64)
    return ref.reconstruct(k, mask, d, lam, t, a, background_gate_kappa=background_gate)
