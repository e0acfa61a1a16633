"""A loaded model version: an onnxruntime session with its tensor specs, warmed up before it takes traffic."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np

from .protocol import ORT_TO_OIP, TensorSpec


def session_threads() -> int:
    # Requests arrive concurrently on the serving loop; a few intra-op threads per session use the box without
    # oversubscribing it when several models serve at once.
    return max(1, min(4, (os.cpu_count() or 2) // 2))


class LoadedModel:
    def __init__(self, name: str, version: int, path: Path, signature: dict | None = None):
        import onnxruntime as ort  # heavy: imported when the first model loads, never at daemon start

        self.name, self.version, self.signature = name, int(version), signature or {}
        so = ort.SessionOptions()
        so.intra_op_num_threads = session_threads()
        so.inter_op_num_threads = 1
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        available = ort.get_available_providers()
        providers = ["CPUExecutionProvider"]
        if "CUDAExecutionProvider" in available:
            providers.insert(0, "CUDAExecutionProvider")
        self.session = ort.InferenceSession(str(path), so, providers=providers)
        self.provider = self.session.get_providers()[0]
        self.inputs = {i.name: TensorSpec(i.name, ORT_TO_OIP.get(i.type, "BYTES"), _dims(i.shape))
                       for i in self.session.get_inputs()}
        self.outputs = [TensorSpec(o.name, ORT_TO_OIP.get(o.type, "BYTES"), _dims(o.shape))
                        for o in self.session.get_outputs()]
        self.output_names = [o.name for o in self.outputs]
        self.loaded_at = time.time()
        # Column names of each 2-D input, so the prediction log keys values by feature (what monitors read):
        # the training signature lists them per input; a model without one falls back to its single input.
        self.input_features: dict[str, list[str]] = {
            e["name"]: list(e["features"]) for e in self.signature.get("inputs", [])
            if isinstance(e, dict) and e.get("name") in self.inputs and e.get("features")}
        if not self.input_features and len(self.inputs) == 1 and self.signature.get("feature_names"):
            self.input_features = {next(iter(self.inputs)): list(self.signature["feature_names"])}
        # Inputs whose missing values the model imputes itself (its signature says so): they take a null.
        self.nullable = frozenset(e["name"] for e in self.signature.get("inputs", [])
                                  if isinstance(e, dict) and e.get("nullable") and e.get("name") in self.inputs)

    @property
    def batched(self) -> bool:
        """Every input has a dynamic first dimension, so requests can be stacked along it."""
        return all(s.shape and s.shape[0] == -1 for s in self.inputs.values())

    def infer(self, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return dict(zip(self.output_names, self.session.run(self.output_names, arrays), strict=True))

    def warm_up(self) -> None:
        """One inference on a zero batch: a model that cannot run fails here, before it takes traffic."""
        from .protocol import DTYPES

        feeds = {}
        for n, s in self.inputs.items():
            shape = tuple(1 if d == -1 else d for d in s.shape)
            feeds[n] = np.full(shape, "", dtype=object) if s.datatype == "BYTES" else np.zeros(shape, DTYPES[s.datatype])
        out = self.infer(feeds)
        for name, arr in out.items():
            if arr.dtype.kind == "f" and not np.isfinite(arr).all():
                raise ValueError(f"warm-up output {name!r} is not finite")

    def metadata(self) -> dict:
        return {"name": self.name, "versions": [str(self.version)], "platform": "onnxruntime_onnx",
                "inputs": [s.to_dict() for s in self.inputs.values()],
                "outputs": [s.to_dict() for s in self.outputs]}

    def described_inputs(self) -> list[dict]:
        """Each input as a client needs it: name, type, shape, its features in order, and whether it takes
        a null (a missing value the model imputes)."""
        return [{**s.to_dict(), "features": self.input_features.get(n), "nullable": n in self.nullable}
                for n, s in self.inputs.items()]


def _dims(shape) -> tuple[int, ...]:
    return tuple(d if isinstance(d, int) and d >= 0 else -1 for d in shape)
