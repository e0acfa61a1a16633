"""An ONNX file brought from elsewhere: checked as the registry takes it, and its signature read from the graph.

A model trained outside the box (torch, scikit-learn through skl2onnx, LightGBM through onnxmltools) arrives as
one file. Everything that would make it fail later, in serving or in a Triton export, is refused here with a
message that says what to change: bytes that are not a model, tensors kept in an external file, an opset
onnxruntime does not run, outputs that are not tensors, a graph the ONNX checker rejects.
"""

from __future__ import annotations

from appliance import BadRequest

#: ONNX element types the Open Inference Protocol can carry, by their OIP names.
OIP_TYPES = {1: "FP32", 2: "UINT8", 3: "INT8", 4: "UINT16", 5: "INT16", 6: "INT32", 7: "INT64", 8: "BYTES",
             9: "BOOL", 10: "FP16", 11: "FP64", 12: "UINT32", 13: "UINT64"}
#: onnxruntime runs the default domain from opset 7 on.
MIN_OPSET = 7
DEFAULT_DOMAINS = ("", "ai.onnx")


def inspect(data: bytes) -> dict:
    """Check ``data`` as a self-contained ONNX model; returns ``{"signature", "opset", "producer", "model"}``."""
    import onnx

    model = _parse(data)
    _no_external_data(model)
    opset = _check_opsets(model, onnx)
    sig = signature(model)  # before the checker: "not a tensor" says more than the type inference it trips
    try:
        onnx.checker.check_model(model, full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
        raise BadRequest(f"the model fails the ONNX checker: {_first_line(exc)}", title="Bad model") from None
    producer = " ".join(p for p in (model.producer_name, model.producer_version) if p) or None
    return {"signature": sig, "opset": opset, "producer": producer, "model": model}


def _parse(data: bytes):
    import onnx
    from google.protobuf.message import DecodeError

    if not data:
        raise BadRequest("the model file is empty", title="Not an ONNX model")
    try:
        model = onnx.load_model_from_string(data)
    except (DecodeError, ValueError, RuntimeError) as exc:
        raise BadRequest(f"the file is not an ONNX model: it does not parse as one ({_first_line(exc)})",
                         title="Not an ONNX model") from None
    # Protobuf parses many byte strings "successfully" into an empty message: a model has a graph and an opset.
    if not model.opset_import or not model.graph.node or not model.graph.output:
        raise BadRequest("the file is not an ONNX model: it holds no graph with nodes and outputs (was it "
                         "saved with onnx.save_model or torch.onnx.export?)", title="Not an ONNX model")
    return model


def _no_external_data(model) -> None:
    from onnx.external_data_helper import uses_external_data

    for tensor in _tensors(model.graph):
        if uses_external_data(tensor):
            where = {e.key: e.value for e in tensor.external_data}.get("location", "another file")
            raise BadRequest(
                f"the model keeps tensor {tensor.name!r} in an external file ({where!r}); the registry takes one "
                "self-contained file: load it with onnx.load(path) and write it with onnx.save_model(model, out, "
                "save_as_external_data=False) (possible for models under 2 GB)", title="External data")


def _tensors(graph):
    """Every stored tensor of a graph: its weights, and those inside node attributes and subgraphs."""
    yield from graph.initializer
    for node in graph.node:
        for attr in node.attribute:
            if attr.HasField("t"):
                yield attr.t
            yield from attr.tensors
            for sub in ([attr.g] if attr.HasField("g") else []) + list(attr.graphs):
                yield from _tensors(sub)


def _check_opsets(model, onnx) -> int:
    newest = onnx.defs.onnx_opset_version()
    default = None
    for entry in model.opset_import:
        if entry.domain in DEFAULT_DOMAINS:
            default = max(default or 0, entry.version)
    if default is None:
        raise BadRequest("the model imports no default-domain opset (ai.onnx); it cannot run in onnxruntime",
                         title="Unsupported opset")
    if default < MIN_OPSET or default > newest:
        raise BadRequest(f"the model uses opset {default} of the default domain; this box runs opsets "
                         f"{MIN_OPSET} to {newest}: export again with a target opset in that range (torch: "
                         "torch.onnx.export(..., opset_version=N); skl2onnx: to_onnx(..., target_opset=N))",
                         title="Unsupported opset")
    if model.ir_version > onnx.IR_VERSION:
        raise BadRequest(f"the model's IR version {model.ir_version} is newer than this box reads "
                         f"({onnx.IR_VERSION}); export it with an older onnx package", title="Unsupported opset")
    return default


def signature(model) -> dict:
    """Inputs and outputs as a client calls them: name, OIP datatype and shape (-1 where the graph leaves it
    free). Graph inputs that are initializers (older exporters list weights as inputs) are not inputs."""
    weights = {t.name for t in model.graph.initializer}
    inputs = [_tensor(v, "input") for v in model.graph.input if v.name not in weights]
    outputs = [_tensor(v, "output") for v in model.graph.output]
    if not inputs:
        raise BadRequest("the model has no inputs: every graph input is a stored weight", title="Bad model")
    return {"task": None, "inputs": inputs, "outputs": outputs, "feature_names": [], "class_labels": None}


def _tensor(value, kind: str) -> dict:
    t = value.type
    if not t.HasField("tensor_type"):
        what = t.WhichOneof("value") or "untyped"
        hint = ""
        if what in ("sequence_type", "map_type"):
            hint = (" (scikit-learn classifiers converted by skl2onnx wrap probabilities in a ZipMap: convert "
                    "with to_onnx(model, X, options={'zipmap': False}) to get a tensor)")
        raise BadRequest(f"{kind} {value.name!r} is a {what.replace('_type', '')}, not a tensor; the Open "
                         f"Inference Protocol carries only tensors{hint}", title="Unsupported model")
    dtype = OIP_TYPES.get(t.tensor_type.elem_type)
    if dtype is None:
        import onnx

        name = onnx.TensorProto.DataType.Name(t.tensor_type.elem_type)
        raise BadRequest(f"{kind} {value.name!r} has element type {name}, which the Open Inference Protocol "
                         f"cannot carry; use one of {', '.join(sorted(set(OIP_TYPES.values())))}",
                         title="Unsupported model")
    shape = [d.dim_value if d.HasField("dim_value") else -1 for d in t.tensor_type.shape.dim]
    return {"name": value.name, "dtype": dtype, "shape": shape}


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:400]
