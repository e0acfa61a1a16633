"""The NVML GPU provider: what the ``gpu`` monitor reads on a machine with NVIDIA GPUs.

``pynvml`` (the ``nvidia-ml-py`` package) is imported on first use, so the daemon starts without it; on a
machine without the NVIDIA driver it reports "no GPU" instead of failing. Test doubles register through the
same ``register_gpu_providers`` hook and return the same shape.
"""

from __future__ import annotations

import threading
from typing import Any

# NVML's throttle-reason bits, by the names nvidia-smi prints (``clocks_event_reasons``).
THROTTLE_REASONS = {
    0x0000000000000001: "gpu_idle",
    0x0000000000000002: "applications_clocks_setting",
    0x0000000000000004: "sw_power_cap",
    0x0000000000000008: "hw_slowdown",
    0x0000000000000010: "sync_boost",
    0x0000000000000020: "sw_thermal_slowdown",
    0x0000000000000040: "hw_thermal_slowdown",
    0x0000000000000080: "hw_power_brake_slowdown",
    0x0000000000000100: "display_clock_setting",
}
#: Reasons that mean the GPU is being slowed against the workload's will (idle or a user's clock setting is not).
HARMFUL_THROTTLE = frozenset({"hw_slowdown", "sw_thermal_slowdown", "hw_thermal_slowdown",
                              "hw_power_brake_slowdown"})


def no_gpu(reason: str) -> dict[str, Any]:
    return {"available": False, "reason": reason, "devices": []}


class NvmlProvider:
    """Reads every device through NVML. ``sample()`` never raises for a missing driver or GPU."""

    name = "nvml"
    description = "NVIDIA GPUs through NVML (nvidia-ml-py)"

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._nvml: Any = None
        self._failed: str | None = None

    def _init(self):
        if self._nvml is not None or self._failed is not None:
            return self._nvml
        try:
            import pynvml
        except ImportError:
            self._failed = "no GPU: the nvidia-ml-py package is not installed"
            return None
        try:
            pynvml.nvmlInit()
        except pynvml.NVMLError_LibraryNotFound:
            self._failed = "no GPU: the NVIDIA driver library (libnvidia-ml) was not found"
            return None
        except pynvml.NVMLError as exc:
            self._failed = f"no GPU: NVML did not start ({exc})"
            return None
        self._nvml = pynvml
        return pynvml

    def sample(self) -> dict[str, Any]:
        with self._lock:
            nvml = self._init()
            if nvml is None:
                return no_gpu(self._failed or "no GPU")
            count = nvml.nvmlDeviceGetCount()
            if not count:
                return no_gpu("no GPU: NVML found no device")
            return {"available": True, "reason": "", "devices": [self._device(nvml, i) for i in range(count)]}

    def _device(self, nvml, index: int) -> dict[str, Any]:
        h = nvml.nvmlDeviceGetHandleByIndex(index)

        def read(fn, *args, default=None):
            try:
                return fn(h, *args)
            except nvml.NVMLError:
                return default  # not every device supports every query (ECC on consumer cards, power on some)

        mem = read(nvml.nvmlDeviceGetMemoryInfo)
        util = read(nvml.nvmlDeviceGetUtilizationRates)
        power = read(nvml.nvmlDeviceGetPowerUsage)
        limit = read(nvml.nvmlDeviceGetEnforcedPowerLimit)
        reasons = read(nvml.nvmlDeviceGetCurrentClocksThrottleReasons, default=0) or 0
        ecc = read(nvml.nvmlDeviceGetTotalEccErrors, nvml.NVML_MEMORY_ERROR_TYPE_UNCORRECTED,
                   nvml.NVML_VOLATILE_ECC)
        procs = read(nvml.nvmlDeviceGetComputeRunningProcesses, default=[]) or []
        name = read(nvml.nvmlDeviceGetName, default="")
        return {
            "index": index,
            "name": name.decode() if isinstance(name, bytes) else name,
            "temperature_c": read(nvml.nvmlDeviceGetTemperature, nvml.NVML_TEMPERATURE_GPU),
            "power_w": power / 1000.0 if power is not None else None,
            "power_limit_w": limit / 1000.0 if limit is not None else None,
            "memory_used_bytes": mem.used if mem else None,
            "memory_total_bytes": mem.total if mem else None,
            "utilization_pct": util.gpu if util else None,
            "throttle_reasons": [n for bit, n in THROTTLE_REASONS.items() if reasons & bit],
            "ecc_uncorrected": ecc,
            "processes": [{"pid": p.pid, "memory_bytes": p.usedGpuMemory} for p in procs],
        }
