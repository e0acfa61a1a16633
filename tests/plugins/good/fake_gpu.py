"""A fake GPU for tests, registered through the same ``register_gpu_providers`` hook as the real NVML one.

``POST /fixture/gpu`` sets what it reports (temperature, throttle reasons, ECC errors), so a test can make it
overheat and throttle, then cool down.
"""

import threading

from appliance import Route, hookimpl

APPLIANCE_CONTRACT = "1.0"

_lock = threading.Lock()
_state = {"temperature_c": 55.0, "throttle_reasons": [], "ecc_uncorrected": 0}


class FakeGpu:
    name = "fake_gpu"
    description = "a simulated GPU whose readings tests set"

    def sample(self):
        with _lock:
            s = dict(_state)
        return {"available": True, "reason": "", "devices": [{
            "index": 0, "name": "Fake GPU 80GB", "temperature_c": s["temperature_c"], "power_w": 250.0,
            "power_limit_w": 700.0, "memory_used_bytes": 10 * 2**30, "memory_total_bytes": 80 * 2**30,
            "utilization_pct": 97, "throttle_reasons": list(s["throttle_reasons"]),
            "ecc_uncorrected": s["ecc_uncorrected"], "processes": [{"pid": 4242, "memory_bytes": 9 * 2**30}]}]}


def _set(request):
    body = request.json_object()
    with _lock:
        _state.update({k: v for k, v in body.items() if k in _state})
        return dict(_state)


@hookimpl
def register_gpu_providers(register):
    register(FakeGpu())


@hookimpl
def register_routes(register):
    register(Route("POST", "/fixture/gpu", _set))
