"""Serving speed: in-process onnxruntime, our server, a hand-written FastAPI endpoint and `mlflow models serve`,
all on the same model over loopback, in one run.

Load comes from wrk (Debian package `wrk`): `--latency` gives p50/p99, bounded runs of a few seconds each.
The model is an MLP like the demo's fraud model (30 features -> 128 -> 64 -> 1, sigmoid), one row a request.
Figures:
  - HTTP overhead at one connection: our p50 minus in-process p50 (goal <= 250 us);
  - throughput at 16 connections: ours / FastAPI (goal >= 2x) and ours / MLflow (goal >= 5x);
  - dynamic batching at 64 connections: requests/s with batching / batch-1 requests/s at one connection
    (goal >= 3x, p99 <= 5 ms); the batch-1 figure at 64 connections is printed beside it, and the same batched
    deployment with the prediction log off (``log_sample = 0``), which shows what logging every request costs.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / "bench" / ".cache"
N_FEATURES = 30


def build_mlp(path: Path, seed: int = 0) -> Path:
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    sizes = [N_FEATURES, 128, 64, 1]
    nodes, inits, prev = [], [], "features"
    for i, (a, b) in enumerate(zip(sizes, sizes[1:], strict=False)):
        inits += [numpy_helper.from_array((rng.normal(size=(a, b)) / np.sqrt(a)).astype(np.float32), f"w{i}"),
                  numpy_helper.from_array(np.zeros(b, np.float32), f"b{i}")]
        nodes.append(helper.make_node("Gemm", [prev, f"w{i}", f"b{i}"], [f"h{i}"]))
        prev = f"h{i}"
        if i < len(sizes) - 2:
            nodes.append(helper.make_node("Relu", [prev], [f"r{i}"]))
            prev = f"r{i}"
    nodes.append(helper.make_node("Sigmoid", [prev], ["probability"]))
    graph = helper.make_graph(nodes, "mlp", [helper.make_tensor_value_info("features", TensorProto.FLOAT,
                                                                           ["batch", N_FEATURES])],
                              [helper.make_tensor_value_info("probability", TensorProto.FLOAT, ["batch", 1])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path.write_bytes(model.SerializeToString())
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, timeout: float = 60, method: str = "GET", **kw) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.request(method, url, timeout=2, **kw).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise TimeoutError(url)


def wrk(url: str, body: bytes, connections: int, seconds: float) -> dict:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(f'wrk.method = "POST"\nwrk.body = {json.dumps(body.decode())}\n'
                'wrk.headers["Content-Type"] = "application/json"\n')
        script = f.name
    run = subprocess.run(["wrk", "-t1", f"-c{connections}", f"-d{seconds:g}s", "--latency", "-s", script, url],
                         capture_output=True, text=True, timeout=seconds + 30)
    os.unlink(script)
    out = run.stdout
    if "Requests/sec" not in out:
        raise RuntimeError(f"wrk failed on {url}: {run.stdout}\n{run.stderr}")

    def lat(label: str) -> float:
        m = re.search(rf"^\s*{label}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        value, unit = float(m.group(1)), m.group(2)
        return value * {"us": 1, "ms": 1e3, "s": 1e6}[unit]

    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    errors = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    return {"rps": rps, "p50_us": lat("50"), "p99_us": lat("99"), "non2xx": int(errors.group(1)) if errors else 0}


def inprocess_p50_us(model: Path, x: np.ndarray, n: int) -> float:
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    sess = ort.InferenceSession(str(model), so, providers=["CPUExecutionProvider"])
    for _ in range(200):
        sess.run(None, {"features": x})
    times = []
    for _ in range(n):
        t = time.perf_counter()
        sess.run(None, {"features": x})
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1e6


def start_ours(tmp: Path, model: Path):
    sys.path.insert(0, str(ROOT))
    from appliance.testing import DaemonProcess

    project = tmp / "project"
    project.mkdir(parents=True)
    (project / "appliance.toml").write_text(
        '[serving]\nport = 0\n\n[deployments.mlp]\nmodel = "mlp@prod"\n\n'
        '[deployments.mlp_batched]\nmodel = "mlp@prod"\nmax_batch_size = 64\nmax_queue_delay_us = 1000\n\n'
        '[deployments.mlp_batched_unlogged]\nmodel = "mlp@prod"\nmax_batch_size = 64\nmax_queue_delay_us = 1000\n'
        'log_sample = 0\n')
    d = DaemonProcess(tmp / "home", project).start()
    d.register_model("mlp", model)  # the path a user takes: appliance models register mlp mlp.onnx
    d.post("/models/mlp/aliases/prod", {"version": 1}).raise_for_status()
    port = d.info["ports"]["serving"]
    for name in ("mlp", "mlp_batched", "mlp_batched_unlogged"):
        wait_http(f"http://127.0.0.1:{port}/v2/models/{name}/ready")
    return d, port


def start_fastapi(model: Path) -> tuple[subprocess.Popen, int]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, str(ROOT / "bench" / "serving_baselines.py"), "fastapi", str(model),
                             str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_http(f"http://127.0.0.1:{port}/docs")
    return proc, port


def mlflow_python() -> Path | None:
    """MLflow's own virtualenv, shared with bench/train.py (which knows its packages); made on first use."""
    sys.path.insert(0, str(ROOT / "bench"))
    from train import ensure_mlflow

    return ensure_mlflow(install=True)


