"""int8 export of the Lambda network with a hand-written QOperator quantiser, so that the
graph's float islands can be replaced by integer ops that tract runs (docs/design.md §4).

onnxruntime's ``quantize_static`` (``export.quantize_int8``) quantises ``Conv`` and ``Relu``
only: the two average pools, the ×2 transposed-convolution upsamplers, the skip ``Add`` and the
sigmoid run in f32 between ``DequantizeLinear`` / ``QuantizeLinear`` (onnxruntime's quantised
forms of those ops are ``com.microsoft`` contrib ops, which tract does not know). Here the
*same trained weights* are rewritten into a graph that is equal in f32 (except where stated)
but whose quantised form stays uint8 between convolutions:

* ``pool2 = "conv"``: the 2×2/2 average pool as a ``QLinearConv`` (kernel 2, stride 2, weights
  0.25 on the channel diagonal; exact in f32 and exactly representable in int8).
* ``skip = "concat"`` / ``"concat-group"``: ``up2(q)`` as a ``QLinearConv`` producing the four
  output phases at quarter resolution (3×3 taps 0.25/0.75 of the bilinear kernel; dense, or
  ``group = C``), then ``DepthToSpace``; the skip ``h2 + up2(q)`` feeding ``c5`` becomes
  ``c5'(Concat(h2, up2(q)))`` with ``c5' = [W5, W5]``: a concatenation of uint8 tensors that
  share one scale (both ranges' union), so no integer ``Add`` is needed. Exact in f32.
* ``out = "d2s"``: ``up2(c6(h3))`` as one ``QLinearConv`` (3×3, C → 4 phases) and
  ``DepthToSpace``; the dequantise, sigmoid and ``· lambda_max`` run at full resolution in f32
  (the output is float). Differs from the reference only on the outermost row and column
  (the transposed convolution zero-pads the logits there; here the bias is not cut).
  ``out = "d2s1"``: ``c6`` (1×1) to uint8, then ``up2`` as a 1 → 4-phase ``QLinearConv`` and
  ``DepthToSpace``: exact in f32 (the padding of a ``QLinearConv`` is its zero point).
  ``out = "float"`` keeps ``c6`` (1×1) → dequantise → transposed conv → sigmoid.
* ``weights = "tensor"``: one weight scale per convolution instead of one per output channel
  (tract then fuses the requantisation into the matrix product).
* ``pool1 = "float"`` keeps the first pool in f32 before the input is quantised (the input is
  float anyway); ``pool1 = "fold"`` quantises at full resolution and folds the pool into ``c1``
  (6×6, stride 2; exact in f32, 4× the MACs of c1).

Quantisation matches ``export.quantize_int8``: MinMax ranges of each quantised tensor over
the calibration features (including 0), uint8 activations, symmetric per-output-channel int8
weights (±127), int32 biases with scale ``x_scale · w_scale``; ReLU is the uint8 saturation
of a convolution whose output zero point is 0.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from . import export, lambda_net
from . import features as feat

DEFAULT_LAYOUT = {"pool1": "float", "pool2": "conv", "skip": "concat", "out": "float", "weights": "channel"}


def _f(name, arr):
    # np.asarray, not np.ascontiguousarray: that one turns a scalar into shape (1,)
    return numpy_helper.from_array(np.asarray(arr, dtype=np.float32).copy(order="C"), name)


class _Builder:
    """Builds the restructured network either in f32 (``ranges is None``: every tensor that
    will be quantised is also a graph output, for calibration) or quantised with ``ranges``."""

    def __init__(self, ranges=None, shared=(), per_channel=True):
        self.per_channel = per_channel
        self.ranges = ranges
        self.shared = shared  # groups of tensor names that must share one scale
        self.nodes, self.inits, self.observed = [], [], []
        self.q = {}  # quantised tensor name -> (scale name, zero point name)

    @property
    def quant(self):
        return self.ranges is not None

    def _range(self, name):
        lo, hi = self.ranges[name]
        for group in self.shared:
            if name in group:
                lo = min(self.ranges[g][0] for g in group)
                hi = max(self.ranges[g][1] for g in group)
        return min(lo, 0.0), max(hi, 0.0)

    def _qparams(self, name):
        """Scale and zero-point initialisers of ``name`` (one pair per shared group)."""
        key = next((group[0] for group in self.shared if name in group), name)
        if not any(t.name == key + ".scale" for t in self.inits):
            lo, hi = self._range(name)
            scale = (hi - lo) / 255.0 if hi > lo else 1.0
            zp = int(np.clip(np.round(-lo / scale), 0, 255))
            self.inits.append(_f(key + ".scale", np.array(scale, np.float32)))
            self.inits.append(numpy_helper.from_array(np.array(zp, np.uint8), key + ".zp"))
        self.q[name] = (key + ".scale", key + ".zp")

    def observe(self, name):
        if not self.quant:
            self.observed.append(name)

    def node(self, op, inputs, output, **attrs):
        self.nodes.append(helper.make_node(op, inputs, [output], name=output, **attrs))
        return output

    def quantize(self, x):
        """Float tensor -> uint8 (its observed range)."""
        if not self.quant:
            self.observe(x)
            return x
        self._qparams(x)
        return self.node("QuantizeLinear", [x, *self.q[x]], x + ".q") and self._alias(x + ".q", x)

    def _alias(self, qname, src):
        self.q[qname] = self.q[src]
        return qname

    def dequantize(self, x, out):
        if not self.quant:
            return self.node("Identity", [x], out)
        return self.node("DequantizeLinear", [x, *self.q[x]], out)

    def conv(self, name, x, w, b, pad, stride=1, group=1, relu=False):
        """Conv (+ ReLU) from a (quantised) tensor ``x``; output tensor ``name``."""
        w = np.asarray(w, np.float32)
        b = np.zeros(w.shape[0], np.float32) if b is None else np.asarray(b, np.float32)
        attrs = dict(kernel_shape=list(w.shape[2:]), pads=[pad] * 4, strides=[stride] * 2, group=group)
        if not self.quant:
            self.inits += [_f(name + ".w", w), _f(name + ".b", b)]
            y = self.node("Conv", [x, name + ".w", name + ".b"], name + (".pre" if relu else ""), **attrs)
            if relu:
                y = self.node("Relu", [y], name)
            self.observe(name)
            return name
        if relu:
            lo, hi = self.ranges[name]
            self.ranges[name] = (0.0, hi)
        x_scale = float(np.asarray(numpy_helper.to_array(self._init(self.q[x][0]))))
        w_absmax = np.abs(w).reshape(w.shape[0], -1).max(axis=1)
        if not self.per_channel:  # one scale for the tensor (tract fuses the requantisation)
            w_absmax = np.full_like(w_absmax, w_absmax.max())
        w_scale = np.where(w_absmax > 0, w_absmax / 127.0, 1.0).astype(np.float32)
        wq = np.clip(np.round(w / w_scale[:, None, None, None]), -127, 127).astype(np.int8)
        bq = np.round(b / (x_scale * w_scale)).astype(np.int32)
        ws, wzp = (w_scale, np.zeros(w.shape[0], np.int8)) if self.per_channel else (w_scale[0], np.int8(0))
        self.inits += [numpy_helper.from_array(wq, name + ".wq"), _f(name + ".ws", ws),
                       numpy_helper.from_array(np.asarray(wzp, np.int8), name + ".wzp"),
                       numpy_helper.from_array(bq, name + ".bq")]
        self._qparams(name)
        return self.node("QLinearConv", [x, *self.q[x], name + ".wq", name + ".ws", name + ".wzp",
                                         *self.q[name], name + ".bq"], name + ".q", **attrs) and \
            self._alias(name + ".q", name)

    def _init(self, name):
        return next(t for t in self.inits if t.name == name)

    def move(self, op, x, out, **attrs):
        """Data movement (DepthToSpace, Concat of same-scale tensors): keeps the quantisation."""
        inputs = x if isinstance(x, list) else [x]
        y = self.node(op, inputs, out + (".q" if self.quant else ""), **attrs)
        if self.quant:
            self.q[y] = self.q[inputs[0]]
            assert all(self.q[i] == self.q[inputs[0]] for i in inputs), f"{out}: inputs differ in scale"
        return y


def _up_phase_weights(channels: int, group: bool) -> np.ndarray:
    """``Conv`` weights (3×3, pad 1, at the low resolution) whose ``DepthToSpace(2)`` is the
    bilinear ×2 transposed convolution of :func:`lambda_net._up2` (ONNX ``ConvTranspose``
    kernel 4, stride 2, pad 1), for ``channels`` channels. Dense: ``[4C, C, 3, 3]`` in DCR order
    (output channel ``phase · C + c``); grouped: ``[4C, 1, 3, 3]`` in CRD order (``c · 4 + phase``)."""
    k = lambda_net.UP_KERNEL_1D
    taps = {0: np.array([k[3], k[1], 0.0]), 1: np.array([0.0, k[2], k[0]])}  # offsets -1, 0, +1
    if group:
        w = np.zeros((4 * channels, 1, 3, 3), np.float32)
    else:
        w = np.zeros((4 * channels, channels, 3, 3), np.float32)
    for a in (0, 1):
        for b in (0, 1):
            k2 = np.outer(taps[a], taps[b])
            for c in range(channels):
                if group:
                    w[c * 4 + a * 2 + b, 0] = k2
                else:
                    w[(a * 2 + b) * channels + c, c] = k2
    return w


def _out_phase_weights(w6: np.ndarray) -> np.ndarray:
    """``[4, C, 3, 3]``: ``up2(conv1x1(h, w6))`` as a 3×3 conv of ``h`` giving the 4 phases (DCR)."""
    up = _up_phase_weights(1, group=False)  # [4, 1, 3, 3]
    return (up[:, :1] * w6.reshape(1, -1, 1, 1)).astype(np.float32)


def build(params: dict, layout: dict, ranges=None, meta=None) -> onnx.ModelProto:
    """The restructured network; f32 with observation outputs when ``ranges`` is None."""
    layout = {**DEFAULT_LAYOUT, **layout}
    p = {k: np.asarray(v, np.float32) for k, v in params.items()}
    width = p["c1.w"].shape[0]
    shared = [("c2", "up_q")] if layout["skip"].startswith("concat") else []
    g = _Builder(None if ranges is None else dict(ranges), shared, layout["weights"] == "channel")
    inp = export.INPUT
    if layout["pool1"] == "float":
        x = g.node("AveragePool", [inp], "pool1", kernel_shape=[2, 2], strides=[2, 2])
        x = g.quantize(x)
        h1 = g.conv("c1", x, p["c1.w"], p["c1.b"], 1, relu=True)
    else:
        x = g.quantize(g.node("Identity", [inp], "input"))
        w = np.repeat(np.repeat(p["c1.w"], 2, axis=2), 2, axis=3) / 4.0
        h1 = g.conv("c1", x, w, p["c1.b"], 2, stride=2, relu=True)
    h2 = g.conv("c2", h1, p["c2.w"], p["c2.b"], 1, relu=True)
    if layout["pool2"] == "conv":
        w = np.zeros((width, width, 2, 2), np.float32)
        w[np.arange(width), np.arange(width)] = 0.25
        q = g.conv("pool2", h2, w, None, 0, stride=2)
    else:
        q = g.quantize(g.node("AveragePool", [g.dequantize(h2, "c2.f")], "pool2", kernel_shape=[2, 2], strides=[2, 2]))
    q = g.conv("c3", q, p["c3.w"], p["c3.b"], 1, relu=True)
    q = g.conv("c4", q, p["c4.w"], p["c4.b"], 1, relu=True)
    if layout["skip"] == "float":
        g.inits.append(_f("up.w", lambda_net.up_kernel(width)))
        u = g.node("ConvTranspose", [g.dequantize(q, "c4.f"), "up.w"], "up_q", kernel_shape=[4, 4], strides=[2, 2],
                   pads=[1, 1, 1, 1], group=width)
        s = g.quantize(g.node("Add", [g.dequantize(h2, "c2.f2"), u], "skip"))
        h3 = g.conv("c5", s, p["c5.w"], p["c5.b"], 1, relu=True)
    else:
        grouped = layout["skip"] == "concat-group"
        u = g.conv("up_q", q, _up_phase_weights(width, grouped), None, 1, group=width if grouped else 1)
        u = g.move("DepthToSpace", u, "up", blocksize=2, mode="CRD" if grouped else "DCR")
        s = g.move("Concat", [h2, u], "skip", axis=1)
        h3 = g.conv("c5", s, np.concatenate([p["c5.w"], p["c5.w"]], axis=1), p["c5.b"], 1, relu=True)
    g.inits.append(_f("lambda_max", np.array(lambda_net.LAMBDA_MAX, np.float32)))
    if layout["out"] == "float":
        o = g.conv("c6", h3, p["c6.w"], p["c6.b"], 0)
        g.inits.append(_f("up1.w", lambda_net.up_kernel(1)))
        o = g.node("ConvTranspose", [g.dequantize(o, "c6.f"), "up1.w"], "up_out", kernel_shape=[4, 4],
                   strides=[2, 2], pads=[1, 1, 1, 1], group=1)
    elif layout["out"] == "d2s1":
        o = g.conv("c6", h3, p["c6.w"], p["c6.b"], 0)
        o = g.conv("up_out.ph", o, _up_phase_weights(1, group=False), None, 1)
        o = g.move("DepthToSpace", o, "up_out", blocksize=2, mode="DCR")
        o = g.dequantize(o, "up_out.f")
    else:
        o = g.conv("c6", h3, _out_phase_weights(p["c6.w"]), np.repeat(p["c6.b"], 4), 1)
        o = g.move("DepthToSpace", o, "up_out", blocksize=2, mode="DCR")
        o = g.dequantize(o, "up_out.f")
    g.node("Sigmoid", [o], "sigmoid")
    g.node("Mul", ["sigmoid", "lambda_max"], export.OUTPUT)

    x_in = helper.make_tensor_value_info(inp, TensorProto.FLOAT, ["K", feat.CHANNELS, "N_y", "N_x"])
    outs = [helper.make_tensor_value_info(export.OUTPUT, TensorProto.FLOAT, ["K", 1, "N_y", "N_x"])]
    outs += [helper.make_tensor_value_info(n, TensorProto.FLOAT, ["K", "C_" + n, "H_" + n, "W_" + n]) for n in g.observed]
    graph = helper.make_graph(g.nodes, "sparsemap_lambda_net", [x_in], outs, g.inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", export.OPSET)],
                              producer_name="sparsemap_train", producer_version=export.CONTRACT_VERSION)
    model.ir_version = export.IR_VERSION
    if meta:
        helper.set_model_props(model, meta)
    onnx.checker.check_model(model, full_check=ranges is None)
    return model


def calibrate(params: dict, layout: dict, calibration) -> dict:
    """MinMax ranges ``{tensor: (min, max)}`` of every tensor the int8 graph quantises."""
    import onnxruntime as ort

    f32 = build(params, layout)
    names = [o.name for o in f32.graph.output[1:]]
    so = ort.SessionOptions()
    so.intra_op_num_threads = so.inter_op_num_threads = 1
    sess = ort.InferenceSession(f32.SerializeToString(), so, providers=["CPUExecutionProvider"])
    ranges = {}
    for x in calibration:
        for n, v in zip(names, sess.run(names, {export.INPUT: np.asarray(x, np.float32)})):
            lo, hi = ranges.get(n, (np.inf, -np.inf))
            ranges[n] = (min(lo, float(v.min())), max(hi, float(v.max())))
    return ranges


def quantize(params: dict, calibration, meta: dict, layout: dict | None = None) -> onnx.ModelProto:
    """The int8 (QOperator) model of ``params`` in ``layout`` (:data:`DEFAULT_LAYOUT`)."""
    layout = {**DEFAULT_LAYOUT, **(layout or {})}
    ranges = calibrate(params, layout, calibration)
    model = build(params, layout, ranges, meta)
    return model


def float_model(params: dict, layout: dict | None = None) -> onnx.ModelProto:
    """The restructured network in f32 with only the ``lambda`` output (for equivalence checks)."""
    m = build(params, {**DEFAULT_LAYOUT, **(layout or {})})
    del m.graph.output[1:]
    return m
