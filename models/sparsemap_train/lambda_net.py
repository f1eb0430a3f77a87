"""The Lambda network (docs/design.md §4): one small CNN shared by all filters.

Input ``features [K, 3, N_y, N_x]`` (see :mod:`features`), output ``lambda [K, 1, N_y, N_x]``.
The filter axis K is the batch axis and every layer treats batch items alike, so the
network is equivariant to filter permutations by construction and works for any K and any
filter size (the dictionary only enters through the features). N_y, N_x must be multiples
of 4.

Architecture (``C = width``, all convolutions zero-padded "same", ReLU after each 3x3):

    x  [K, 3, N]      --AvgPool 2x2/2-->            [K, 3, N/2]
    h1 = relu(conv3x3(3 -> C))                      [K, C, N/2]
    h2 = relu(conv3x3(C -> C))                      [K, C, N/2]
    q  = AvgPool 2x2/2 (h2)                         [K, C, N/4]
    q  = relu(conv3x3(C -> C)); q = relu(conv3x3(C -> C))
    u  = up2(q)   (fixed bilinear ConvTranspose 4x4/2, pad 1, depthwise)
    h3 = relu(conv3x3(h2 + u, C -> C))              [K, C, N/2]
    o  = conv1x1(C -> 1)                            [K, 1, N/2]   (logits)
    lambda = LAMBDA_MAX * sigmoid(up2(o))           [K, 1, N]

Half resolution is where the work happens: Lambda maps are smooth and the solver's cost is
2K full-size FFTs per iteration, so the network has to be cheap (see :func:`macs`).
The output is bounded to ``[0, LAMBDA_MAX]`` (scaled-problem units; with dictionaries
normalised to ``L = 1`` the best scalar lambda on the validation slice was 0.012, §3.7).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

#: Upper bound of the predicted Lambda (scaled-problem units).
LAMBDA_MAX = 0.1
#: Initial value of every Lambda (the output bias is set so that sigmoid gives it).
LAMBDA_INIT = 0.012
#: Default channel width.
WIDTH = 8
#: 1-D bilinear kernel of the x2 transposed-convolution upsampler (stride 2, pad 1).
UP_KERNEL_1D = np.array([0.25, 0.75, 0.75, 0.25])
#: N_y and N_x must be multiples of this (two 2x2 poolings).
GRID_MULTIPLE = 4

CONVS = ("c1", "c2", "c3", "c4", "c5", "c6")


def up_kernel(channels: int) -> np.ndarray:
    """Depthwise ConvTranspose weight ``[C, 1, 4, 4]`` (ONNX layout) of the bilinear x2 upsampler."""
    k2 = np.outer(UP_KERNEL_1D, UP_KERNEL_1D)
    return np.broadcast_to(k2, (channels, 1, 4, 4)).copy()


def init(seed: int = 0, width: int = WIDTH, in_channels: int = 3) -> dict:
    """He-normal weights (``[C_out, C_in, k, k]``, ONNX/OIHW layout), zero biases except the
    output bias, which starts every map at :data:`LAMBDA_INIT`. Deterministic in ``seed``."""
    rng = np.random.default_rng(seed)
    shapes = {"c1": (width, in_channels, 3), "c2": (width, width, 3), "c3": (width, width, 3),
              "c4": (width, width, 3), "c5": (width, width, 3), "c6": (1, width, 1)}
    p = {}
    for name in CONVS:
        o, i, k = shapes[name]
        std = np.sqrt(2.0 / (i * k * k))
        p[name + ".w"] = (rng.standard_normal((o, i, k, k)) * std).astype(np.float32)
        p[name + ".b"] = np.zeros((o,), np.float32)
    p["c6.w"] *= 0.1
    frac = LAMBDA_INIT / LAMBDA_MAX
    p["c6.b"][:] = np.log(frac / (1 - frac))
    return {k: jnp.asarray(v) for k, v in p.items()}


def _conv(x, w, b, pad):
    y = jax.lax.conv_general_dilated(x, w.astype(x.dtype), (1, 1), ((pad, pad), (pad, pad)),
                                     dimension_numbers=("NCHW", "OIHW", "NCHW"))
    return y + b.astype(x.dtype)[None, :, None, None]


def _avgpool2(x):
    k, c, ny, nx = x.shape
    return x.reshape(k, c, ny // 2, 2, nx // 2, 2).mean(axis=(3, 5))


def _up2(x):
    """ONNX ``ConvTranspose(strides=2, pads=1, kernel 4x4, group=C)`` with the bilinear kernel:
    a stride-2 transposed convolution is a convolution of the 2x-dilated input with the
    flipped kernel (symmetric here), padded by ``k - 1 - pad = 2``."""
    c = x.shape[1]
    w = jnp.asarray(up_kernel(c), x.dtype)  # [C, 1, 4, 4] = OIHW with feature_group_count = C
    return jax.lax.conv_general_dilated(x, w, (1, 1), ((2, 2), (2, 2)), lhs_dilation=(2, 2),
                                        dimension_numbers=("NCHW", "OIHW", "NCHW"), feature_group_count=c)


def logits(params, x):
    """Half-resolution logits ``[K, 1, N_y/2, N_x/2]``."""
    relu = jax.nn.relu
    h = _avgpool2(x)
    h1 = relu(_conv(h, params["c1.w"], params["c1.b"], 1))
    h2 = relu(_conv(h1, params["c2.w"], params["c2.b"], 1))
    q = _avgpool2(h2)
    q = relu(_conv(q, params["c3.w"], params["c3.b"], 1))
    q = relu(_conv(q, params["c4.w"], params["c4.b"], 1))
    h3 = relu(_conv(h2 + _up2(q), params["c5.w"], params["c5.b"], 1))
    return _conv(h3, params["c6.w"], params["c6.b"], 0)


def apply(params, x):
    """``lambda [K, 1, N_y, N_x] = LAMBDA_MAX * sigmoid(up2(logits))`` from ``features [K, 3, N_y, N_x]``."""
    k, c, ny, nx = x.shape
    if ny % GRID_MULTIPLE or nx % GRID_MULTIPLE:
        raise ValueError(f"N_y and N_x must be multiples of {GRID_MULTIPLE}, got {ny}x{nx}")
    return LAMBDA_MAX * jax.nn.sigmoid(_up2(logits(params, x)))


def macs(k: int, ny: int, nx: int, width: int = WIDTH, in_channels: int = 3) -> dict:
    """Multiply-accumulates of one forward pass, per layer and in total (FLOPs ~ 2 x MACs).
    Pooling, ReLU, sigmoid and additions are counted as zero."""
    half = (ny // 2) * (nx // 2)
    quarter = (ny // 4) * (nx // 4)
    w = width
    per = {
        "c1": half * 9 * in_channels * w,
        "c2": half * 9 * w * w,
        "c3": quarter * 9 * w * w,
        "c4": quarter * 9 * w * w,
        "up_q": quarter * 16 * w,        # transposed conv: 16 taps per input pixel
        "c5": half * 9 * w * w,
        "c6": half * w,
        "up_out": half * 16,
    }
    per = {name: k * v for name, v in per.items()}
    per["total"] = sum(per.values())
    return per
