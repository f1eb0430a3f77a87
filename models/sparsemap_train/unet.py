"""The black-box learned baseline of issue 12: a U-Net that post-processes the zero-filled image.

This is the alternative a user would pick instead of the model-based method: no dictionary, no
solver, no data consistency, one network from the zero-filled image to the image. It is
trained on the same problems as the Lambda network (:func:`train.draw_problem`, same presets,
same seed) with the same loss, so the per-source tables measure what the model-based
structure buys in robustness: the U-Net's loss from the sources it was trained on to those it
was not, next to ours.

Input and output (the ONNX contract, ``*.unet.onnx``): ``image`` float32 ``[1, 2, N_y, N_x]``,
the real and imaginary parts of the zero-filled image ``F^H y`` divided by the 99th percentile
of its magnitude (the scaling of docs/design.md §3.6, so one network serves every signal
level); ``denoised`` the same shape and scale. ``N_y``, ``N_x`` multiples of 8. The host runs it
as ``eval --methods ...,unet --unet-model FILE`` (tract) and multiplies the scale back.

Architecture (all convolutions 3x3 "same" with ReLU, widths ``w, 2w, 4w``, bottleneck ``8w``)::

    e1 = conv(conv(x))            [w,  N]
    e2 = conv(conv(pool(e1)))     [2w, N/2]     pool: MaxPool 2x2/2
    e3 = conv(conv(pool(e2)))     [4w, N/4]
    b  = conv(conv(pool(e3)))     [8w, N/8]
    d3 = conv(conv([up(b),  e3])) [4w, N/4]     up: ConvTranspose 2x2/2, [a, b]: Concat
    d2 = conv(conv([up(d3), e2])) [2w, N/2]
    d1 = conv(conv([up(d2), e1])) [w,  N]
    out = x + conv1x1(d1)         [2,  N]       (residual: the network predicts the correction)

Run (writes PREFIX.params.npz, PREFIX.history.json, PREFIX.unet.onnx)::

    PYTHONPATH=models models/.venv/bin/python -m sparsemap_train.unet --like default --out models/baselines/unet_colin27
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import time

os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import onnx  # noqa: E402
import optax  # noqa: E402
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from . import export, recon, train  # noqa: E402

#: Contract version written to ``sparsemap.unet.version``; the host refuses any other.
CONTRACT_VERSION = "1"
WIDTH = 16
#: N_y and N_x must be multiples of this (three 2x2 poolings).
GRID_MULTIPLE = 8
INPUT, OUTPUT = "image", "denoised"
LEVELS = ("e1", "e2", "e3", "b", "d3", "d2", "d1")


def _conv_shapes(width: int) -> dict:
    w = width
    inputs = {"e1": (2, w), "e2": (w, 2 * w), "e3": (2 * w, 4 * w), "b": (4 * w, 8 * w),
              "d3": (8 * w, 4 * w), "d2": (4 * w, 2 * w), "d1": (2 * w, w)}
    shapes = {}
    for level, (cin, cout) in inputs.items():
        shapes[level + ".0"] = (cout, cin, 3, 3)
        shapes[level + ".1"] = (cout, cout, 3, 3)
    # ConvTranspose weights are [C_in, C_out, 2, 2] (ONNX layout)
    shapes["up3"] = (8 * w, 4 * w, 2, 2)
    shapes["up2"] = (4 * w, 2 * w, 2, 2)
    shapes["up1"] = (2 * w, w, 2, 2)
    shapes["out"] = (2, w, 1, 1)
    return shapes


def init(seed: int = 0, width: int = WIDTH) -> dict:
    """He-normal weights, zero biases; the output layer starts near zero so the untrained
    network is the identity (the zero-filled image)."""
    rng = np.random.default_rng(seed)
    p = {}
    for name, shape in _conv_shapes(width).items():
        fan_in = shape[0] * 4 if name.startswith("up") else shape[1] * shape[2] * shape[3]
        p[name + ".w"] = (rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)).astype(np.float32)
        p[name + ".b"] = np.zeros((shape[1] if name.startswith("up") else shape[0],), np.float32)
    p["out.w"] *= 0.01
    return {k: jnp.asarray(v) for k, v in p.items()}


def _conv(x, w, b):
    pad = w.shape[-1] // 2
    y = jax.lax.conv_general_dilated(x, w, (1, 1), ((pad, pad), (pad, pad)),
                                     dimension_numbers=("NCHW", "OIHW", "NCHW"))
    return y + b[None, :, None, None]


def _pool(x):
    n, c, ny, nx = x.shape
    return x.reshape(n, c, ny // 2, 2, nx // 2, 2).max(axis=(3, 5))


def _up(x, w, b):
    """ONNX ``ConvTranspose(kernel 2x2, strides 2)``: every input pixel writes its own 2x2
    output block, ``y[o, 2i+a, 2j+c] = sum_k x[k, i, j] w[k, o, a, c] + b[o]``."""
    n, _, ny, nx = x.shape
    y = jnp.einsum("nkij,koac->noiajc", x, w).reshape(n, w.shape[1], 2 * ny, 2 * nx)
    return y + b[None, :, None, None]


def apply(params, x):
    """``denoised [n, 2, N_y, N_x]`` from the scaled zero-filled ``image [n, 2, N_y, N_x]``."""
    if x.shape[2] % GRID_MULTIPLE or x.shape[3] % GRID_MULTIPLE:
        raise ValueError(f"N_y and N_x must be multiples of {GRID_MULTIPLE}, got {x.shape[2]}x{x.shape[3]}")
    relu = jax.nn.relu

    def block(level, h):
        h = relu(_conv(h, params[level + ".0.w"], params[level + ".0.b"]))
        return relu(_conv(h, params[level + ".1.w"], params[level + ".1.b"]))

    e1 = block("e1", x)
    e2 = block("e2", _pool(e1))
    e3 = block("e3", _pool(e2))
    b = block("b", _pool(e3))
    d3 = block("d3", jnp.concatenate([_up(b, params["up3.w"], params["up3.b"]), e3], axis=1))
    d2 = block("d2", jnp.concatenate([_up(d3, params["up2.w"], params["up2.b"]), e2], axis=1))
    d1 = block("d1", jnp.concatenate([_up(d2, params["up1.w"], params["up1.b"]), e1], axis=1))
    return x + _conv(d1, params["out.w"], params["out.b"])


def scaled_input(kspace, mask):
    """``(image [1, 2, N_y, N_x], p99)``: the zero-filled image over the 99th percentile of its
    magnitude, as real and imaginary channels (what the host feeds the ONNX model)."""
    x0 = recon.centred_ifft2(kspace * mask)
    p99 = jax.lax.stop_gradient(recon.percentile99(jnp.abs(x0).ravel()))
    x0 = x0 / p99
    return jnp.stack([x0.real, x0.imag])[None].astype(jnp.float32), p99


def reconstruct(params, kspace, mask):
    """The U-Net's complex image on the scale of ``F^H y``."""
    image, p99 = scaled_input(kspace, mask)
    out = apply(params, image)[0]
    return (out[0] + 1j * out[1]) * p99


