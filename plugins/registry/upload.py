"""Registering a model trained elsewhere: ``POST /models/{name}/versions`` with the ONNX file, and a sample.

The body is the ONNX file itself (``application/octet-stream``; ``description``, ``tolerance`` and ``run_id`` in
the query), or a ``multipart/form-data`` form with a ``model`` file, an optional ``sample`` file and those
fields: what ``appliance models register`` and ``curl -F model=@m.onnx -F sample=@rows.parquet`` send. The
file is checked (see ``onnxfile``), stored by its hash, never unpickled, and its version then promotes, serves,
hot-swaps and is monitored like a trained one. The checks run in a child process (see ``checker``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from appliance import BadRequest, Reply

from . import checker
from .store import NAME

FIELDS = ("model", "sample", "description", "tolerance", "run_id", "nullable")
DEFAULT_TOLERANCE = 1e-4
DEFAULT_MAX_UPLOAD_MB = 1024


@dataclass
class Part:
    data: bytes
    filename: str | None = None


#: Read past [registry] max_upload_mb by this much, so an upload a little over the limit (or a form's own lines
#: around it) is still read and told which setting refused it; anything larger is refused unread.
FORM_ROOM = 1 << 20


def body_limit() -> int:
    """The most the upload route reads: ``[registry] max_upload_mb`` (not the control API's usual 16 MB)."""
    from . import REGISTRY

    return REGISTRY.max_upload_bytes + FORM_ROOM


def post_version(req) -> Reply:
    """The route: read the body's parts, check and register; answers the version and what was checked."""
    registry = req.app.registry("services").get("model_registry")
    limit = registry.max_upload_bytes
    if len(req.body) > limit:
        raise BadRequest(f"the upload is {_size(len(req.body))}; [registry] max_upload_mb allows {_size(limit)}",
                         title="Upload too large", status=413)
    ctype = req.headers.get("content-type", "")
    if ctype.lower().startswith("multipart/form-data"):
        parts = parse_multipart(req.body, ctype)
    else:
        parts = {"model": Part(req.body, req.query.get("filename"))}
        parts.update({k: Part(req.query[k].encode()) for k in FIELDS[2:] if req.query.get(k) is not None})
    unknown = set(parts) - set(FIELDS)
    if unknown:
        raise BadRequest(f"unknown part(s) {', '.join(sorted(unknown))}; expected {', '.join(FIELDS)}")
    if "model" not in parts:
        raise BadRequest("part 'model' (the ONNX file) is required")
    sample = parts.get("sample")
    version = register_file(req.app, registry, req.path_params["name"], parts["model"].data,
                            filename=parts["model"].filename, sample=sample.data if sample else None,
                            description=_text(parts, "description"), tolerance=_tolerance(parts),
                            run_id=_run_id(parts), nullable=_names(parts, "nullable"))
    return Reply(version, 201)


def register_file(app, registry, name: str, data: bytes, *, filename: str | None = None,
                  sample: bytes | None = None, description: str = "", tolerance: float = DEFAULT_TOLERANCE,
                  run_id: int | None = None, nullable: tuple[str, ...] = ()) -> dict:
    """Store an ONNX file (and its sample) by hash, check them in a child process, and register the next
    version of ``name``. Returns the version record with ``checks``: size, opset, producer, parity, latency.
    ``nullable`` names the inputs the model imputes (it takes NaN there): serving lets a null through to them."""
    if not NAME.match(name):
        raise BadRequest(f"model name {name!r}: use letters, digits, '_', '.', '-' (it becomes a directory name)")
    if not data:
        raise BadRequest("the model file is empty", title="Not an ONNX model")
    digest = app.artifacts.put_bytes(data)
    sample_sha256 = app.artifacts.put_bytes(sample) if sample is not None else None
    found = checker.check(app, digest, sample_sha256, tolerance)
    checks = found["checks"]
    _mark_nullable(found["signature"], nullable)
    lineage = {"source": "upload", "file": filename, "producer": checks["producer"], "opset": checks["opset"],
               "run_id": run_id, "sample_sha256": sample_sha256, "sample": checks["sample"]}
    if found["reference_sha256"]:
        # Drift monitors compare live inputs with this (see the monitoring plugin's reference).
        lineage["reference_sha256"] = found["reference_sha256"]
    version = registry.register_version(name, run_id=run_id, onnx_sha256=digest, signature=found["signature"],
                                        metrics={}, holdout_sha256=None, lineage=lineage, description=description)
    return {**version, "checks": checks}


def parse_multipart(body: bytes, content_type: str) -> dict[str, Part]:
    """The parts of a ``multipart/form-data`` body, by name; each part's bytes are copied once."""
    m = re.search(r'boundary="?([^";,\s]+)"?', content_type)
    if not m:
        raise BadRequest("a multipart/form-data body needs a boundary in its Content-Type")
    delim = b"--" + m.group(1).encode("latin-1")
    starts = []
    at = body.find(delim)
    while at != -1:
        starts.append(at)
        at = body.find(delim, at + len(delim))
    if len(starts) < 2 or body[starts[-1] + len(delim):starts[-1] + len(delim) + 2] != b"--":
        raise BadRequest("the multipart body is cut short: it has no closing boundary")
    parts: dict[str, Part] = {}
    for begin, end in zip(starts, starts[1:], strict=False):
        head_start = begin + len(delim) + 2  # the CRLF after the boundary
        head_end = body.find(b"\r\n\r\n", head_start, end)
        if head_end == -1:
            raise BadRequest("a part of the multipart body has no header")
        headers = body[head_start:head_end].decode("latin-1").split("\r\n")
        disposition = next((h.split(":", 1)[1] for h in headers if h.lower().startswith("content-disposition:")),
                            "")
        name = _param(disposition, "name")
        if not name:
            raise BadRequest("a part of the multipart body has no name in its Content-Disposition")
        if name in parts:
            raise BadRequest(f"part {name!r} is given twice")
        parts[name] = Part(body[head_end + 4:end - 2], _param(disposition, "filename"))
    return parts


def _size(n: int) -> str:
    return f"{n / 2**20:.1f} MB" if n >= 2**20 else f"{n / 1024:.1f} kB"


def _param(header: str, key: str) -> str | None:
    m = re.search(rf'(?:^|;)\s*{key}=(?:"([^"]*)"|([^;\s]*))', header)
    return (m.group(1) if m.group(1) is not None else m.group(2)) if m else None


def _text(parts: dict[str, Part], key: str) -> str:
    part = parts.get(key)
    if part is None:
        return ""
    try:
        return part.data.decode()
    except UnicodeDecodeError:
        raise BadRequest(f"part {key!r} is not UTF-8 text") from None


def _names(parts: dict[str, Part], key: str) -> tuple[str, ...]:
    return tuple(n.strip() for n in _text(parts, key).split(",") if n.strip())


def _mark_nullable(signature: dict, names: tuple[str, ...]) -> None:
    """Mark the named inputs as taking null (the graph imputes NaN there); a name the graph lacks is refused."""
    inputs = {i["name"]: i for i in signature.get("inputs", [])}
    unknown = [n for n in names if n not in inputs]
    if unknown:
        raise BadRequest(f"nullable: the model has no input {', '.join(map(repr, unknown))}; its inputs are "
                         f"{', '.join(inputs) or 'none'}", title="Unknown input")
    for n in names:
        if inputs[n].get("dtype") not in ("FP16", "FP32", "FP64"):
            raise BadRequest(f"nullable: input {n!r} is {inputs[n].get('dtype')}; only floating-point inputs can "
                             "carry a missing value (as NaN)", title="Input cannot take null")
        inputs[n]["nullable"] = True


def _tolerance(parts: dict[str, Part]) -> float:
    raw = _text(parts, "tolerance")
    if not raw:
        return DEFAULT_TOLERANCE
    try:
        value = float(raw)
    except ValueError:
        raise BadRequest(f"tolerance must be a number, got {raw!r}") from None
    if not value >= 0:
        raise BadRequest(f"tolerance must be >= 0, got {raw!r}")
    return value


def _run_id(parts: dict[str, Part]) -> int | None:
    raw = _text(parts, "run_id")
    if not raw:
        return None
    if not raw.isdigit():
        raise BadRequest(f"run_id must be a run number, got {raw!r}")
    return int(raw)
