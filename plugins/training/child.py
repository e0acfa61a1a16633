"""A run, in its spawned child process: read the snapshot, train, checkpoint, export, check, report.

The child cannot open the catalog: everything it learns goes to the daemon as ``job.send`` messages (JSON),
and every file it makes (checkpoints, the ONNX model) goes into the content-addressed artifact store.
"""

from __future__ import annotations

import importlib
import importlib.util
import io
import os
import random
import sys
import threading
import time
from typing import Any

import numpy as np

from appliance import ApplianceError

from . import data as data_mod
from . import export
from .metrics import evaluate
from .system import Sampler, environment


class Reporter:
    """Buffers metrics and sends them in batches from its own thread.

    A ``log_metrics`` call costs an append under a lock: encoding, writing to the pipe and waiting for the daemon
    happen on the sender thread, so a training loop never stalls on tracking (unless the daemon falls behind by
    ``MAX_ROWS``, when the caller waits: memory stays bounded).
    """

    FLUSH_S = 0.25  # short enough that metrics show live while the run goes
    MAX_ROWS = 200_000

    def __init__(self, job, run_id: int):
        self.job, self.run_id = job, run_id
        self._rows: list[tuple] = []
        self._lock = threading.Lock()  # guards _rows
        self._send_lock = threading.Lock()  # keeps batches and other messages in order on the pipe
        self._wake = threading.Event()
        self._closed = False
        self._thread = threading.Thread(target=self._sender, name="metrics-sender", daemon=True)
        self._thread.start()

    def log_metrics(self, step: int, values: dict[str, float], epoch: int | None = None) -> None:
        now = time.time()
        with self._lock:
            for key, value in values.items():
                self._rows.append((key, step, epoch, float(value), now))
            full = len(self._rows) >= self.MAX_ROWS
        if full:
            self.flush()

    def _sender(self) -> None:
        while not self._closed:
            self._wake.wait(self.FLUSH_S)
            self._wake.clear()
            self.flush()

    def flush(self) -> None:
        with self._send_lock:
            self._send_rows()

    def send(self, type: str, data: dict) -> None:
        with self._send_lock:
            self._send_rows()  # metrics logged before an epoch or the end arrive before it
            self.job.send(type, {"run_id": self.run_id, **data})

    def _send_rows(self) -> None:
        with self._lock:
            rows, self._rows = self._rows, []
        if rows:
            # Columns, not row objects: the JSON is smaller and quicker to write and read.
            key, step, epoch, value, when = (list(c) for c in zip(*rows, strict=True))
            self.job.send("metrics", {"run_id": self.run_id, "key": key, "step": step, "epoch": epoch,
                                      "value": value, "time": when})

    def close(self) -> None:
        self._closed = True
        self._wake.set()
        self._thread.join(5)
        self.flush()


