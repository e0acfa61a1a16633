"""The checks of a model file brought from elsewhere, in a child process: ``python -m plugins.registry.checker``.

onnx and onnxruntime parse and run a file nobody here has seen before; a crash there ends the child, not the
daemon, and the latency measured is the model's own, not shared with the daemon's serving threads. The daemon
writes one JSON request on stdin (the ONNX file's and the sample's paths in the artifact store, the tolerance);
the child answers one JSON line: ``{"ok": {...}}`` or ``{"refused": {"title", "message"}}``.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

from appliance import ApplianceError, BadRequest

TIMEOUT_S = 600


def check(app, onnx_sha256: str, sample_sha256: str | None, tolerance: float) -> dict:
    """Run the checks in a child; returns the signature, the checks and the drift reference's hash, or raises
    the refusal as a ``BadRequest`` with the child's own title and message."""
    request = {"onnx": str(app.artifacts.verify(onnx_sha256)), "tolerance": tolerance,
               "sample": str(app.artifacts.verify(sample_sha256)) if sample_sha256 else None,
               "artifacts": str(app.home.artifacts_dir)}
    try:
        done = subprocess.run([sys.executable, "-m", "plugins.registry.checker"], input=json.dumps(request),
                              capture_output=True, text=True, timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise BadRequest(f"checking the model took longer than {TIMEOUT_S} s", title="Check timed out") from None
    lines = done.stdout.strip().splitlines()
    answer = json.loads(lines[-1]) if lines and lines[-1].startswith("{") else {}
    if "refused" in answer:
        raise BadRequest(answer["refused"]["message"], title=answer["refused"]["title"])
    if "ok" not in answer:
        code = done.returncode
        why = f"was killed by {signal.Signals(-code).name}" if code < 0 and -code in signal.Signals._value2member_map_ \
            else f"exited with code {code}"
        tail = done.stderr.strip().splitlines()[-1:] if done.stderr.strip() else []
        raise BadRequest(f"checking the model failed: the checker {why}" + (f" ({tail[0][:300]})" if tail else "")
                         + "; onnxruntime cannot run this file safely", title="Model does not load")
    return answer["ok"]


def run_checks(onnx_path: Path, sample_path: Path | None, tolerance: float, artifacts: Path) -> dict:
    """What the child does: inspect the graph, load it as serving would, and run the sample."""
    from appliance.artifacts import ArtifactStore

    from . import onnxfile
    from . import sample as sample_mod

    data = onnx_path.read_bytes()
    info = onnxfile.inspect(data)
    signature = info["signature"]
    sess = sample_mod.session(data)
    checks: dict = {"opset": info["opset"], "producer": info["producer"], "size": len(data), "sample": None}
    reference_sha256 = None
    if sample_path is not None:
        bound = sample_mod.bind(sample_mod.read(sample_path.read_bytes()), signature)
        for tensor in signature["inputs"]:
            if tensor["name"] in bound.features:
                tensor["features"] = bound.features[tensor["name"]]
        signature["feature_names"] = [c for cols in bound.features.values() for c in cols]
        checks["sample"] = {"rows": bound.rows, "parity": sample_mod.parity(sess, bound, tolerance),
                            "latency": sample_mod.latency(sess, bound)}
        reference = sample_mod.reference_parquet(bound)
        if reference is not None:
            reference_sha256 = ArtifactStore(artifacts).put_bytes(reference)
            checks["sample"]["reference_columns"] = bound.reference_columns
    return {"signature": signature, "checks": checks, "reference_sha256": reference_sha256}


def main() -> int:
    request = json.loads(sys.stdin.readline())
    try:
        result = run_checks(Path(request["onnx"]), Path(request["sample"]) if request["sample"] else None,
                            float(request["tolerance"]), Path(request["artifacts"]))
    except ApplianceError as exc:
        print(json.dumps({"refused": {"title": exc.title, "message": exc.message}}))
        return 0
    print(json.dumps({"ok": result}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