def macs(ny: int, nx: int, width: int = WIDTH) -> int:
    """Multiply-accumulates of one forward pass (FLOPs ~ 2 x MACs)."""
    total = 0
    for name, shape in _conv_shapes(width).items():
        level = name.split(".")[0]
        scale = {"e1": 1, "d1": 1, "up1": 4, "e2": 4, "d2": 4, "up2": 16, "e3": 16, "d3": 16,
                 "up3": 64, "b": 64, "out": 1}[level]
        pixels = ny * nx // scale
        total += pixels * int(np.prod(shape))
    return total


# ---------------------------------------------------------------------------------------------
# ONNX


def build_onnx(params: dict, description: str) -> onnx.ModelProto:
    """The f32 ONNX graph equal to :func:`apply` (opset 17; symbolic ``N_y``, ``N_x``)."""
    p = {k: np.asarray(v, np.float32) for k, v in params.items()}
    inits, nodes = [], []

    def init_(name):
        inits.append(numpy_helper.from_array(np.ascontiguousarray(p[name]), name))
        return name

    def conv(x, name, out, relu=True):
        pad = p[name + ".w"].shape[-1] // 2
        y = out + ("_pre" if relu else "")
        nodes.append(helper.make_node("Conv", [x, init_(name + ".w"), init_(name + ".b")], [y],
                                      kernel_shape=list(p[name + ".w"].shape[2:]), pads=[pad] * 4))
        if relu:
            nodes.append(helper.make_node("Relu", [y], [out]))
        return out

    def block(level, x):
        return conv(conv(x, level + ".0", level + "_0"), level + ".1", level)

    def pool(x, out):
        nodes.append(helper.make_node("MaxPool", [x], [out], kernel_shape=[2, 2], strides=[2, 2]))
        return out

    def up_cat(x, name, skip, out):
        nodes.append(helper.make_node("ConvTranspose", [x, init_(name + ".w"), init_(name + ".b")],
                                      [out + "_up"], kernel_shape=[2, 2], strides=[2, 2]))
        nodes.append(helper.make_node("Concat", [out + "_up", skip], [out], axis=1))
        return out

    e1 = block("e1", INPUT)
    e2 = block("e2", pool(e1, "p1"))
    e3 = block("e3", pool(e2, "p2"))
    b = block("b", pool(e3, "p3"))
    d3 = block("d3", up_cat(b, "up3", e3, "c3"))
    d2 = block("d2", up_cat(d3, "up2", e2, "c2"))
    d1 = block("d1", up_cat(d2, "up1", e1, "c1"))
    correction = conv(d1, "out", "correction", relu=False)
    nodes.append(helper.make_node("Add", [INPUT, correction], [OUTPUT]))
    shape = [1, 2, "N_y", "N_x"]
    graph = helper.make_graph(nodes, "sparsemap_unet", [helper.make_tensor_value_info(INPUT, TensorProto.FLOAT, shape)],
                              [helper.make_tensor_value_info(OUTPUT, TensorProto.FLOAT, shape)], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="sparsemap_train.unet")
    model.ir_version = 8
    meta = {"sparsemap.unet.version": CONTRACT_VERSION, "sparsemap.grid_multiple": str(GRID_MULTIPLE),
            "sparsemap.input_scale": "p99", "sparsemap.description": description}
    for key, value in meta.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.checker.check_model(model)
    return model


