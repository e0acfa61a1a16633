"""The servers we measure ours against, started as their own processes by bench/serving.py.

- ``fastapi``: the endpoint users write by hand: FastAPI + a pydantic v2 request model + onnxruntime.
- ``mlflow-model``: writes an MLflow ONNX model directory for `mlflow models serve` (run inside MLflow's venv).
"""


import sys


def fastapi_app(model_path: str):
    import numpy as np
    import onnxruntime as ort
    from fastapi import FastAPI
    from pydantic import BaseModel

    sess = ort.InferenceSession(model_path, providers=["CPUExecutionProvider"])
    app = FastAPI()

    class Request(BaseModel):
        inputs: list[list[float]]

    @app.post("/predict")
    def predict(req: Request):
        x = np.asarray(req.inputs, dtype=np.float32)
        return {"probability": sess.run(None, {"features": x})[0].ravel().tolist()}

    return app


def main() -> None:
    what = sys.argv[1]
    if what == "fastapi":
        import uvicorn

        model_path, port = sys.argv[2], int(sys.argv[3])
        uvicorn.run(fastapi_app(model_path), host="127.0.0.1", port=port, log_level="warning", access_log=False)
    elif what == "mlflow-model":
        import mlflow.onnx
        import onnx

        mlflow.onnx.save_model(onnx.load(sys.argv[2]), sys.argv[3])


if __name__ == "__main__":
    main()
