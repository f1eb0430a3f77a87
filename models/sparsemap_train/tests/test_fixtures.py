"""tests/fixtures/lambda_net is what make_lambda_fixtures.py writes today (regenerated and compared)."""

from __future__ import annotations

import numpy as np
import onnx

from sparsemap_train import make_lambda_fixtures as mk


def test_lambda_fixtures_regenerate(tmp_path):
    mk.main(tmp_path, verbose=False)
    committed = mk.OUT
    files = sorted(p.relative_to(committed) for p in committed.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*") if p.is_file())
    for rel in files:
        a, b = committed / rel, tmp_path / rel
        if rel.suffix == ".npy":
            x, y = np.load(a), np.load(b)
            assert x.dtype == y.dtype and x.shape == y.shape, rel
            np.testing.assert_allclose(x, y, rtol=1e-6, atol=1e-9, err_msg=str(rel))
        elif rel.suffix == ".onnx":
            ma, mb = onnx.load(a), onnx.load(b)
            assert [n.op_type for n in ma.graph.node] == [n.op_type for n in mb.graph.node]
            for ta, tb in zip(ma.graph.initializer, mb.graph.initializer):
                np.testing.assert_allclose(onnx.numpy_helper.to_array(ta), onnx.numpy_helper.to_array(tb),
                                           rtol=1e-6, err_msg=f"{rel}: {ta.name}")
            assert list(ma.metadata_props) == list(mb.metadata_props)
