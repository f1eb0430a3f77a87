"""Test set-up: float64 JAX on one CPU thread, the package and the NumPy reference importable."""

import os
import pathlib
import sys

os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1")
os.environ.setdefault("JAX_PLATFORMS", "cpu")

HERE = pathlib.Path(__file__).resolve().parent
MODELS = HERE.parents[1]
sys.path.insert(0, str(MODELS))
sys.path.insert(0, str(MODELS / "reference"))

import jax  # noqa: E402

jax.config.update("jax_enable_x64", True)
