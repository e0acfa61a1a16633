"""What a run records about the machine: the environment once, and system metrics while it trains.

The environment answers "why does it not reproduce on my colleague's machine?": Python and package versions,
torch/CUDA/cuDNN, GPU and driver, the project's git commit and dirty flag.
"""

from __future__ import annotations

import importlib.metadata
import os
import threading
import time

from appliance.track import nvidia_smi

PACKAGES = ("torch", "numpy", "pyarrow", "onnx", "onnxscript", "onnxruntime", "appliance")


def environment(project_dir: str | None) -> dict:
    """A trained run's environment: the machine (as ``appliance.track`` records it for runs from outside) and
    torch's own view of CUDA, cuDNN and the GPU."""
    import torch

    env = machine(project_dir)
    env["packages"] = {p: _version(p) for p in PACKAGES}
    env.update(torch=torch.__version__, cuda=torch.version.cuda,
               cudnn=torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None)
    if torch.cuda.is_available():
        env["gpu"] = torch.cuda.get_device_name(0)
    return env


def machine(directory: str | None) -> dict:
    """Python, platform, CPUs, GPU and driver (from nvidia-smi), and the git commit of ``directory``."""
    from appliance.track import environment as caller

    env = caller(directory or os.getcwd())
    del env["packages"]  # every installed distribution: the trainer lists the ones that shape a run instead
    if not directory:
        env["git"] = None
    return env


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


class Sampler(threading.Thread):
    """Samples CPU, RAM and (when a GPU exists) GPU utilisation, memory and temperature every ``interval``.

    The process figures are this process's, or, given ``pid``, those of that process and its children summed
    (a command run under ``appliance run`` and whatever it starts). ``gpu`` says whether to ask nvidia-smi; by
    default torch decides (the trainer's child has it loaded anyway).
    """

    def __init__(self, log_metrics, interval: float, *, pid: int | None = None, gpu: bool | None = None):
        super().__init__(name="system-metrics", daemon=True)
        self.log_metrics, self.interval, self.pid, self.gpu = log_metrics, interval, pid, gpu
        self._done = threading.Event()

    def run(self) -> None:
        import psutil

        gpu = self.gpu
        if gpu is None:
            import torch

            gpu = torch.cuda.is_available()
        try:
            root = psutil.Process(self.pid)
        except psutil.Error:
            return
        tree: dict[int, psutil.Process] = {}
        while not self._done.wait(self.interval):
            try:
                cpu, rss = _tree_usage(root, tree, self.pid is not None)
            except psutil.Error:
                return  # the process ended
            values = {"system/cpu_percent": psutil.cpu_percent(), "system/process_cpu_percent": cpu,
                      "system/ram_used_mb": psutil.virtual_memory().used / 2**20, "system/process_rss_mb": rss}
            if gpu:
                values.update(_gpu_sample())
            # System metrics are keyed by wall-clock milliseconds: attempts of a resumed run never collide.
            self.log_metrics(int(time.time() * 1000), values)

    def stop(self) -> None:
        self._done.set()


def _tree_usage(root, tree: dict, children: bool) -> tuple[float, float]:
    """CPU percent and resident MB of ``root`` (and its children); ``tree`` keeps each process between samples,
    as psutil measures CPU since the previous call on the same object."""
    import psutil

    procs = [root] + (root.children(recursive=True) if children else [])
    cpu = rss = 0.0
    for p in procs:
        p = tree.setdefault(p.pid, p)
        try:
            cpu += p.cpu_percent()
            rss += p.memory_info().rss / 2**20
        except psutil.Error:
            tree.pop(p.pid, None)
    for pid in set(tree) - {p.pid for p in procs}:
        tree.pop(pid)
    return cpu, rss


def _gpu_sample() -> dict:
    out = nvidia_smi("utilization.gpu,memory.used,temperature.gpu")
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
