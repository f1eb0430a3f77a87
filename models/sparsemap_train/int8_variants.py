"""Writes int8 export variants of one trained Lambda network for timing and quality comparison
(the study of models/README.md "int8 on x86"): onnxruntime ``quantize_static`` options and the
integer layouts of :mod:`int8_layout`. Each variant is checked against the f32 model with
onnxruntime on held-out features (relative l2 and max error of the maps).

    PYTHONPATH=models models/.venv/bin/python -m sparsemap_train.int8_variants \
        --params models/lambda/default.params.npz --out-dir /tmp/int8v
"""

from __future__ import annotations

import argparse
import pathlib
import tempfile

import numpy as np
import onnx

from . import export, int8_layout

LAYOUTS = {
    "L_float": {"pool1": "float", "pool2": "float", "skip": "float", "out": "float"},
    "L_pool": {"pool1": "float", "pool2": "conv", "skip": "float", "out": "float"},
    "L_pool_cat": {"pool1": "float", "pool2": "conv", "skip": "concat", "out": "float"},
    "L_pool_catg": {"pool1": "float", "pool2": "conv", "skip": "concat-group", "out": "float"},
    "L_pool_cat_d2s": {"pool1": "float", "pool2": "conv", "skip": "concat", "out": "d2s"},
    "L_pool_catg_d2s": {"pool1": "float", "pool2": "conv", "skip": "concat-group", "out": "d2s"},
    "L_pool_cat_d2s1": {"pool1": "float", "pool2": "conv", "skip": "concat", "out": "d2s1"},
    "L_pool_catg_d2s1": {"pool1": "float", "pool2": "conv", "skip": "concat-group", "out": "d2s1"},
    "T_float": {"pool1": "float", "pool2": "float", "skip": "float", "out": "float", "weights": "tensor"},
    "T_pool_cat": {"pool1": "float", "pool2": "conv", "skip": "concat", "out": "float", "weights": "tensor"},
    "T_pool_catg_d2s1": {"pool1": "float", "pool2": "conv", "skip": "concat-group", "out": "d2s1", "weights": "tensor"},
    "T_pool_cat_d2s1": {"pool1": "float", "pool2": "conv", "skip": "concat", "out": "d2s1", "weights": "tensor"},
    "L_fold_pool_cat_d2s": {"pool1": "fold", "pool2": "conv", "skip": "concat", "out": "d2s"},
}


def ort_variant(f32, cal, meta, **kw):
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    opts = dict(quant_format=QuantFormat.QOperator, op_types_to_quantize=["Conv", "Relu"], per_channel=True,
                activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                calibrate_method=CalibrationMethod.MinMax)
    opts.update(kw)
    with tempfile.TemporaryDirectory() as tmp:
        src, dst = pathlib.Path(tmp) / "f32.onnx", pathlib.Path(tmp) / "int8.onnx"
        onnx.save(f32, src)
        quantize_static(str(src), str(dst), export._Reader(cal), **opts)
        model = onnx.load(dst)
    del model.graph.value_info[:]
    del model.metadata_props[:]
    onnx.helper.set_model_props(model, meta)
    return model


def main(argv=None):
    from onnxruntime.quantization import QuantFormat

    ap = argparse.ArgumentParser()
    ap.add_argument("--params", default="models/lambda/default.params.npz")
    ap.add_argument("--out-dir", default="/tmp/int8v")
    ap.add_argument("--calibration-data", default="data/train.npz")
    ap.add_argument("--check-data", default="data/val.npz")
    ap.add_argument("--only", nargs="*")
    args = ap.parse_args(argv)
    out = pathlib.Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    params, info = export.load_params(args.params)
    a = float(info.get("lowpass_weight", 1.0))
    dicts = info.get("dictionaries", "")
    d = [np.load(f"models/dictionaries/{n.strip()}.npy") for n in dicts.split(",")]
    meta = lambda prec: export.metadata(int(info.get("iterations", 64)), a, prec, info.get("description", ""), dicts)
    f32 = export.build_f32(params, meta("f32"))
    onnx.save(f32, out / "f32.onnx")
    cal = export.calibration_features(d, export.calibration_problems(args.calibration_data, 6), a)
    check = export.calibration_features([np.load("models/dictionaries/cdl_k32_s9.npy")],
                                        export.calibration_problems(args.check_data, 3, seed=7), a)
    ref = [export.run_ort(f32, x) for x in check]

    variants = {}
    want = lambda n: not args.only or n in args.only
    if want("ort"):
        variants["ort"] = lambda: export.quantize_int8(f32, cal, meta("int8"))
    if want("ort_pertensor"):
        variants["ort_pertensor"] = lambda: ort_variant(f32, cal, meta("int8"), per_channel=False)
    if want("ort_qdq"):
        variants["ort_qdq"] = lambda: ort_variant(f32, cal, meta("int8"), quant_format=QuantFormat.QDQ)
    if want("ort_s8s8"):
        from onnxruntime.quantization import QuantType
        variants["ort_s8s8"] = lambda: ort_variant(f32, cal, meta("int8"), activation_type=QuantType.QInt8,
                                                   extra_options={"ActivationSymmetric": True})
    for name, layout in LAYOUTS.items():
        if want(name):
            variants[name] = (lambda layout=layout: int8_layout.quantize(params, cal, meta("int8"), layout))
            if want(name + "_f32"):
                fm = int8_layout.float_model(params, layout)
                helper_meta = meta("f32")
                onnx.helper.set_model_props(fm, helper_meta)
                got = [export.run_ort(fm, x) for x in check]
                err = max(float(np.max(np.abs(g - r))) for g, r in zip(got, ref))
                inner = max(float(np.max(np.abs(g - r)[..., 1:-1, 1:-1])) for g, r in zip(got, ref))
                print(f"{name}: f32 restructured vs f32 max abs {err:.2e} (without the outer ring {inner:.2e})")
    for name, make in variants.items():
        m = make()
        onnx.save(m, out / f"{name}.onnx")
        got = [export.run_ort(m, x) for x in check]
        rel = np.mean([np.linalg.norm(g - r) / np.linalg.norm(r) for g, r in zip(got, ref)])
        mx = max(float(np.max(np.abs(g - r))) for g, r in zip(got, ref))
        ops = sorted(set(export.op_types(m)))
        print(f"{name}: int8 vs f32 (onnxruntime) rel l2 {rel:.2e}, max abs {mx:.2e}; ops {ops}")


if __name__ == "__main__":
    main()
