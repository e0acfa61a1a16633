"""The way out of the box: a model version as a Triton model repository (``NAME/config.pbtxt``, ``NAME/N/``).

The same Open Inference Protocol is spoken by our serving and by Triton, so clients do not change when a model
moves to Triton or KServe on a cluster.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from appliance import BadRequest

#: Every Open Inference Protocol datatype (what a registered model may take) as Triton's ModelConfig names it.
TRITON_TYPES = {"FP16": "TYPE_FP16", "FP32": "TYPE_FP32", "FP64": "TYPE_FP64", "INT8": "TYPE_INT8",
                "INT16": "TYPE_INT16", "INT32": "TYPE_INT32", "INT64": "TYPE_INT64", "UINT8": "TYPE_UINT8",
                "UINT16": "TYPE_UINT16", "UINT32": "TYPE_UINT32", "UINT64": "TYPE_UINT64", "BYTES": "TYPE_STRING",
                "BOOL": "TYPE_BOOL"}
MAX_BATCH_SIZE = 1024


def config_pbtxt(resolved: dict) -> str:
    """A ``ModelConfig`` in protobuf text format; the batch dimension is Triton's (``max_batch_size``)."""
    sig = resolved["signature"]
    lines = [f'name: "{resolved["name"]}"', 'platform: "onnxruntime_onnx"', f"max_batch_size: {MAX_BATCH_SIZE}",
             f"version_policy: {{ specific: {{ versions: [ {resolved['version']} ] }} }}"]
    for kind, tensors in (("input", sig["inputs"]), ("output", sig["outputs"])):
        entries = []
        for t in tensors:
            if t["shape"][0] != -1:
                raise BadRequest(f"tensor {t['name']!r} has no dynamic batch dimension; Triton cannot batch it")
            extra = ' label_filename: "labels.txt"' if kind == "output" and sig.get("class_labels") else ""
            dims = ", ".join(str(d) for d in t["shape"][1:])
            if len(t["shape"]) == 1:  # one value per row ([batch]): Triton wants a dim, reshaped away
                dims, extra = "1", extra + " reshape: { shape: [ ] }"
            entries.append(f'  {{ name: "{t["name"]}" data_type: {TRITON_TYPES[t["dtype"]]} '
                           f'dims: [ {dims} ]{extra} }}')
        lines.append(f"{kind} [\n" + ",\n".join(entries) + "\n]")
    lines.append("dynamic_batching { }")
    return "\n".join(lines) + "\n"


def write_repository(resolved: dict, root: Path) -> dict:
    """Write (or refresh) ``root/NAME`` for one version; the ONNX file is copied from the verified artifact."""
    if not root.is_absolute():
        raise BadRequest(f"the Triton directory must be an absolute path, got {str(root)!r}")
    model_dir = root / resolved["name"]
    version_dir = model_dir / str(resolved["version"])
    version_dir.mkdir(parents=True, exist_ok=True)
    tmp = version_dir / ".model.onnx.tmp"
    shutil.copyfile(resolved["onnx_path"], tmp)
    os.replace(tmp, version_dir / "model.onnx")
    files = [version_dir / "model.onnx"]
    labels = resolved["signature"].get("class_labels")
    if labels:
        (model_dir / "labels.txt").write_text("".join(f"{label}\n" for label in labels))
        files.append(model_dir / "labels.txt")
    (model_dir / "config.pbtxt").write_text(config_pbtxt(resolved))
    files.append(model_dir / "config.pbtxt")
    return {"name": resolved["name"], "version": resolved["version"], "directory": str(model_dir),
            "files": [str(f) for f in files]}
