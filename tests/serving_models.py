"""Tiny ONNX models built by hand for the serving tests: y = sigmoid(x @ w + b), and a broken file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

N_FEATURES = 4


def linear_model(path: Path, seed: int, n_features: int = N_FEATURES) -> Path:
    rng = np.random.default_rng(seed)
    w = rng.normal(size=(n_features, 1)).astype(np.float32)
    b = np.array([rng.normal()], dtype=np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["features", "w"], ["z0"]),
         helper.make_node("Add", ["z0", "b"], ["z"]),
         helper.make_node("Sigmoid", ["z"], ["probability"]),
         helper.make_node("Identity", ["z"], ["logit"])],
        "linear",
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, ["batch", n_features])],
        [helper.make_tensor_value_info("probability", TensorProto.FLOAT, ["batch", 1]),
         helper.make_tensor_value_info("logit", TensorProto.FLOAT, ["batch", 1])],
        [numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    path.write_bytes(model.SerializeToString())
    return path


def broken_model(path: Path) -> Path:
    path.write_bytes(b"\x08\x07this is not an onnx graph" * 10)
    return path


def reference(path: Path, x: np.ndarray) -> dict[str, np.ndarray]:
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return dict(zip([o.name for o in sess.get_outputs()], sess.run(None, {"features": x}), strict=True))


def imputing_model(path: Path, seed: int, means: list[float]) -> Path:
    """y = sigmoid(x' @ w + b), where x' is x with each NaN replaced by its column's mean: a model that takes
    missing values, as trained ones do."""
    rng = np.random.default_rng(seed)
    n = len(means)
    w = rng.normal(size=(n, 1)).astype(np.float32)
    b = np.array([rng.normal()], dtype=np.float32)
    graph = helper.make_graph(
        [helper.make_node("IsNaN", ["features"], ["missing"]),
         helper.make_node("Where", ["missing", "means", "features"], ["filled"]),
         helper.make_node("MatMul", ["filled", "w"], ["z0"]),
         helper.make_node("Add", ["z0", "b"], ["z"]),
         helper.make_node("Sigmoid", ["z"], ["probability"])],
        "imputing",
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, ["batch", n])],
        [helper.make_tensor_value_info("probability", TensorProto.FLOAT, ["batch", 1])],
        [numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b"),
         numpy_helper.from_array(np.array(means, np.float32), "means")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    path.write_bytes(model.SerializeToString())
    return path
