"""ONNX export at the end of a run: one file, a dynamic batch, raw feature values in, checked and compared.

Categorical features enter the model as strings: a per-column ``LabelEncoder`` (ONNX-ML) in front of the torch
graph turns them into the codes the network was trained on, so serving never re-implements the encoding.
"""

from __future__ import annotations

import logging
import warnings

import numpy as np

from appliance import ApplianceError

from .data import Prepared

NUMERIC_INPUT, CATEGORICAL_INPUT, CODES = "numeric", "categorical", "codes"


def signature(prepared: Prepared) -> dict:
    """What a client needs to call the model: inputs, feature order, outputs, class labels."""
    inputs = []
    if prepared.numeric_features:
        inputs.append({"name": NUMERIC_INPUT, "dtype": "FP32", "shape": [-1, len(prepared.numeric_features)],
                       "features": prepared.numeric_features, "nullable": True,
                       "note": "raw values; null (NaN) means missing (the training mean is used)"})
    if prepared.categorical_features:
        inputs.append({"name": CATEGORICAL_INPUT, "dtype": "BYTES",
                       "shape": [-1, len(prepared.categorical_features)],
                       "features": prepared.categorical_features, "nullable": True,
                       "note": "raw values as strings; unseen, empty or null values share an 'unknown' slot"})
    if prepared.task == "regression":
        outputs = [{"name": "prediction", "dtype": "FP32", "shape": [-1, 1]}]
    else:
        outputs = [{"name": "probabilities", "dtype": "FP32", "shape": [-1, len(prepared.class_labels)]}]
    return {"task": prepared.task, "inputs": inputs,
            "feature_names": prepared.numeric_features + prepared.categorical_features,
            "outputs": outputs, "class_labels": prepared.class_labels}


def to_onnx(exported, prepared: Prepared, sig: dict) -> bytes:
    """Export ``exported`` (a ``nets.Exported`` on the CPU, in eval mode) and return the checked ONNX bytes."""
    import onnx
    import torch

    part = prepared.parts["holdout"]
    args, names = [], []
    if prepared.numeric_features:
        args.append(torch.from_numpy(part.numeric[:2]))
        names.append(NUMERIC_INPUT)
    if prepared.categorical_features:
        args.append(torch.from_numpy(part.codes[:2]))
        names.append(CODES)
    # The exporter reports each pass on stdout/stderr and warns about optional packages (torchvision); the run's
    # log keeps the outcome instead.
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(exported, tuple(args), input_names=names,
                                    output_names=[o["name"] for o in sig["outputs"]], dynamo=True,
                                    verbose=False,
                                    dynamic_shapes=tuple({0: "batch"} for _ in args))
    model = program.model_proto
    if prepared.categorical_features:
        _strings_in_front(model, prepared.vocabularies)
    model.doc_string = f"appliance {prepared.task} model; inputs take raw feature values"
    try:
        onnx.checker.check_model(model, full_check=True)
    except onnx.checker.ValidationError as exc:
        raise ApplianceError(f"the exported model fails onnx.checker: {exc}", title="Export failed") from None
    return model.SerializeToString()


def _strings_in_front(model, vocabularies: list[list[str]]) -> None:
    """Replace the int64 ``codes`` input by a string ``categorical`` input encoded inside the graph."""
    from onnx import TensorProto, helper

    graph = model.graph
    old = next(i for i in graph.input if i.name == CODES)
    batch = old.type.tensor_type.shape.dim[0].dim_param or "batch"
    position = list(graph.input).index(old)
    graph.input.remove(old)
    graph.input.insert(position, helper.make_tensor_value_info(CATEGORICAL_INPUT, TensorProto.STRING,
                                                               [batch, len(vocabularies)]))
    nodes, columns = [], []
    graph.initializer.append(helper.make_tensor("cat_axis", TensorProto.INT64, [1], [1]))
    for j, vocab in enumerate(vocabularies):
        graph.initializer.append(helper.make_tensor(f"cat_col{j}", TensorProto.INT64, [], [j]))
        nodes.append(helper.make_node("Gather", [CATEGORICAL_INPUT, f"cat_col{j}"], [f"cat_raw{j}"], axis=1))
        nodes.append(helper.make_node("LabelEncoder", [f"cat_raw{j}"], [f"cat_code{j}"], domain="ai.onnx.ml",
                                      keys_strings=vocab or [""], values_int64s=list(range(1, len(vocab) + 1))
                                      if vocab else [0], default_int64=0))
        nodes.append(helper.make_node("Unsqueeze", [f"cat_code{j}", "cat_axis"], [f"cat_col_codes{j}"]))
        columns.append(f"cat_col_codes{j}")
    nodes.append(helper.make_node("Concat", columns, [CODES], axis=1))
    for node in reversed(nodes):
        graph.node.insert(0, node)
    if not any(o.domain == "ai.onnx.ml" for o in model.opset_import):
        model.opset_import.append(helper.make_opsetid("ai.onnx.ml", 3))


def onnx_outputs(onnx_bytes: bytes, prepared: Prepared, part_name: str = "holdout") -> np.ndarray:
    """Run the ONNX model with onnxruntime on a part's raw feature values."""
    import onnxruntime as ort

    session = ort.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
    part = prepared.parts[part_name]
    feed = {}
    if prepared.numeric_features:
        feed[NUMERIC_INPUT] = part.numeric
    if prepared.categorical_features:
        feed[CATEGORICAL_INPUT] = part.raw_categorical
    return session.run(None, feed)[0]


def torch_outputs(exported, prepared: Prepared, part_name: str = "holdout") -> np.ndarray:
    import torch

    part = prepared.parts[part_name]
    args = []
    if prepared.numeric_features:
        args.append(torch.from_numpy(part.numeric))
    if prepared.categorical_features:
        args.append(torch.from_numpy(part.codes))
    with torch.no_grad():
        return exported(*args).numpy()


def score_other(onnx_path: str, signature: dict, prepared: Prepared, part_name: str = "holdout") -> np.ndarray | None:
    """Another model version's outputs on this run's rows, or None when it needs a feature this run lacks:
    the promotion gate then compares the champion and the challenger on the same rows."""
    import onnxruntime as ort

    part = prepared.parts[part_name]
    feed = {}
    for entry in signature.get("inputs") or []:
        features = entry.get("features") or []
        have, values = ((prepared.numeric_features, part.numeric) if entry.get("name") == NUMERIC_INPUT
                        else (prepared.categorical_features, part.raw_categorical))
        if entry.get("name") not in (NUMERIC_INPUT, CATEGORICAL_INPUT) or not set(features) <= set(have):
            return None
        feed[entry["name"]] = values[:, [have.index(f) for f in features]]
    if not feed:
        return None
    session = ort.InferenceSession(onnx_path, providers=["CPUExecutionProvider"])
    return session.run(None, feed)[0]