class FitContext:
    """What a trainer's ``fit(ctx)`` gets: data on the device, settings, and ways to report and checkpoint."""

    def __init__(self, job, spec: dict, prepared: data_mod.Prepared, reporter: Reporter, device, encoder,
                 resume: dict | None):
        self.job, self.spec, self.prepared, self.reporter = job, spec, prepared, reporter
        self.task, self.hp, self.seed = spec["task"], spec["hyperparameters"], spec["seed"]
        self.device, self.encoder, self.resume = device, encoder.to(device), resume
        self.mixed_precision, self.log_every = spec["mixed_precision"], spec["log_every"]
        self.n_outputs = len(prepared.class_labels) if self.task == "multiclass" else 1
        self.class_counts = prepared.class_counts
        self._tensors: dict[str, tuple] = {}

    def tensors(self, part: str):
        """``(numeric, codes, y)`` of ``train``, ``validation`` or ``holdout``, on the device."""
        import torch

        if part not in self._tensors:
            p = self.prepared.parts[part]
            y = torch.from_numpy(p.y)
            self._tensors[part] = tuple(t.to(self.device) for t in (torch.from_numpy(p.numeric),
                                                                      torch.from_numpy(p.codes), y))
        return self._tensors[part]

    def log_metrics(self, step: int, values: dict[str, float]) -> None:
        self.reporter.log_metrics(step, values)

    def log(self, line: str) -> None:
        self.job.log(line)

    def validate(self, net) -> dict[str, float]:
        """Validation metrics of ``net`` (``val_loss`` and the task's metrics), in label units."""
        import torch

        from .nets import Exported

        p = self.prepared
        head = Exported(net, self.task, True, True, p.y_mean, p.y_std)
        numeric, codes, _ = self.tensors("validation")
        was_training = net.training
        net.eval()
        with torch.no_grad():
            out = head(numeric, codes).float().cpu().numpy()
        net.train(was_training)
        return evaluate(self.task, out, label_units(p, "validation"), "val_", p.y_std)

    def end_epoch(self, epoch: int, step: int, metrics: dict[str, float], state: dict) -> None:
        """Record the epoch's metrics and checkpoint ``state`` (tensors and plain values only)."""
        import torch

        self.reporter.log_metrics(step, metrics, epoch)
        buf = io.BytesIO()
        torch.save({"format": 1, "epoch": epoch, "step": step, "state": state}, buf)
        digest = self.job.artifacts.put_bytes(buf.getvalue())
        self.reporter.send("epoch", {"epoch": epoch, "step": step, "metrics": metrics, "checkpoint": digest,
                                     "size": buf.tell()})
        epochs = int(self.hp.get("epochs", epoch) or epoch)
        self.job.progress(min(0.95, 0.05 + 0.85 * epoch / epochs), f"epoch {epoch}/{epochs}")


def label_units(prepared: data_mod.Prepared, part: str) -> np.ndarray:
    y = prepared.parts[part].y
    return y * prepared.y_std + prepared.y_mean if prepared.task == "regression" else y


def load_checkpoint(artifacts, digest: str) -> dict:
    """A checkpoint from the artifact store, by hash, verified; tensors and plain values only (no pickle)."""
    import torch

    path = artifacts.verify(digest)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ApplianceError(f"checkpoint {digest[:12]} cannot be loaded safely: {type(exc).__name__}: "
                             f"{str(exc)[:300]}", title="Bad checkpoint") from None


def load_trainer(target: str, module_file: str | None):
    module_name, _, qualname = target.partition(":")
    if module_file:  # a drop-in plugin's trainer: not importable by name in a fresh process
        spec = importlib.util.spec_from_file_location(module_name, module_file)
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module
        spec.loader.exec_module(module)
    else:
        module = importlib.import_module(module_name)
    fn: Any = module
    for part in qualname.split("."):
        fn = getattr(fn, part)
    return fn


def pick_device(wanted: str):
    import torch

    if wanted == "cuda" and not torch.cuda.is_available():
        raise ApplianceError("the spec asks for device = 'cuda', but no CUDA device is available here")
    return torch.device("cuda" if wanted != "cpu" and torch.cuda.is_available() else "cpu")


def _score_champion(job, champion: dict, prepared, spec: dict, truth) -> dict:
    """The alias's holder scored on this run's holdout, for the promotion gate (or why it could not be)."""
    out: dict[str, Any] = {"version": champion["version"]}
    try:
        path = str(job.artifacts.verify(champion["onnx_sha256"]))
        scores = export.score_other(path, champion["signature"] or {}, prepared)
    except Exception as exc:  # the gate falls back to the holder's own figures
        out["skipped"] = f"{type(exc).__name__}: {str(exc)[:200]}"
        return out
    if scores is None:
        out["skipped"] = "it needs features this run's data does not have"
    else:
        out["metrics"] = evaluate(spec["task"], scores, truth, "", prepared.y_std)
    return out


