"""What a run records about the machine: the environment once, and system metrics while it trains.

The environment answers "why does it not reproduce on my colleague's machine?": Python and package versions,
torch/CUDA/cuDNN, GPU and driver, the project's git commit and dirty flag.
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import subprocess
import sys
import threading
import time

PACKAGES = ("torch", "numpy", "pyarrow", "onnx", "onnxscript", "onnxruntime", "appliance")


def environment(project_dir: str | None) -> dict:
    import torch

    env = {
        "python": sys.version.split()[0], "platform": platform.platform(), "machine": platform.machine(),
        "cpu_count": os.cpu_count(), "packages": {p: _version(p) for p in PACKAGES},
        "torch": torch.__version__, "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "gpu": None, "driver": None, "git": _git(project_dir),
    }
    if torch.cuda.is_available():
        env["gpu"] = torch.cuda.get_device_name(0)
        env["driver"] = _nvidia_smi("driver_version")
    return env


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def _git(project_dir: str | None) -> dict | None:
    if not project_dir:
        return None
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=project_dir, capture_output=True, text=True,
                                timeout=10)
        if commit.returncode != 0:
            return None
        status = subprocess.run(["git", "status", "--porcelain"], cwd=project_dir, capture_output=True, text=True,
                                timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return {"commit": commit.stdout.strip(), "dirty": bool(status.stdout.strip())}


def _nvidia_smi(field: str) -> str | None:
    try:
        out = subprocess.run(["nvidia-smi", f"--query-gpu={field}", "--format=csv,noheader,nounits"],
                             capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip().splitlines()[0] if out.returncode == 0 and out.stdout.strip() else None


class Sampler(threading.Thread):
    """Samples CPU, RAM and (when a GPU exists) GPU utilisation, memory and temperature every ``interval``."""

    def __init__(self, log_metrics, interval: float):
        super().__init__(name="system-metrics", daemon=True)
        self.log_metrics, self.interval = log_metrics, interval
        self._done = threading.Event()

    def run(self) -> None:
        import psutil
        import torch

        proc = psutil.Process()
        proc.cpu_percent()
        gpu = torch.cuda.is_available()
        while not self._done.wait(self.interval):
            values = {"system/cpu_percent": psutil.cpu_percent(), "system/process_cpu_percent": proc.cpu_percent(),
                      "system/ram_used_mb": psutil.virtual_memory().used / 2**20,
                      "system/process_rss_mb": proc.memory_info().rss / 2**20}
            if gpu:
                values.update(_gpu_sample())
            # System metrics are keyed by wall-clock milliseconds: attempts of a resumed run never collide.
            self.log_metrics(int(time.time() * 1000), values)

    def stop(self) -> None:
        self._done.set()


def _gpu_sample() -> dict:
    out = _nvidia_smi("utilization.gpu,memory.used,temperature.gpu")
    values = {}
    if out:
        parts = [p.strip() for p in out.split(",")]
        for key, raw in zip(("system/gpu_utilization", "system/gpu_memory_mb", "system/gpu_temperature_c"),
                            parts, strict=False):
            try:
                values[key] = float(raw)
            except ValueError:
                continue
    return values
