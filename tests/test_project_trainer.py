"""Trainers from the project's own code: ``[training.X] trainer = "models.py:fit"`` trains through the same
``fit(ctx)`` contract as a registered trainer (checkpoints, metrics, ONNX export, registration), with no plugin
and no packaging; a wrong file, function or literal is refused at apply with file, line and key."""

from __future__ import annotations

import textwrap
import time

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import make_project

from appliance.testing import DaemonProcess

MODELS = '''
"""Logistic regression on the platform's encoder: the project's own trainer."""

HYPERPARAMETERS = {"epochs": 5, "lr": 0.1}
TASKS = ("binary",)


def fit(ctx):
    import torch
    from nets import Linear  # a neighbour in the project, imported as the user's own script would

    model = Linear(ctx.encoder, ctx.n_outputs).to(ctx.device)
    opt = torch.optim.SGD(model.parameters(), lr=ctx.hp["lr"])
    xn, xc, y = ctx.tensors("train")
    for epoch in range(1, ctx.hp["epochs"] + 1):
        loss = torch.nn.functional.binary_cross_entropy_with_logits(model(xn, xc).reshape(-1), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        ctx.log_metrics(epoch, {"train_loss": loss.item()})
        ctx.end_epoch(epoch, epoch, ctx.validate(model), {"model": model.state_dict()})
    return model
'''

NETS = '''
import torch


class Linear(torch.nn.Module):
    def __init__(self, encoder, outputs):
        super().__init__()
        self.encoder, self.head = encoder, torch.nn.Linear(encoder.out_features, outputs)

    def forward(self, numeric, codes):
        return self.head(self.encoder(numeric, codes))
'''

TOML = """
[training.own]
parquet = "data/tx.parquet"
label = "label"
trainer = "models.py:fit"
seed = 1

[training.own.hyperparameters]
epochs = 3
"""


@pytest.fixture(scope="module")
def box(tmp_path_factory):
    root = tmp_path_factory.mktemp("project-trainer")
    project = make_project(root / "project", [], TOML)
    (project / "models.py").write_text(MODELS)
    (project / "nets.py").write_text(NETS)
    (project / "data").mkdir()
    rng = np.random.default_rng(0)
    x = rng.normal(size=(600, 2))
    shop = rng.choice(["a", "b", "c"], 600)
    label = ((x[:, 0] + (shop == "a") + rng.normal(scale=0.3, size=600)) > 0.5).astype(np.int64)
    pq.write_table(pa.table({"x0": x[:, 0], "x1": x[:, 1], "shop": shop, "label": label}),
                   project / "data" / "tx.parquet")
    with DaemonProcess(root / "home", project) as d:
        d.root, d.project = root, project
        yield d


def wait_run(d, run_id: int, timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run = d.get(f"/runs/{run_id}").json()
        if run["state"] in ("succeeded", "failed", "cancelled"):
            return run
        time.sleep(0.1)
    raise AssertionError(f"run {run_id} did not finish")


def test_a_project_file_trains_registers_and_takes_overrides(box):
    out = box.cli("train", "own", "--set", "lr=0.5", "--wait", timeout=180)
    run = box.get("/runs", params={"spec": "own"}).json()[0]
    assert out.returncode == 0, (out.stdout, out.stderr, box.get(f"/jobs/{run['job_id']}/logs").json()[-10:])
    run = box.get(f"/runs/{run['id']}").json()
    assert run["spec"]["trainer"] == "models.py:fit"
    assert run["params"]["hyperparameters"] == {"epochs": 3, "lr": 0.5}  # the file's defaults, the spec, --set
    losses = box.get(f"/runs/{run['id']}/metrics", params={"key": "train_loss"}).json()
    assert [m["step"] for m in losses] == [1, 2, 3]
    assert len([a for a in run["artifacts"] if a["kind"] == "checkpoint"]) == 3
    registered = run["result"]["registered"]
    version = box.get(f"/models/{registered['name']}/versions/{registered['version']}").json()
    assert version["run_id"] == run["id"] and 0 <= version["metrics"]["auc"] <= 1
    trainers = box.get("/training/specs").json()
    assert {"name": "own", "trainer": "models.py:fit"}.items() <= trainers[0].items()


@pytest.mark.parametrize(("table", "expected"), [
    ('trainer = "models.py:train"', "training.bad.trainer: models.py has no top-level function 'train' (it "
                                    "defines: fit)"),
    ('trainer = "../elsewhere.py:fit"', "training.bad.trainer: '../elsewhere.py' is outside the project"),
    ('trainer = "missing.py:fit"', "training.bad.trainer: no file 'missing.py' in the project directory"),
    ('trainer = "models.py:fit"\nhyperparameters = {momentum = 0.9}',
     "training.bad.hyperparameters.momentum: unknown hyperparameter; known: epochs, lr"),
    ('trainer = "models.py:fit"\ntask = "regression"', "training.bad.task: trainer 'models.py:fit' does not do "
                                                       "regression"),
    ('trainer = "broken.py:fit"', "training.bad.trainer: broken.py line 2: HYPERPARAMETERS must be a literal"),
])
def test_a_wrong_project_trainer_is_refused_at_apply_naming_the_key(box, tmp_path, table, expected):
    project = make_project(tmp_path / "p", [], TOML + textwrap.dedent("""
        [training.bad]
        parquet = "data/tx.parquet"
        label = "label"
        """) + table + "\n")
    (project / "models.py").write_text(MODELS)
    (project / "broken.py").write_text("import os\nHYPERPARAMETERS = {'lr': os.environ}\ndef fit(ctx): pass\n")
    r = box.post("/apply", {"project": str(project)})
    assert r.status_code == 400, r.text
    message = r.json()["error"]["message"]
    assert expected in message and "appliance.toml" in message
    assert box.get("/training/specs").json()[0]["name"] == "own"  # the running configuration stayed