def run_train(job) -> dict:
    """The ``train`` job kind, run in the child process."""
    params, spec = job.params, job.params["spec"]
    reporter = Reporter(job, params["run_id"])
    resume = None
    if params.get("resume"):
        ckpt = load_checkpoint(job.artifacts, params["resume"]["checkpoint"])
        resume = {"epoch": ckpt["epoch"], "step": ckpt["step"], "state": ckpt["state"]}
    reporter.send("started", {"attempt": job.attempt, "env": environment(params.get("project_dir")),
                              "resumed_from": params.get("resume")})
    sampler = Sampler(reporter.log_metrics, float(spec["system_metrics_interval"]))
    sampler.start()
    try:
        return _train(job, params, spec, reporter, resume)
    finally:
        sampler.stop()
        reporter.close()


def _train(job, params: dict, spec: dict, reporter: Reporter, resume: dict | None) -> dict:
    import torch

    from .nets import Encoder, Exported

    source = params["data"]
    path = str(job.artifacts.verify(source["sha256"])) if source.get("sha256") else source["path"]
    job.progress(0.01, "reading the training data")
    prepared = data_mod.load(spec, path)
    random.seed(spec["seed"])
    np.random.seed(spec["seed"] % 2**32)
    torch.manual_seed(spec["seed"])
    device = pick_device(spec["device"])
    job.log(f"training on {device}: {len(prepared.parts['train'].y)} train, "
            f"{len(prepared.parts['validation'].y)} validation, {len(prepared.parts['holdout'].y)} holdout rows")
    if prepared.null_labels:
        job.log(f"left out {prepared.null_labels} row(s) whose label {spec['label']!r} is missing")
    encoder = Encoder(prepared.mean, prepared.std, [len(v) for v in prepared.vocabularies])
    ctx = FitContext(job, spec, prepared, reporter, device, encoder, resume)
    if params.get("trainer_from_project"):
        # The project's own trainer file may import its neighbours (a nets.py beside models.py), as it would
        # when the user runs it: its directory comes first on the path, in this child only.
        sys.path.insert(0, os.path.dirname(params["trainer_module_file"]))
    net = load_trainer(params["trainer"], params.get("trainer_module_file"))(ctx)
    net = net.to("cpu").float().eval()
    exported = Exported(net, spec["task"], bool(prepared.numeric_features), bool(prepared.categorical_features),
                        prepared.y_mean, prepared.y_std).eval()
    reference = export.torch_outputs(exported, prepared)
    truth = label_units(prepared, "holdout")
    result: dict[str, Any] = {"holdout_metrics": evaluate(spec["task"], reference, truth, "", prepared.y_std),
                              "holdout_sha256": prepared.holdout_sha256, "model": None,
                              "rows": {k: len(p.y) for k, p in prepared.parts.items()},
                              "dropped": {"null_labels": prepared.null_labels}}
    if spec["export"]:
        job.progress(0.96, "exporting to ONNX")
        sig = export.signature(prepared)
        onnx_bytes = export.to_onnx(exported, prepared, sig)
        served = export.onnx_outputs(onnx_bytes, prepared)
        diff = float(np.max(np.abs(served.astype(np.float64) - reference.astype(np.float64))))
        tolerance = float(spec["parity_tolerance"])
        if not diff <= tolerance:
            raise ApplianceError(f"ONNX parity check failed: max abs difference {diff:.3g} between torch and "
                                 f"onnxruntime on the holdout exceeds parity_tolerance {tolerance:g}",
                                 title="Parity check failed")
        digest = job.artifacts.put_bytes(onnx_bytes)
        # The registry keeps what the ONNX file itself scores: that file is what gets served.
        result["holdout_metrics"] = evaluate(spec["task"], served, truth, "", prepared.y_std)
        result["model"] = {"onnx_sha256": digest, "size": len(onnx_bytes), "signature": sig,
                           "parity_max_abs_diff": diff, "parity_rows": len(truth)}
        if params.get("champion"):
            result["champion"] = _score_champion(job, params["champion"], prepared, spec, truth)
    reporter.send("finished", result)
    job.progress(1.0, "done")
    return {"run_id": params["run_id"], **{k: v for k, v in result.items() if k != "model"},
            "onnx_sha256": (result["model"] or {}).get("onnx_sha256")}
