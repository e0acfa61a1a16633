"""Training specs: the ``[training.NAME]`` tables of ``appliance.toml``, checked, overridden and expanded.

A spec is checked whole before anything runs, so a mistake is reported with file, line and key (at ``apply``)
or as a 400 naming the key (for ``--set`` overrides), never as a crash in the child process.
"""

from __future__ import annotations

import ast
import copy
import hashlib
import itertools
import json
import math
import random
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from appliance import BadRequest, NotFound

TASKS = ("binary", "multiclass", "regression")
SPEC_KEYS: dict[str, type | tuple[type, ...]] = {
    "training_set": str, "parquet": str, "label": str, "features": list, "categorical": list, "task": str,
    "trainer": str, "experiment": str, "model": (str, bool), "alias": str, "seed": int, "export": bool,
    "parity_tolerance": (int, float), "device": str, "mixed_precision": bool, "log_every": int,
    "system_metrics_interval": (int, float), "max_categories": int, "hyperparameters": dict, "split": dict,
    "sweep": dict, "tags": dict, "description": str, "gate": str, "gate_metric": str,
}
#: The metrics a run's holdout gives per task: what a spec's gate may compare on.
TASK_METRICS = {"binary": ("auc", "loss", "accuracy"), "multiclass": ("loss", "accuracy"),
                "regression": ("loss", "rmse", "mae", "r2")}
#: A spec's alias moves only to a version that beats its holder on this metric, unless gate = "none".
GATE_METRIC = {"binary": "auc", "multiclass": "loss", "regression": "loss"}
SPLIT_DEFAULTS: dict[str, Any] = {"method": "random", "column": None, "validation": 0.15, "holdout": 0.15,
                                  "seed": 0}
SWEEP_DEFAULTS: dict[str, Any] = {"method": "grid", "trials": None, "metric": "val_loss", "goal": None,
                                  "parameters": {}, "seed": 0}
DEFAULTS: dict[str, Any] = {
    "trainer": "mlp", "task": "binary", "seed": 0, "export": True, "parity_tolerance": 1e-4, "device": "auto",
    "mixed_precision": True, "log_every": 10, "system_metrics_interval": 1.0, "max_categories": 100,
    "tags": {}, "description": "",
}


PROJECT_TRAINER = re.compile(r"^(?P<file>[^:]+\.py):(?P<function>[A-Za-z_][A-Za-z0-9_]*)$")


@dataclass(frozen=True)
class ProjectTrainer:
    """A trainer named by a file of the project, ``trainer = "models.py:fit"``: no packaging, no plugin.

    The daemon reads the file but never runs it: ``fit`` must be a top-level function (called as ``fit(ctx)``
    in the run's child process, as a registered trainer's is). A ``HYPERPARAMETERS = {...}`` literal gives
    defaults and types as a registered trainer's do; without one, a spec's hyperparameters are passed as given.
    ``TASKS = (...)`` names the tasks it does (all of them by default); the module docstring describes it.
    """

    name: str
    path: str
    function: str
    tasks: tuple[str, ...] = TASKS
    hyperparameters: dict = field(default_factory=dict)
    open_hyperparameters: bool = True
    description: str = ""

    @property
    def module(self) -> str:
        """The name it is imported under in the child (never the bare file name: no clash with a library)."""
        return "appliance_project_" + re.sub(r"\W", "_", Path(self.path).stem)


def find_trainer(name: str, trainers, project_dir: Path | None):
    """A registered trainer, or a project file's (``FILE.py:FUNCTION``); None when a registered one is missing."""
    if isinstance(name, str) and PROJECT_TRAINER.match(name):
        return project_trainer(name, project_dir)
    return trainers.get(name)


