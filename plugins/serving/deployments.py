"""Deployments: which model version answers under which name, and how a new version goes live.

A deployment serves ``model@alias`` or ``model:version``. Loading happens off the serving loop (a loader
thread): the new version is loaded, warmed up, then swapped in with one reference assignment. A request holds
the model it started with, so requests in flight finish on the old version while new ones get the new one,
and nothing fails. A version that will not load or warm up leaves the old one serving and raises an alert.
"""

from __future__ import annotations

import logging
import queue
import re
import threading
import time
import traceback
from dataclasses import dataclass
from typing import Any

from appliance import ApplianceError, NotFound
from appliance.memory import settle

from .batcher import Batcher
from .models import LoadedModel

log = logging.getLogger("appliance.serving")

_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]{0,63}$")


@dataclass(frozen=True)
class DeploymentSpec:
    name: str
    model: str
    ref: str  # an alias or a version number
    max_batch_size: int = 1
    max_queue_delay_us: int = 0
    shadow: str | None = None
    log_sample: float = 1.0
    max_request_rows: int = 65_536
    entity_keys: tuple[str, ...] = ()
    features: tuple[str, ...] = ()
    features_input: str | None = None

    @property
    def target(self) -> str:
        return f"{self.model}:{self.ref}" if self.ref.isdigit() else f"{self.model}@{self.ref}"


def parse_target(target: str) -> tuple[str, str]:
    """``fraud@champion`` or ``fraud:3`` -> (model, ref)."""
    for sep in ("@", ":"):
        if sep in target:
            model, ref = target.split(sep, 1)
            if _NAME.match(model) and (ref.isdigit() if sep == ":" else _NAME.match(ref)):
                return model, ref
    raise ValueError(f"expected MODEL@ALIAS or MODEL:VERSION, got {target!r}")


class Deployment:
    def __init__(self, spec: DeploymentSpec):
        self.spec = spec
        self.current: LoadedModel | None = None
        self.state = "loading"
        self.error = ""
        self.batcher: Batcher | None = None
        self.loaded_versions: list[int] = []

    @property
    def name(self) -> str:
        return self.spec.name

    def to_dict(self) -> dict:
        m = self.current
        return {"name": self.name, "target": self.spec.target, "state": self.state, "error": self.error,
                "version": m.version if m else None, "provider": m.provider if m else None,
                "max_batch_size": self.spec.max_batch_size, "max_queue_delay_us": self.spec.max_queue_delay_us,
                "shadow": self.spec.shadow, "inputs": m.described_inputs() if m else [],
                "outputs": [s.to_dict() for s in m.outputs] if m else [],
                "example_request": example_request(self.spec, m) if m else None}


def example_request(spec: DeploymentSpec, model: LoadedModel) -> dict:
    """A request body this deployment answers: one row, a null where the model imputes a missing value,
    entity keys where the deployment looks features up online (what `appliance deployments show` prints)."""
    inputs = []
    for name, s in model.inputs.items():
        if name == spec.features_input and spec.entity_keys:
            continue  # the keys and the features sent beside them come from the deployment's metadata (api.py)
        width = next((d for d in s.shape[1:] if d > 0), 1) if len(s.shape) > 1 else 0
        value = "text" if s.datatype == "BYTES" else 0
        row = [value] * width
        if row and name in model.nullable:
            row[-1] = None
        shape = [1, width] if len(s.shape) > 1 else [1]
        inputs.append({"name": name, "datatype": s.datatype, "shape": shape, "data": [row] if row else [value]})
    return {"id": "my-request-1", "inputs": inputs}


