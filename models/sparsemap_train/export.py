"""ONNX export of the Lambda network (docs/design.md §4): ``*.f32.onnx`` and ``*.int8.onnx``.

The f32 graph is written node by node with ``onnx.helper`` from the JAX parameters (the
network is eight layer types; a converter would add a dependency for nothing). Input
``features`` float32 ``[K, 3, N_y, N_x]`` and output ``lambda`` float32 ``[K, 1, N_y, N_x]``
with symbolic ``K``, ``N_y``, ``N_x`` (``dim_param``); the runtime binds them before
optimising. ``metadata_props`` carry the contract (see :func:`metadata`).

The int8 file is onnxruntime's static quantisation in the **QOperator** format
(``QLinearConv`` with int8 per-output-channel weights, uint8 activations, int32 bias),
calibrated with MinMax on features of training slices (:func:`calibration_problems`).
Only ``Conv`` and ``Relu`` are quantised:
onnxruntime's quantised AveragePool / Add / Sigmoid are ``com.microsoft`` contrib ops that
tract does not know, so those stay float between ``DequantizeLinear`` / ``QuantizeLinear``.
tract 0.23 runs ``QLinearConv`` with integer kernels (QDQ-wrapped Conv would run in f32).
``graph.value_info`` is removed from the quantised file: its entries name the symbol K and
stopped tract from loading the model once K was bound (shared/design/DEPENDENCIES.md).

Run (writes PREFIX.f32.onnx and PREFIX.int8.onnx)::

    PYTHONPATH=models models/.venv/bin/python -m sparsemap_train.export --params P.npz --out PREFIX \
        [--calibration-data data/train.npz] [--calibration-slices 6] [--calibration-dictionaries D.npy ...]
"""

from __future__ import annotations

import argparse
import json
import pathlib
import tempfile

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from . import features as feat
from . import lambda_net

#: Contract version written to ``sparsemap.version``; the runtime refuses any other.
CONTRACT_VERSION = "1"
OPSET = 17
IR_VERSION = 8
INPUT = "features"
OUTPUT = "lambda"


def metadata(iterations: int, lowpass_weight: float, precision: str, description: str,
             dictionaries: str = "") -> dict:
    """The ``metadata_props`` of a Lambda model (all values are strings).

    * ``sparsemap.version`` — contract version (:data:`CONTRACT_VERSION`).
    * ``sparsemap.features`` — the exact feature list (:data:`features.FEATURES_V1`).
    * ``sparsemap.iterations`` — FISTA iteration count T the maps were trained for.
    * ``sparsemap.lowpass_weight`` — low-pass weight ``a`` used for the features and the solve.
    * ``sparsemap.lambda_max`` — the output bound.
    * ``sparsemap.grid_multiple`` — N_y and N_x must be multiples of it.
    * ``sparsemap.precision`` — ``f32`` or ``int8``.
    * ``sparsemap.dictionaries`` — the dictionaries it was trained with (informative).
    * ``sparsemap.description`` — free text (informative).
    """
    return {
        "sparsemap.version": CONTRACT_VERSION,
        "sparsemap.features": feat.FEATURES_V1,
        "sparsemap.iterations": str(int(iterations)),
        "sparsemap.lowpass_weight": repr(float(lowpass_weight)),
        "sparsemap.lambda_max": repr(float(lambda_net.LAMBDA_MAX)),
        "sparsemap.grid_multiple": str(lambda_net.GRID_MULTIPLE),
        "sparsemap.precision": precision,
        "sparsemap.dictionaries": dictionaries,
        "sparsemap.description": description,
    }


def _init(name, arr):
    return numpy_helper.from_array(np.ascontiguousarray(arr, dtype=np.float32), name)