def project_trainer(name: str, project_dir: Path | None) -> ProjectTrainer:
    """Read (never run) ``FILE.py`` of the project: the function must be there, the literals well formed."""
    m = PROJECT_TRAINER.match(name)
    path = _under_project(m.group("file"), project_dir, "trainer")
    if not path.is_file():
        raise SpecError(f"no file {m.group('file')!r} in the project directory", "trainer")
    try:
        tree = ast.parse(path.read_text(), filename=m.group("file"))
    except (SyntaxError, UnicodeDecodeError, ValueError) as exc:
        where = f" line {exc.lineno}" if getattr(exc, "lineno", None) else ""
        raise SpecError(f"{m.group('file')}{where} cannot be read as Python: {exc}", "trainer") from None
    functions = {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}
    if m.group("function") not in functions:
        raise SpecError(f"{m.group('file')} has no top-level function {m.group('function')!r} (it defines: "
                        f"{', '.join(sorted(functions)) or 'none'})", "trainer")
    literals = _literals(tree, m.group("file"), ("HYPERPARAMETERS", "TASKS"))
    hp = literals.get("HYPERPARAMETERS")
    if hp is not None and not (isinstance(hp, dict) and all(isinstance(k, str) for k in hp)):
        raise SpecError(f"{m.group('file')}: HYPERPARAMETERS must be a dict of name: default", "trainer")
    tasks = literals.get("TASKS", TASKS)
    if not (isinstance(tasks, list | tuple) and tasks and set(tasks) <= set(TASKS)):
        raise SpecError(f"{m.group('file')}: TASKS must list some of {', '.join(TASKS)}", "trainer")
    doc = (ast.get_docstring(tree) or "").strip().split("\n")[0]
    return ProjectTrainer(name, str(path), m.group("function"), tuple(tasks), hp or {}, hp is None, doc)


def _literals(tree, filename: str, names: tuple[str, ...]) -> dict[str, Any]:
    out = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name) \
                and node.targets[0].id in names:
            try:
                out[node.targets[0].id] = ast.literal_eval(node.value)
            except ValueError:
                raise SpecError(f"{filename} line {node.lineno}: {node.targets[0].id} must be a literal (numbers, "
                                "strings, lists, dicts), read without running the file", "trainer") from None
    return out


class SpecError(BadRequest):
    """A spec mistake; ``keys`` locates it in ``appliance.toml``."""

    def __init__(self, message: str, *keys: str):
        super().__init__(f"{'.'.join(keys)}: {message}" if keys else message, title="Bad training spec")
        self.keys = keys
        self.detail = message


def specs(config) -> dict[str, dict]:
    """Every raw ``[training.NAME]`` table of a configuration."""
    section = config.section("training")
    if not isinstance(section, dict):
        raise SpecError("expected a table [training.NAME] per training spec", "training")
    return section


def check_all(config, trainers) -> None:
    """Check every spec of ``config``; raise ``config.error`` (file, line, key) at the first mistake."""
    for name, raw in specs(config).items():
        try:
            resolve(name, raw, trainers, config.project_dir)
        except SpecError as exc:
            raise config.error(exc.detail, "training", name, *exc.keys) from None


def get(config, name: str) -> dict:
    table = specs(config)
    if name not in table:
        known = ", ".join(sorted(table)) or "none (add a [training.NAME] table to appliance.toml)"
        raise NotFound(f"no training spec {name!r}; specs: {known}")
    return table[name]


def apply_overrides(raw: dict, overrides: dict[str, Any], trainer_hp: dict, *, any_name: bool = False) -> dict:
    """``--set key=value`` on a copy of the spec; bare hyperparameter names are shorthand for them (any name
    that is not a spec key, for a trainer that declares none)."""
    out = copy.deepcopy(raw)
    for key, value in overrides.items():
        parts = key.split(".")
        if len(parts) == 1 and parts[0] not in SPEC_KEYS and (parts[0] in trainer_hp or any_name):
            parts = ["hyperparameters", parts[0]]
        node = out
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise SpecError(f"cannot set {key!r}: {part!r} is not a table")
        node[parts[-1]] = value
    return out


