"""ONNX export: onnxruntime equals JAX (f32), the int8 file is QOperator with integer
convolutions only in standard ONNX ops, metadata, symbolic K, equivariance."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

from sparsemap_train import export, lambda_net
from sparsemap_train import features as feat

from .test_lambda_net import problem


@pytest.fixture(scope="module")
def model():
    params = lambda_net.init(seed=5)
    params["c6.w"] = params["c6.w"] * 10  # spread the outputs so that the checks see structure
    f32 = export.build_f32(params, export.metadata(64, 1.0, "f32", "test"))
    cal = []
    for seed, (k, s) in enumerate([(16, 5), (8, 3)]):
        kspace, mask, d = problem(k=k, s=s, seed=seed)
        cal += export.calibration_features([d], [(kspace, mask)], 1.0)
    int8 = export.quantize_int8(f32, cal, export.metadata(64, 1.0, "int8", "test"))
    return params, f32, int8


@pytest.mark.parametrize("k,s", [(16, 5), (24, 9)])
def test_onnxruntime_f32_equals_jax(model, k, s):
    params, f32, _ = model
    kspace, mask, d = problem(k=k, s=s, seed=11)
    x = np.asarray(feat.features_from_kspace(kspace, mask, d)[0])
    ours = np.asarray(lambda_net.apply(params, x))
    ort = export.run_ort(f32, x)
    assert ort.shape == (k, 1, 64, 64)
    assert np.linalg.norm(ort - ours) / np.linalg.norm(ours) <= 1e-6  # observed ~2e-7
    assert np.max(np.abs(ort - ours)) <= 1e-6 * lambda_net.LAMBDA_MAX
    perm = np.random.default_rng(0).permutation(k)
    np.testing.assert_allclose(export.run_ort(f32, x[perm]), ort[perm], rtol=1e-6, atol=1e-9)


def test_int8_is_qoperator_standard_ops_without_value_info(model):
    _, f32, int8 = model
    ops = export.op_types(int8)
    assert ops.count("QLinearConv") == 6 and "Conv" not in ops
    assert all(node.domain in ("", "ai.onnx") for node in int8.graph.node)
    assert len(int8.graph.value_info) == 0
    # weights are int8 with one scale per output channel
    inits = {t.name: t for t in int8.graph.initializer}
    conv = [n for n in int8.graph.node if n.op_type == "QLinearConv"][1]
    w = inits[conv.input[3]]
    assert w.data_type == onnx.TensorProto.INT8
    assert len(onnx.numpy_helper.to_array(inits[conv.input[4]]).ravel()) == w.dims[0]
    # K (and the grid) stay symbolic
    dims = int8.graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_param or d.dim_value for d in dims] == ["K", 3, "N_y", "N_x"]


def test_metadata(model):
    _, f32, int8 = model
    for m, precision in ((f32, "f32"), (int8, "int8")):
        props = {p.key: p.value for p in m.metadata_props}
        assert props["sparsemap.version"] == export.CONTRACT_VERSION
        assert props["sparsemap.features"] == feat.FEATURES_V1
        assert props["sparsemap.iterations"] == "64"
        assert float(props["sparsemap.lowpass_weight"]) == 1.0
        assert props["sparsemap.precision"] == precision


def test_int8_close_to_f32(model):
    _, f32, int8 = model
    kspace, mask, d = problem(k=12, s=7, seed=4)
    x = np.asarray(feat.features_from_kspace(kspace, mask, d)[0])
    a, b = export.run_ort(f32, x), export.run_ort(int8, x)
    assert np.linalg.norm(b - a) / np.linalg.norm(a) <= 2e-2
    assert np.max(np.abs(b - a)) <= 0.05 * lambda_net.LAMBDA_MAX


def test_int8_per_tensor_has_one_weight_scale_per_conv(model):
    params, f32, int8 = model
    cal = []
    for seed, (k, s) in enumerate([(16, 5), (8, 3)]):
        kspace, mask, d = problem(k=k, s=s, seed=seed)
        cal += export.calibration_features([d], [(kspace, mask)], 1.0)
    pt = export.quantize_int8(f32, cal, export.metadata(64, 1.0, "int8", "test"), per_channel=False)
    inits = {t.name: t for t in pt.graph.initializer}
    for conv in (n for n in pt.graph.node if n.op_type == "QLinearConv"):
        assert onnx.numpy_helper.to_array(inits[conv.input[4]]).size == 1
    kspace, mask, d = problem(k=12, s=7, seed=4)
    x = np.asarray(feat.features_from_kspace(kspace, mask, d)[0])
    a, b = export.run_ort(f32, x), export.run_ort(pt, x)
    assert np.linalg.norm(b - a) / np.linalg.norm(a) <= 2e-2
