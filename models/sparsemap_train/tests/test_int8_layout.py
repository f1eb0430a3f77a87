"""The hand-written int8 layouts (int8_layout.py): equal to the reference network in f32
(the restructuring changes no arithmetic, except the outer ring of ``out = "d2s"``), and
the quantised graphs stay close to f32 with standard ops only."""

from __future__ import annotations

import numpy as np
import pytest

from sparsemap_train import export, int8_layout, lambda_net
from sparsemap_train import features as feat

from .test_lambda_net import problem

LAYOUTS = {
    "ort-like": {"pool2": "float", "skip": "float", "out": "float"},
    "pool-conv": {"pool2": "conv", "skip": "float", "out": "float"},
    "concat": {"pool2": "conv", "skip": "concat", "out": "float"},
    "concat-group-d2s1": {"pool2": "conv", "skip": "concat-group", "out": "d2s1"},
    "fold-d2s-tensor": {"pool1": "fold", "pool2": "conv", "skip": "concat", "out": "d2s", "weights": "tensor"},
}


@pytest.fixture(scope="module")
def setup():
    params = lambda_net.init(seed=5)
    params["c6.w"] = params["c6.w"] * 10
    f32 = export.build_f32(params, export.metadata(64, 1.0, "f32", "test"))
    cal = []
    for seed, (k, s) in enumerate([(16, 5), (8, 3)]):
        kspace, mask, d = problem(k=k, s=s, seed=seed)
        cal += export.calibration_features([d], [(kspace, mask)], 1.0)
    kspace, mask, d = problem(k=12, s=7, seed=4)
    x = np.asarray(feat.features_from_kspace(kspace, mask, d)[0])
    return params, f32, cal, x


@pytest.mark.parametrize("name", LAYOUTS)
def test_layout_equals_reference_in_f32_and_quantises_closely(setup, name):
    params, f32, cal, x = setup
    layout = LAYOUTS[name]
    ref = export.run_ort(f32, x)
    got = export.run_ort(int8_layout.float_model(params, layout), x)
    inner = (slice(None), slice(None), slice(1, -1), slice(1, -1))
    whole = inner if layout.get("out") == "d2s" else (Ellipsis,)
    np.testing.assert_allclose(got[whole], ref[whole], rtol=1e-5, atol=1e-8)
    q = int8_layout.quantize(params, cal, export.metadata(64, 1.0, "int8", "test"), layout)
    assert all(node.domain in ("", "ai.onnx") for node in q.graph.node)
    b = export.run_ort(q, x)
    assert np.linalg.norm((b - ref)[inner]) / np.linalg.norm(ref[inner]) <= 3e-2


def test_ort_like_layout_reproduces_quantize_static(setup):
    """With onnxruntime's structure, the hand-written quantiser gives onnxruntime's numbers."""
    params, f32, cal, x = setup
    ours = int8_layout.quantize(params, cal, export.metadata(64, 1.0, "int8", "test"), LAYOUTS["ort-like"])
    theirs = export.quantize_int8(f32, cal, export.metadata(64, 1.0, "int8", "test"))
    np.testing.assert_allclose(export.run_ort(ours, x), export.run_ort(theirs, x), rtol=0, atol=1e-7)