def resolve(name: str, raw: dict, trainers, project_dir: Path | None) -> dict:
    """A complete, checked spec: defaults filled in, hyperparameters merged with the trainer's defaults."""
    if not isinstance(raw, dict):
        raise SpecError("expected a table")
    for key, value in raw.items():
        if key not in SPEC_KEYS:
            raise SpecError(f"unknown key; known keys: {', '.join(sorted(SPEC_KEYS))}", key)
        want = SPEC_KEYS[key]
        if (isinstance(value, bool) and want not in (bool, (str, bool))) or not isinstance(value, want):
            names = want.__name__ if isinstance(want, type) else " or ".join(t.__name__ for t in want)
            raise SpecError(f"expected {names}, got {type(value).__name__} {value!r}", key)
    spec = {**copy.deepcopy(DEFAULTS), **copy.deepcopy(raw), "name": name}
    spec.setdefault("experiment", name)
    if spec.get("model", True) is True:
        spec["model"] = name
    if ("training_set" in raw) == ("parquet" in raw):
        raise SpecError("name exactly one of training_set (a feature-store training set) or parquet (a file)")
    if "parquet" in raw:
        spec["parquet"] = str(_under_project(raw["parquet"], project_dir, "parquet"))
    if not isinstance(raw.get("label"), str):
        raise SpecError("required: the label column", "label")
    if spec["task"] not in TASKS:
        raise SpecError(f"expected one of {', '.join(TASKS)}, got {spec['task']!r}", "task")
    for key in ("features", "categorical"):
        if not all(isinstance(c, str) for c in spec.get(key, [])):
            raise SpecError("expected a list of column names", key)
    spec.setdefault("gate", "better")
    if spec["gate"] not in ("better", "none"):
        raise SpecError(f"expected better (promote only a version that beats the alias's holder) or none, got "
                        f"{spec['gate']!r}", "gate")
    spec.setdefault("gate_metric", GATE_METRIC[spec["task"]])
    if spec["gate_metric"] not in TASK_METRICS[spec["task"]]:
        raise SpecError(f"a {spec['task']} run gives {', '.join(TASK_METRICS[spec['task']])}, not "
                        f"{spec['gate_metric']!r}", "gate_metric")
    if spec["device"] not in ("auto", "cpu", "cuda"):
        raise SpecError(f"expected auto, cpu or cuda, got {spec['device']!r}", "device")
    for key in ("log_every", "max_categories"):
        if spec[key] < 1:
            raise SpecError(f"must be >= 1, got {spec[key]}", key)
    trainer = find_trainer(spec["trainer"], trainers, project_dir)
    if trainer is None:
        raise SpecError(f"no trainer {spec['trainer']!r}; registered: {', '.join(trainers.names())}, or a "
                        "function of a project file (trainer = \"models.py:fit\")", "trainer")
    if spec["task"] not in trainer.tasks:
        raise SpecError(f"trainer {trainer.name!r} does not do {spec['task']}", "task")
    given = spec.get("hyperparameters", {})
    if getattr(trainer, "open_hyperparameters", False):
        spec["hyperparameters"] = dict(given)
        declared = {**given, **{k: None for k in (raw.get("sweep") or {}).get("parameters") or {}}}
    else:
        spec["hyperparameters"] = _merge(trainer.hyperparameters, given, "hyperparameters")
        declared = trainer.hyperparameters
    spec["split"] = _split(spec.get("split", {}))
    spec["sweep"] = _sweep(spec["sweep"], declared) if "sweep" in raw else None
    return spec


def _under_project(path: str, project_dir: Path | None, key: str) -> Path:
    if project_dir is None:
        raise SpecError(f"a {key} file needs a project directory", key)
    root = Path(project_dir).resolve()
    full = (root / path).resolve()
    if full != root and root not in full.parents:
        raise SpecError(f"{path!r} is outside the project directory", key)
    return full


def _merge(defaults: dict, given: dict, table: str) -> dict:
    out = dict(defaults)
    declared = getattr(defaults, "specs", {})  # a trainer's hyperparameters given as appliance.Options
    for key, value in given.items():
        if key not in defaults:
            raise SpecError(f"unknown hyperparameter; known: {', '.join(sorted(defaults))}", table, key)
        want = defaults[key]
        if key in declared:
            if (problem := declared[key].problem(value)) is not None:
                raise SpecError(problem, table, key)
        elif want is not None and not _same_kind(want, value):
            raise SpecError(f"expected {type(want).__name__}, got {type(value).__name__} {value!r}", table, key)
        out[key] = value
    return out