def build_f32(params: dict, meta: dict) -> onnx.ModelProto:
    """The f32 ONNX graph equal to :func:`lambda_net.apply`."""
    p = {k: np.asarray(v, np.float32) for k, v in params.items()}
    width = p["c1.w"].shape[0]
    inits = [_init(k, v) for k, v in sorted(p.items())]
    inits += [_init("up.w", lambda_net.up_kernel(width)), _init("up1.w", lambda_net.up_kernel(1)),
              _init("lambda_max", np.array(lambda_net.LAMBDA_MAX, np.float32))]
    n = []

    def conv(name, x, pad):
        n.append(helper.make_node("Conv", [x, name + ".w", name + ".b"], [name], name=name,
                                  kernel_shape=list(p[name + ".w"].shape[2:]), pads=[pad] * 4, strides=[1, 1]))
        return name

    def relu(x):
        n.append(helper.make_node("Relu", [x], [x + ".relu"], name=x + ".relu"))
        return x + ".relu"

    def pool(name, x):
        n.append(helper.make_node("AveragePool", [x], [name], name=name, kernel_shape=[2, 2], strides=[2, 2]))
        return name

    def up(name, x, w, group):
        n.append(helper.make_node("ConvTranspose", [x, w], [name], name=name, kernel_shape=[4, 4], strides=[2, 2],
                                  pads=[1, 1, 1, 1], group=group))
        return name

    h = pool("pool1", INPUT)
    h1 = relu(conv("c1", h, 1))
    h2 = relu(conv("c2", h1, 1))
    q = pool("pool2", h2)
    q = relu(conv("c3", q, 1))
    q = relu(conv("c4", q, 1))
    u = up("up_q", q, "up.w", width)
    n.append(helper.make_node("Add", [h2, u], ["skip"], name="skip"))
    h3 = relu(conv("c5", "skip", 1))
    o = conv("c6", h3, 0)
    o = up("up_out", o, "up1.w", 1)
    n.append(helper.make_node("Sigmoid", [o], ["sigmoid"], name="sigmoid"))
    n.append(helper.make_node("Mul", ["sigmoid", "lambda_max"], [OUTPUT], name="scale"))

    x_in = helper.make_tensor_value_info(INPUT, TensorProto.FLOAT, ["K", feat.CHANNELS, "N_y", "N_x"])
    x_out = helper.make_tensor_value_info(OUTPUT, TensorProto.FLOAT, ["K", 1, "N_y", "N_x"])
    graph = helper.make_graph(n, "sparsemap_lambda_net", [x_in], [x_out], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="sparsemap_train", producer_version=CONTRACT_VERSION)
    model.ir_version = IR_VERSION
    helper.set_model_props(model, meta)
    onnx.checker.check_model(model, full_check=True)
    return model


class _Reader:
    """onnxruntime calibration reader over a list of feature arrays ``[K, 3, N_y, N_x]``."""

    def __init__(self, batches):
        self._it = iter([{INPUT: np.asarray(b, np.float32)} for b in batches])

    def get_next(self):
        return next(self._it, None)


def quantize_int8(f32: onnx.ModelProto, calibration, meta: dict, per_channel: bool = True) -> onnx.ModelProto:
    """Static int8 (QOperator, per-channel int8 weights, uint8 activations, MinMax) from
    ``calibration`` (a list of feature arrays). Returns the model without ``value_info``.

    ``per_channel=False``: one weight scale per convolution. tract then fuses the
    requantisation into its integer matrix product (1.8× the f32 time on the x86 VM instead of
    2.7×, same test PSNR at block128@0.15; models/README.md "int8 on x86")."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    with tempfile.TemporaryDirectory() as tmp:
        src = pathlib.Path(tmp) / "f32.onnx"
        dst = pathlib.Path(tmp) / "int8.onnx"
        onnx.save(f32, src)
        quantize_static(str(src), str(dst), _Reader(calibration), quant_format=QuantFormat.QOperator,
                        op_types_to_quantize=["Conv", "Relu"], per_channel=per_channel,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        calibrate_method=CalibrationMethod.MinMax)
        model = onnx.load(dst)
    del model.graph.value_info[:]
    domains = {node.domain for node in model.graph.node}
    if domains - {"", "ai.onnx"}:
        raise RuntimeError(f"quantised graph uses non-standard op domains {domains}: tract cannot run it")
    del model.metadata_props[:]
    helper.set_model_props(model, meta)
    onnx.checker.check_model(model)
    return model


def op_types(model: onnx.ModelProto) -> list:
    return [node.op_type for node in model.graph.node]


def save_params(path, params: dict, info: dict) -> None:
    np.savez(path, **{k: np.asarray(v) for k, v in params.items()}, _info=np.array(json.dumps(info)))


def load_params(path) -> tuple:
    z = np.load(path)
    info = json.loads(str(z["_info"])) if "_info" in z.files else {}
    return {k: z[k] for k in z.files if k != "_info"}, info


def run_ort(model: onnx.ModelProto, x: np.ndarray, input_name: str = INPUT,
            output_name: str = OUTPUT) -> np.ndarray:
    """Runs a one-input, one-output model (a Lambda model by default) with onnxruntime on
    one thread."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    sess = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    return sess.run([output_name], {input_name: np.asarray(x, np.float32)})[0]


