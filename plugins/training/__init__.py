"""Training and experiment tracking: runs of ``[training.NAME]`` specs as GPU-gated child-process jobs.

A run reads its training-set snapshot (Parquet) in a spawned child, trains with a registered trainer (the
built-in one: torch tabular MLPs) or a function of a project file, checkpoints every epoch into the artifact
store, exports a checked ONNX model and hands it to the ``model_registry`` service. Runs tracked from outside
(``appliance.track``, MLflow's client through the ``run_tracking`` service, commands under ``appliance run``)
are kept as the same runs. Nothing here imports torch in the daemon.
"""

from __future__ import annotations

from appliance import JobKind, hookimpl

from . import api, cli, spec, track_api, tracking
from .mlp import MLP_TRAINER
from .retention import TrainingRetention
from .tracked import TrackedRuns

APPLIANCE_CONTRACT = "1.0"

TRACKED = TrackedRuns()
RETENTION = TrainingRetention()


def run_train(job):
    """The ``train`` job kind. It runs in the spawned child, so numpy and torch load there, not in the daemon."""
    from .child import run_train as run

    return run(job)


def run_command(job):
    """The ``command`` job kinds (``appliance run``), in the spawned child."""
    from .command import run_command as run

    return run(job)


@hookimpl
def register_migrations(register):
    register(tracking.migrations)


@hookimpl
def register_services(register):
    register(TRACKED)
    register(RETENTION)


@hookimpl
def register_trainers(register):
    register(MLP_TRAINER)


@hookimpl
def register_job_kinds(register):
    register(JobKind("train", run_train, "train a model from a training spec (in a child process)", gpu=True,
                     process=True, on_message=tracking.on_message))
    for name, gpu in (("command", False), ("command_gpu", True)):
        register(JobKind(name, run_command, "a command under the box's care (appliance run): its log, system "
                         "metrics and environment on its own run" + (", behind the GPU gate" if gpu else ""),
                         gpu=gpu, process=True, on_message=tracking.on_message))
    register(JobKind("train_spec", api.run_spec_job, "run a training spec and wait for it (for pipelines and "
                     "schedules; params: spec, set)"))


@hookimpl
def register_routes(register):
    for route in api.ROUTES + track_api.ROUTES:
        register(route)


@hookimpl
def register_commands(register):
    register(cli.train)
    register(cli.runs)
    register(cli.sweeps)
    register(cli.run)


@hookimpl
def configure(app, config):
    spec.check_all(config, app.registry("trainers"))
    TRACKED.app = RETENTION.app = app  # configure runs before startup and before any request


@hookimpl
def on_event(event, app):
    tracking.on_job_event(event, app)