def load_params(path: str):
    """``(params, info)`` of a ``PREFIX.params.npz`` (written with :func:`export.save_params`)."""
    params, info = export.load_params(path)
    return {k: jnp.asarray(v) for k, v in params.items()}, info


# ---------------------------------------------------------------------------------------------
# training


def train_unet(like: str, out: pathlib.Path, steps: int | None = None, width: int = WIDTH,
               data: str | None = None, validation: str | None = None, seed: int | None = None,
               batch: int = 1) -> dict:
    """Trains on the problems of preset ``like`` (:data:`train.PRESETS`: data, augmentation,
    noise, masks, seed, crop, learning-rate schedule); ``steps`` replaces the preset's crop
    steps (its whole-slice steps are kept). Model selection on the preset's validation
    problems (:class:`train.Validator`'s, same noise), as for the Lambda network."""
    cfg = dict(train.PRESETS[like])
    for key, value in (("steps", steps), ("data", data), ("validation", validation), ("seed", seed)):
        if value is not None:
            cfg[key] = value
    files = train.load_training_files(train.split_paths(cfg["data"]))
    rng = np.random.default_rng(cfg["seed"])
    out.parent.mkdir(parents=True, exist_ok=True)
    # (presets without validation, e.g. `test`, keep the last parameters)
    cases = train.validation_cases(cfg) if cfg["validate_every"] else []
    params = init(cfg["seed"], width)
    total = cfg["steps"] + cfg["finetune_steps"]
    schedule = optax.cosine_decay_schedule(cfg["lr"], total, cfg["lr_final"] / cfg["lr"])
    opt = optax.apply_if_finite(optax.chain(optax.clip_by_global_norm(1.0), optax.adam(schedule)), 10)
    state = opt.init(params)

    def loss_fn(params, kspaces, masks, targets):
        errs, norms = 0.0, 0.0
        for i in range(kspaces.shape[0]):
            x = reconstruct(params, kspaces[i], masks[i])
            errs = errs + jnp.sum(jnp.abs(x - targets[i]) ** 2) / jnp.sum(jnp.abs(targets[i]) ** 2)
        return jnp.log(errs / kspaces.shape[0])

    @jax.jit
    def step_fn(params, state, kspaces, masks, targets):
        loss, grads = jax.value_and_grad(loss_fn)(params, kspaces, masks, targets)
        updates, state = opt.update(grads, state, params)
        return optax.apply_updates(params, updates), state, loss

    solve = jax.jit(reconstruct)
    history, best = [], {"psnr": -np.inf}
    t0 = time.time()
    for step in range(total):
        problems = [train.draw_problem(files, cfg, rng, step) for _ in range(batch)]
        kspaces, masks, targets = (np.stack([p[j] for p in problems]) for j in range(3))
        params, state, loss = step_fn(params, state, kspaces, masks.astype(np.float32), targets)
        rec = {"step": step, "loss": float(loss), "seconds": round(time.time() - t0, 1)}
        every = cfg["validate_every"]
        if cases and ((step + 1) % every == 0 or step + 1 in (cfg["steps"], total)):
            whole = [train.psnr(np.asarray(solve(params, k, m.astype(np.float32))), t) for k, m, t, _ in cases]
            rec["psnr"] = float(np.mean(whole))
            if rec["psnr"] > best["psnr"]:
                best = {"psnr": rec["psnr"], "step": step, "params": params}
        elif not cases:
            best = {"psnr": None, "step": step, "params": params}
        history.append(rec)
        if step % 100 == 0 or "psnr" in rec:
            print(json.dumps(rec), flush=True)
    info = {"like": like, "config": cfg, "width": width, "batch": batch, "chosen_step": best["step"],
            "validation_psnr": best["psnr"], "train_seconds": round(time.time() - t0, 1),
            "description": f"sparsemap_train.unet: U-Net width {width} on the problems of preset {like} "
                           f"({cfg['steps']} crop steps + {cfg['finetune_steps']} whole-slice steps, batch {batch}, "
                           f"data {cfg['data']}, seed {cfg['seed']}); parameters of step {best['step']} "
                           f"(best validation PSNR)"}
    export.save_params(str(out) + ".params.npz", best["params"], info)
    pathlib.Path(str(out) + ".history.json").write_text(json.dumps(history, indent=1) + "\n")
    onnx.save(build_onnx(best["params"], info["description"]), str(out) + ".unet.onnx")
    return {"history": history, "info": info}