def calibration_features(dictionaries, slices, lowpass_weight: float) -> list:
    """Feature arrays for every (slice, dictionary) pair; ``slices`` are (kspace, mask) pairs."""
    out = []
    for kspace, mask in slices:
        for d in dictionaries:
            x, _ = feat.features_from_kspace(np.asarray(kspace, np.complex64), mask, np.asarray(d, np.float32),
                                             lowpass_weight)
            out.append(np.asarray(x, np.float32))
    return out


def calibration_problems(split, count: int, seed: int = 2) -> list:
    """``count`` evenly spaced slices of an exported split, acquired as at the acceptance setting
    (central 128 block of 256, s = 0.15) and at the ends of the noise range (0.075, 0.3), so
    that the activation ranges cover what the model meets; fixed seed."""
    from . import train

    targets, _ = train.load_split(pathlib.Path(split))
    rng = np.random.default_rng(seed)
    out = []
    for j, i in enumerate(np.linspace(0, len(targets) - 1, count).round().astype(int)):
        s = (0.15, 0.075, 0.3)[j % 3]
        sigma = s * np.sqrt(np.mean(np.abs(targets[i]) ** 2))
        out.append(train.simulate(targets[i], rng, sigma, 0.5))
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--params", required=True, help="parameters .npz (sparsemap_train.export.save_params)")
    ap.add_argument("--out", required=True, help="output prefix: writes PREFIX.f32.onnx and PREFIX.int8.onnx")
    ap.add_argument("--calibration-data", default="data/train.npz",
                    help="exported split whose slices calibrate the int8 activations (the training split)")
    ap.add_argument("--calibration-slices", type=int, default=6)
    ap.add_argument("--per-tensor", action="store_true",
                    help="one int8 weight scale per convolution (default: per output channel)")
    ap.add_argument("--calibration-dictionaries", nargs="+",
                    help="dictionaries of the calibration features (default: those the model was trained with)")
    args = ap.parse_args(argv)
    params, info = load_params(args.params)
    iterations = int(info.get("iterations", 64))
    a = float(info.get("lowpass_weight", 1.0))
    desc = info.get("description", "")
    dicts = info.get("dictionaries", "")
    dict_paths = args.calibration_dictionaries or [f"models/dictionaries/{n.strip()}.npy" for n in dicts.split(",")]
    f32 = build_f32(params, metadata(iterations, a, "f32", desc, dicts))
    problems = calibration_problems(args.calibration_data, args.calibration_slices)
    cal = calibration_features([np.load(p) for p in dict_paths], problems, a)
    int8 = quantize_int8(f32, cal, metadata(iterations, a, "int8", desc + f"; int8: MinMax calibration on "
                                            f"{len(cal)} feature sets of {args.calibration_data}", dicts),
                        per_channel=not args.per_tensor)
    onnx.save(f32, args.out + ".f32.onnx")
    onnx.save(int8, args.out + ".int8.onnx")
    print(f"wrote {args.out}.f32.onnx ({len(f32.graph.node)} nodes) and {args.out}.int8.onnx: "
          f"{sorted(set(op_types(int8)))}; calibrated on {len(cal)} feature sets")


if __name__ == "__main__":
    main()