def _same_kind(default: Any, value: Any) -> bool:
    if isinstance(default, bool) or isinstance(value, bool):
        return isinstance(default, bool) and isinstance(value, bool)
    if isinstance(default, int | float):
        return isinstance(value, int | float) and (isinstance(default, float) or float(value).is_integer())
    return isinstance(value, type(default))


def _split(given: dict) -> dict:
    split = _merge(SPLIT_DEFAULTS, given, "split")
    if split["method"] not in ("random", "time"):
        raise SpecError(f"expected random or time, got {split['method']!r}", "split", "method")
    if split["method"] == "time" and not split["column"]:
        raise SpecError("a time split needs the timestamp column", "split", "column")
    if not (0 < split["validation"] < 1 and 0 < split["holdout"] < 1 and split["validation"] + split["holdout"] < 1):
        raise SpecError("validation and holdout are fractions in (0, 1) that leave rows to train on", "split")
    return split


def _sweep(given: dict, hp_defaults: dict) -> dict:
    sweep = _merge(SWEEP_DEFAULTS, given, "sweep")
    if sweep["method"] not in ("grid", "random"):
        raise SpecError(f"expected grid or random, got {sweep['method']!r}", "sweep", "method")
    if not sweep["parameters"]:
        raise SpecError("a sweep needs [sweep.parameters]: lists of values or {min, max[, log]} ranges", "sweep")
    for key, values in sweep["parameters"].items():
        if key not in hp_defaults:
            raise SpecError(f"unknown hyperparameter; known: {', '.join(sorted(hp_defaults))}",
                            "sweep", "parameters", key)
        if isinstance(values, dict):
            if sweep["method"] == "grid" or set(values) - {"min", "max", "log"} or not {"min", "max"} <= set(values):
                raise SpecError("a range is {min, max[, log]} and only random search draws from it",
                                "sweep", "parameters", key)
        elif not isinstance(values, list) or not values:
            raise SpecError("expected a non-empty list of values or a {min, max} range", "sweep", "parameters", key)
    if sweep["method"] == "random" and not sweep["trials"]:
        raise SpecError("random search needs trials = N", "sweep", "trials")
    if sweep["goal"] is None:
        sweep["goal"] = "min" if lower_is_better(sweep["metric"]) else "max"
    if sweep["goal"] not in ("min", "max"):
        raise SpecError(f"expected min or max, got {sweep['goal']!r}", "sweep", "goal")
    return sweep


def lower_is_better(metric: str) -> bool:
    """Whether smaller is better for a metric, judged by its name (losses and errors)."""
    return any(word in metric for word in ("loss", "rmse", "mae", "error"))


def trials(sweep: dict) -> list[dict]:
    """The hyperparameter sets a sweep runs: the full grid (cut to ``trials``), or ``trials`` random draws."""
    params = sweep["parameters"]
    if sweep["method"] == "grid":
        keys = sorted(params)
        combos = [dict(zip(keys, combo, strict=True)) for combo in itertools.product(*(params[k] for k in keys))]
        return combos[: sweep["trials"]] if sweep["trials"] else combos
    rng = random.Random(sweep["seed"])  # a seeded draw, so the same sweep spec yields the same trials
    out = []
    for _ in range(sweep["trials"]):
        trial = {}
        for key in sorted(params):
            values = params[key]
            if isinstance(values, list):
                trial[key] = rng.choice(values)
            elif values.get("log"):
                trial[key] = math.exp(rng.uniform(math.log(values["min"]), math.log(values["max"])))
            elif isinstance(values["min"], int) and isinstance(values["max"], int):
                trial[key] = rng.randint(values["min"], values["max"])
            else:
                trial[key] = rng.uniform(values["min"], values["max"])
        out.append(trial)
    return out


def config_hash(spec: dict) -> str:
    """A stable hash of everything that shapes a run, so two runs with the same config are recognisable."""
    shaping = {k: v for k, v in spec.items() if k not in ("description", "tags", "sweep")}
    return hashlib.sha256(json.dumps(shaping, sort_keys=True, default=str).encode()).hexdigest()