class DeploymentManager:
    """Owns the deployments; every load and swap goes through one loader thread, in order."""

    def __init__(self, app: Any, metrics):
        self.app = app
        self.metrics = metrics
        # (deployment, model, stacked inputs, stacked outputs, notes): what the server does once a batch is
        # answered (it logs the batch's predictions together); set by the server before the first load.
        self.on_batch_answered = None
        self.deployments: dict[str, Deployment] = {}
        self._work: queue.Queue = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="model-loader", daemon=True)
        self._idle = threading.Event()
        self._idle.set()

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._work.put(None)
        self._thread.join(10)

    def registry(self):
        reg = self.app.registry("services").get("model_registry")
        if reg is None:
            raise ApplianceError("no model registry is loaded (the registry plugin provides it)",
                                 title="No model registry")
        return reg

    # ------------------------------------------------------------------------------------------- changes

    def apply(self, specs: dict[str, DeploymentSpec]) -> None:
        """Make the deployments match ``specs``: new ones load, changed ones reload, removed ones unload."""
        for name in list(self.deployments):
            if name not in specs:
                self._work.put(("unload", name))
        for name, spec in specs.items():
            old = self.deployments.get(name)
            if old is None or old.spec != spec:
                self._work.put(("load", spec))
        self._idle.clear()
        self._work.put(("idle", None))

    def alias_moved(self, model: str, alias: str) -> None:
        for dep in list(self.deployments.values()):
            if dep.spec.model == model and dep.spec.ref == alias:
                self._work.put(("load", dep.spec))

    def registered(self, model: str) -> None:
        """A new version exists: ``latest`` moved, and a deployment that had nothing to load may load now."""
        for dep in list(self.deployments.values()):
            if dep.spec.model == model and (dep.spec.ref == "latest" or dep.current is None):
                self._work.put(("load", dep.spec))

    def reload(self, name: str) -> None:
        dep = self.get(name)
        self._work.put(("load", dep.spec))

    def unload(self, name: str) -> None:
        self.get(name)
        self._work.put(("unload", name))

    def wait_idle(self, timeout: float = 60.0) -> bool:
        self._idle.clear()
        self._work.put(("idle", None))
        return self._idle.wait(timeout)

    def get(self, name: str) -> Deployment:
        dep = self.deployments.get(name)
        if dep is None:
            known = ", ".join(sorted(self.deployments)) or "none"
            raise NotFound(f"no deployment {name!r}; deployments: {known}")
        return dep

    # ------------------------------------------------------------------------------------------- loader

    def _run(self) -> None:
        while True:
            item = self._work.get()
            if item is None:
                return
            what, arg = item
            try:
                if what == "load":
                    self._load(arg)
                elif what == "unload":
                    self._unload(arg)
                elif what == "idle" and self._work.empty():
                    self._idle.set()
            except Exception:
                log.exception("deployment change failed")

    def _load(self, spec: DeploymentSpec) -> None:
        dep = self.deployments.get(spec.name)
        if dep is None:
            dep = self.deployments[spec.name] = Deployment(spec)
        events = self.app.events
        t0 = time.perf_counter()
        try:
            resolved = self.registry().resolve(spec.model, spec.ref)
            version = int(resolved["version"])
            if dep.current is not None and dep.current.version == version and dep.spec == spec:
                return
            model = LoadedModel(spec.model, version, resolved["onnx_path"], resolved.get("signature"))
            model.warm_up()
        except Exception as exc:
            message = getattr(exc, "message", None) or f"{type(exc).__name__}: {exc}"
            dep.error = message
            log.warning("deployment %s: loading %s failed: %s\n%s", spec.name, spec.target, message,
                        traceback.format_exc())
            if dep.current is None:
                dep.state = "failed"
            events.emit("deployment.load_failed", subject=f"deployment:{spec.name}",
                        data={"deployment": spec.name, "target": spec.target, "error": message,
                              "still_serving": dep.current.version if dep.current else None})
            events.emit("alert.raised", subject=f"deployment:{spec.name}",
                        data={"rule": "deployment_load_failed", "severity": "error",
                              "message": f"{spec.target} failed to load for deployment {spec.name}: {message}"
                                         + (f"; version {dep.current.version} keeps serving" if dep.current else "")})
            return
        old = dep.current
        if spec.max_batch_size > 1 and model.batched:
            name, ver = spec.name, str(version)
            answered = self.on_batch_answered
            batcher = Batcher(spec.max_batch_size, spec.max_queue_delay_us / 1e6,
                              lambda rows, q, run: self.metrics.executed(name, ver, rows, q, run),
                              (lambda m, inputs, outputs, notes: answered(name, m, inputs, outputs, notes))
                              if answered else None)
        else:
            batcher = None
        # Order matters for requests arriving meanwhile: the batcher is in place before the model is visible.
        dep.spec, dep.batcher, dep.current, dep.state, dep.error = spec, batcher, model, "ready", ""
        dep.loaded_versions.append(version)
        if old is not None:
            self.metrics.set_ready(spec.name, str(old.version), False)
        self.metrics.set_ready(spec.name, str(version), True)
        settle()  # the new session's objects will live as long as it serves
        events.emit("deployment.loaded", subject=f"deployment:{spec.name}",
                    data={"deployment": spec.name, "target": spec.target, "version": version,
                          "previous_version": old.version if old else None, "provider": model.provider,
                          "load_ms": round((time.perf_counter() - t0) * 1000, 1)})

    def _unload(self, name: str) -> None:
        dep = self.deployments.pop(name, None)
        if dep is None:
            return
        if dep.current is not None:
            self.metrics.set_ready(name, str(dep.current.version), False)
        dep.current, dep.batcher, dep.state = None, None, "unloaded"  # the session is freed with its last reference
        self.app.events.emit("deployment.unloaded", subject=f"deployment:{name}", data={"deployment": name})