#: The Rust runner's agreement fixture (host/tests/unet.rs).
FIXTURE_DIR = train.REPO / "tests" / "fixtures" / "unet"


def make_fixture(out: pathlib.Path = FIXTURE_DIR) -> None:
    """A width-4 network with a visible correction (``tiny.unet.onnx``), a non-square
    zero-filled image of the bundled example (``zero_filled.npy``, complex64 [64, 32]) and
    this module's output on it (``expected.npy``, float64 precision, the scale of
    ``F^H y``)."""
    params = init(seed=5, width=4)
    params["out.w"] = params["out.w"] * 100
    target = np.load(train.REPO / "examples/colin27/target.npy")[96:160, 112:144].astype(np.complex128)
    rng = np.random.default_rng(3)
    sigma = 0.15 * np.sqrt(np.mean(np.abs(target) ** 2))
    kspace = np.fft.fftshift(np.fft.fft2(np.fft.ifftshift(target), norm="ortho"))
    kspace = kspace + sigma / np.sqrt(2) * (rng.standard_normal(kspace.shape) + 1j * rng.standard_normal(kspace.shape))
    mask = np.zeros(kspace.shape)
    mask[16:48, 8:24] = 1
    zero_filled = np.fft.fftshift(np.fft.ifft2(np.fft.ifftshift(kspace * mask), norm="ortho")).astype(np.complex64)
    jax.config.update("jax_enable_x64", True)  # (the CLI's process only; the tests run in x64)
    p64 = {k: jnp.asarray(v, jnp.float64) for k, v in params.items()}
    x = jnp.asarray(zero_filled, jnp.complex128)
    p99 = np.percentile(np.abs(zero_filled).astype(np.float64), 99)
    image = jnp.stack([x.real, x.imag])[None] / p99
    y = np.asarray(apply(p64, image))[0]
    out.mkdir(parents=True, exist_ok=True)
    onnx.save(build_onnx(params, "tests/fixtures/unet: sparsemap_train.unet.make_fixture"), str(out / "tiny.unet.onnx"))
    np.save(out / "zero_filled.npy", zero_filled)
    np.save(out / "expected.npy", ((y[0] + 1j * y[1]) * p99).astype(np.complex128))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--like", default="default", choices=sorted(train.PRESETS),
                    help="train on the problems of this Lambda-network preset")
    ap.add_argument("--steps", type=int, default=None, help="crop steps (default: the preset's)")
    ap.add_argument("--width", type=int, default=WIDTH)
    ap.add_argument("--batch", type=int, default=1, help="problems per step")
    ap.add_argument("--data", default=None, metavar="LIST")
    ap.add_argument("--validation", default=None, metavar="LIST")
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--out", help="output prefix: PREFIX.params.npz, .history.json, .unet.onnx")
    ap.add_argument("--fixture", action="store_true", help=f"write the Rust agreement fixture to {FIXTURE_DIR}")
    args = ap.parse_args(argv)
    if args.fixture:
        make_fixture()
        return
    if not args.out:
        ap.error("--out is required")
    train_unet(args.like, pathlib.Path(args.out), args.steps, args.width, args.data, args.validation,
               args.seed, args.batch)


if __name__ == "__main__":
    main()