def start_mlflow(model: Path, tmp: Path) -> tuple[subprocess.Popen, int] | None:
    py = mlflow_python()
    if py is None:
        return None
    # `mlflow models serve` execs `uvicorn` by name: its venv's bin must lead PATH.
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "1",
           "PATH": f"{py.parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    if subprocess.run([str(py), "-c", "import onnxruntime, onnx"], capture_output=True).returncode:
        subprocess.run([str(py), "-m", "pip", "install", "-q", "onnx", "onnxruntime"], check=True, env=env)
    model_dir = tmp / "mlflow-model"
    subprocess.run([str(py), str(ROOT / "bench" / "serving_baselines.py"), "mlflow-model", str(model),
                    str(model_dir)], check=True, env=env, capture_output=True)
    port = free_port()
    proc = subprocess.Popen([str(py), "-m", "mlflow", "models", "serve", "-m", str(model_dir), "--env-manager",
                             "local", "--host", "127.0.0.1", "-p", str(port)], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    wait_http(f"http://127.0.0.1:{port}/ping", timeout=120)
    return proc, port


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="1 s runs, no MLflow (the test that keeps this alive)")
    ap.add_argument("--seconds", type=float, default=5.0)
    args = ap.parse_args()
    if shutil.which("wrk") is None:
        print("wrk is required: apt-get install wrk", file=sys.stderr)
        return 2
    secs = 1.0 if args.quick else args.seconds
    tmp = Path(tempfile.mkdtemp(prefix="bench-serving-"))
    model = build_mlp(tmp / "mlp.onnx")
    x = np.random.default_rng(1).normal(size=(1, N_FEATURES)).astype(np.float32)
    row = x.ravel().tolist()
    oip = json.dumps({"inputs": [{"name": "features", "datatype": "FP32", "shape": [1, N_FEATURES],
                                  "data": row}]}).encode()
    plain = json.dumps({"inputs": [row]}).encode()
    results: dict[str, dict] = {}
    inproc = inprocess_p50_us(model, x, 2000 if args.quick else 20000)
    procs = []
    try:
        daemon, port = start_ours(tmp, model)
        ours = f"http://127.0.0.1:{port}/v2/models/mlp/infer"
        batched = f"http://127.0.0.1:{port}/v2/models/mlp_batched/infer"
        wrk(ours, oip, 1, 1)  # warm
        results["ours c1"] = wrk(ours, oip, 1, secs)
        results["ours c16"] = wrk(ours, oip, 16, secs)
        results["ours batch-1 c64"] = wrk(ours, oip, 64, secs)
        # Each batched deployment is warmed like the others: its first second (new log columns, the first
        # full batches) is not what a deployment serving all day looks like.
        wrk(batched, oip, 64, 1)
        results["ours batching c64"] = wrk(batched, oip, 64, secs)
        # The same, logging no predictions: what the prediction log costs at this rate on this box.
        unlogged_url = f"http://127.0.0.1:{port}/v2/models/mlp_batched_unlogged/infer"
        wrk(unlogged_url, oip, 64, 1)
        results["ours batching unlogged"] = wrk(unlogged_url, oip, 64, secs)
        daemon.stop()
        fa, fport = start_fastapi(model)
        procs.append(fa)
        fa_url = f"http://127.0.0.1:{fport}/predict"
        wrk(fa_url, plain, 1, 1)
        results["fastapi c1"] = wrk(fa_url, plain, 1, secs)
        results["fastapi c16"] = wrk(fa_url, plain, 16, secs)
        fa.terminate()
        ml = None if args.quick else start_mlflow(model, tmp)
        if ml:
            procs.append(ml[0])
            ml_url = f"http://127.0.0.1:{ml[1]}/invocations"
            body = json.dumps({"inputs": {"features": [row]}}).encode()
            wrk(ml_url, body, 1, 1)
            results["mlflow c1"] = wrk(ml_url, body, 1, secs)
            results["mlflow c16"] = wrk(ml_url, body, 16, secs)
    finally:
        for p in procs:
            p.terminate()
        shutil.rmtree(tmp, ignore_errors=True)

    print(f"in-process onnxruntime p50: {inproc:.1f} us")
    print(f"{'server':<22}{'req/s':>10}{'p50 us':>10}{'p99 us':>10}{'non-2xx':>9}")
    for name, r in results.items():
        print(f"{name:<22}{r['rps']:>10.0f}{r['p50_us']:>10.0f}{r['p99_us']:>10.0f}{r['non2xx']:>9}")
    overhead = results["ours c1"]["p50_us"] - inproc
    vs_fastapi = results["ours c16"]["rps"] / results["fastapi c16"]["rps"]
    vs_mlflow = results["ours c16"]["rps"] / results["mlflow c16"]["rps"] if "mlflow c16" in results else None
    batching = results["ours batching c64"]["rps"] / results["ours c1"]["rps"]
    print(f"HTTP overhead at one connection: {overhead:.0f} us (goal <= 250)")
    print(f"throughput vs FastAPI + pydantic: {vs_fastapi:.2f}x (goal >= 2)")
    print("throughput vs mlflow models serve: " + (f"{vs_mlflow:.2f}x (goal >= 5)" if vs_mlflow else "not run"))
    print(f"batching at 64 connections vs batch-1 at one: {batching:.2f}x, p99 "
          f"{results['ours batching c64']['p99_us'] / 1000:.2f} ms (goal >= 3x, <= 5 ms); batch-1 at 64 "
          f"connections: {results['ours batch-1 c64']['rps']:.0f} req/s")
    unlogged = results["ours batching unlogged"]
    print(f"the same without the prediction log: {unlogged['rps'] / results['ours c1']['rps']:.2f}x, p99 "
          f"{unlogged['p99_us'] / 1000:.2f} ms")
    met = (overhead <= 250 and vs_fastapi >= 2 and (vs_mlflow is None or vs_mlflow >= 5) and batching >= 3
           and results["ours batching c64"]["p99_us"] <= 5000)
    print(json.dumps({"bench": "serving", "unit": "req/s at 16 connections", "ours": round(results["ours c16"]["rps"]),
                      "baseline": round(results["fastapi c16"]["rps"]), "ratio": round(vs_fastapi, 2), "goal": 2.0,
                      "overhead_us": round(overhead, 1), "vs_mlflow": round(vs_mlflow, 2) if vs_mlflow else None,
                      "batching_ratio": round(batching, 2),
                      "batching_p99_ms": round(results["ours batching c64"]["p99_us"] / 1000, 2),
                      "batching_unlogged_ratio": round(unlogged["rps"] / results["ours c1"]["rps"], 2),
                      "batching_unlogged_p99_ms": round(unlogged["p99_us"] / 1000, 2), "met": met}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
