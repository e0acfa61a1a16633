"""Reading ``[pipelines.*]`` and ``[schedules.*]`` from ``appliance.toml`` into checked, immutable specs.

Everything is validated here, before the plugin changes any state, and every mistake is a ``ConfigError`` that
names file, line and key. Steps live in an array of tables (``[[pipelines.NAME.steps]]``), which
``Config.error`` cannot address one by one, so ``_step_error`` finds the Nth step's line itself.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import re
from dataclasses import dataclass, field
from typing import Any

from appliance import ConfigError

PIPELINE_KEYS = {"description", "steps", "schedule", "max_overlap", "allow_overlap", "triggers"}
STEP_KEYS = {"name", "kind", "params", "depends_on", "retries", "backoff_s", "timeout_s"}
SCHEDULE_KEYS = {"cron", "interval_s"}
JOB_SCHEDULE_KEYS = {"description", "kind", "params", "cron", "interval_s", "retries", "backoff_s", "timeout_s",
                     "allow_overlap"}
TRIGGER_KEYS = {"event", "subject", "debounce_s"}
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")

# Standard crontab counts weekdays from Sunday = 0 (7 too); APScheduler 3.x counts from Monday = 0. Numbers in
# the weekday field are turned into names so a user's crontab means what it says (step values stay numbers).
_WEEKDAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat", "sun")


@dataclass(frozen=True)
class When:
    """A schedule: a cron expression (5 fields, or 6 with seconds first) or a fixed interval."""

    cron: str | None = None
    interval_s: float | None = None

    def describe(self) -> str:
        return f"cron {self.cron}" if self.cron else f"every {self.interval_s:g} s"

    def fingerprint(self) -> str:
        return hashlib.sha256(json.dumps([self.cron, self.interval_s]).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Step:
    name: str
    kind: str
    params: dict = field(default_factory=dict)
    depends_on: tuple[str, ...] = ()
    retries: int | None = None
    backoff_s: float | None = None
    timeout_s: float | None = None

    def to_dict(self) -> dict:
        return {"name": self.name, "kind": self.kind, "params": self.params, "depends_on": list(self.depends_on),
                "retries": self.retries, "backoff_s": self.backoff_s, "timeout_s": self.timeout_s}

    @classmethod
    def from_dict(cls, d: dict) -> Step:
        return cls(**{**d, "depends_on": tuple(d["depends_on"])})


@dataclass(frozen=True)
class Trigger:
    event: str
    subject: str | None = None
    debounce_s: float = 0.0


@dataclass(frozen=True)
class Pipeline:
    name: str
    steps: tuple[Step, ...]
    description: str = ""
    when: When | None = None
    max_overlap: int = 1
    triggers: tuple[Trigger, ...] = ()

    def to_dict(self) -> dict:
        return {"name": self.name, "description": self.description,
                "schedule": self.when.describe() if self.when else None,
                "max_overlap": self.max_overlap,
                "triggers": [{"event": t.event, "subject": t.subject, "debounce_s": t.debounce_s}
                             for t in self.triggers],
                "steps": [s.to_dict() for s in self.steps]}


@dataclass(frozen=True)
class JobSchedule:
    """``[schedules.NAME]``: one job of ``kind`` on a schedule."""

    name: str
    kind: str
    when: When
    params: dict = field(default_factory=dict)
    description: str = ""
    retries: int | None = None
    backoff_s: float | None = None
    timeout_s: float | None = None
    allow_overlap: bool = False


@dataclass(frozen=True)
class Project:
    pipelines: dict[str, Pipeline]
    schedules: dict[str, JobSchedule]


def read(config, kinds) -> Project:
    """Check ``config``'s pipelines and schedules against the registered job ``kinds``; raise ``ConfigError``."""
    pipelines = {}
    for name, table in _tables(config, "pipelines").items():
        pipelines[name] = _pipeline(config, kinds, name, table)
    schedules = {}
    for name, table in _tables(config, "schedules").items():
        schedules[name] = _job_schedule(config, kinds, name, table)
    return Project(pipelines, schedules)


def cron_trigger(expr: str):
    """An APScheduler ``CronTrigger`` from a crontab line; seconds come first when there are six fields."""
    from apscheduler.triggers.cron import CronTrigger

    fields = expr.split()
    if len(fields) == 5:
        fields = ["0", *fields]
    if len(fields) != 6:
        raise ValueError(f"expected 5 fields (minute hour day month weekday) or 6 (seconds first), "
                         f"got {len(fields)}")
    second, minute, hour, day, month, weekday = fields
    weekday = re.sub(r"(?<![/\d])\d+", lambda m: _WEEKDAYS[int(m.group())] if int(m.group()) < 8 else m.group(),
                     weekday)
    return CronTrigger(second=second, minute=minute, hour=hour, day=day, month=month, day_of_week=weekday)


# ------------------------------------------------------------------------------------------------- parts


def _tables(config, top: str) -> dict[str, dict]:
    section = config.section(top)
    if not isinstance(section, dict):
        raise config.error(f"expected tables [{top}.NAME], got {type(section).__name__}", top)
    for name, table in section.items():
        if not isinstance(table, dict):
            raise config.error(f"expected a table [{top}.{name}], got {type(table).__name__}", top, name)
        if not NAME.match(name):
            raise config.error("names may use letters, digits, '_', '-' and '.'", top, name)
    return section


def _unknown(config, table: dict, allowed: set[str], *keys: str) -> None:
    for key in table:
        if key not in allowed:
            close = difflib.get_close_matches(key, allowed, n=1)
            hint = f"did you mean {close[0]!r}?" if close else f"known keys: {', '.join(sorted(allowed))}"
            raise config.error(f"unknown key; {hint}", *keys, key)


def _number(config, table: dict, key: str, *keys: str, minimum: float = 0, integer: bool = False,
            strict: bool = False) -> Any:
    value = table.get(key)
    if value is None:
        return None
    kinds = int if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds):
        raise config.error(f"expected {'an integer' if integer else 'a number'}, got {value!r}", *keys, key)
    if value < minimum or (strict and value == minimum):
        raise config.error(f"must be {'>' if strict else '>='} {minimum:g}, got {value!r}", *keys, key)
    return value


def _kind(config, kinds, kind: Any, err) -> str:
    if not isinstance(kind, str) or not kind:
        raise err("expected the name of a job kind", "kind")
    if kind not in kinds:
        known = ", ".join(sorted(kinds.names())) or "none"
        raise err(f"no job kind {kind!r} is registered (is its plugin loaded?); registered kinds: {known}", "kind")
    return kind


def _params(kind, params: Any, err) -> dict:
    """A step's or schedule's params, checked against the options its job kind declares (if it declares any);
    kept as written, since the runner completes them with the defaults when the job is submitted."""
    if not isinstance(params, dict):
        raise err(f"expected a table of parameters, got {params!r}", "params")
    for key, message in kind.options.problems(params) if kind.options else ():
        raise err(message, f"params.{key}") if key in params else err(f"{key} {message}", "params")
    return params


def _when(config, table: dict, *keys: str) -> When | None:
    cron, interval = table.get("cron"), table.get("interval_s")
    if cron is None and interval is None:
        return None
    if cron is not None and interval is not None:
        raise config.error("give either cron or interval_s, not both", *keys, "cron")
    if cron is not None:
        if not isinstance(cron, str):
            raise config.error(f"expected a crontab string, got {cron!r}", *keys, "cron")
        try:
            cron_trigger(cron)
        except ValueError as exc:
            raise config.error(f"bad cron expression {cron!r}: {exc}", *keys, "cron") from None
        return When(cron=cron)
    return When(interval_s=float(_number(config, table, "interval_s", *keys, strict=True)))


def _pipeline(config, kinds, name: str, table: dict) -> Pipeline:
    keys = ("pipelines", name)
    _unknown(config, table, PIPELINE_KEYS, *keys)
    steps_raw = table.get("steps")
    if not isinstance(steps_raw, list) or not steps_raw:
        raise config.error(f"a pipeline needs steps: add [[pipelines.{name}.steps]] tables", *keys,
                           *(("steps",) if "steps" in table else ()))
    steps = [_step(config, kinds, name, i, raw) for i, raw in enumerate(steps_raw)]
    names = [s.name for s in steps]
    for i, s in enumerate(steps):
        if names.index(s.name) != i:
            raise _step_error(config, name, i, "name", f"two steps are named {s.name!r}")
        for dep in s.depends_on:
            if dep not in names:
                raise _step_error(config, name, i, "depends_on",
                                  f"step {s.name!r} depends on {dep!r}, which is not a step of this pipeline "
                                  f"(steps: {', '.join(names)})")
    cycle = _cycle(steps)
    if cycle:
        raise _step_error(config, name, names.index(cycle[0]), "depends_on",
                          f"steps depend on each other in a cycle: {' -> '.join(cycle)}")
    schedule = table.get("schedule")
    when = None
    if schedule is not None:
        if not isinstance(schedule, dict):
            raise config.error('expected a table such as {cron = "0 3 * * *"} or {interval_s = 3600}', *keys,
                               "schedule")
        _unknown(config, schedule, SCHEDULE_KEYS, *keys, "schedule")
        when = _when(config, schedule, *keys, "schedule")
        if when is None:
            raise config.error("give cron or interval_s", *keys, "schedule")
    allow = table.get("allow_overlap", False)
    if not isinstance(allow, bool):
        raise config.error(f"expected true or false, got {allow!r}", *keys, "allow_overlap")
    max_overlap = _number(config, table, "max_overlap", *keys, minimum=1, integer=True)
    if allow and max_overlap is not None:
        raise config.error("give either allow_overlap or max_overlap, not both", *keys, "max_overlap")
    description = table.get("description", "")
    if not isinstance(description, str):
        raise config.error(f"expected a string, got {description!r}", *keys, "description")
    return Pipeline(name=name, steps=tuple(steps), description=description, when=when,
                    max_overlap=0 if allow else (max_overlap or 1), triggers=_triggers(config, table, keys))


def _step(config, kinds, pipeline: str, i: int, raw: Any) -> Step:
    def err(message: str, key: str | None = None) -> ConfigError:
        return _step_error(config, pipeline, i, key, message)

    if not isinstance(raw, dict):
        raise err(f"expected a table with name and kind, got {raw!r}")
    for key in raw:
        if key not in STEP_KEYS:
            close = difflib.get_close_matches(key, STEP_KEYS, n=1)
            hint = f"did you mean {close[0]!r}?" if close else f"known keys: {', '.join(sorted(STEP_KEYS))}"
            raise err(f"unknown key; {hint}", key)
    name = raw.get("name")
    if not isinstance(name, str) or not NAME.match(name):
        raise err("each step needs a name (letters, digits, '_', '-', '.')", "name" if "name" in raw else None)
    kind = _kind(config, kinds, raw.get("kind"), err)
    params = _params(kinds.get(kind), raw.get("params", {}), err)
    deps = raw.get("depends_on", [])
    if isinstance(deps, str):
        deps = [deps]
    if not isinstance(deps, list) or not all(isinstance(d, str) for d in deps):
        raise err(f"expected a list of step names, got {deps!r}", "depends_on")
    numbers = {}
    for key, integer, strict in (("retries", True, False), ("backoff_s", False, False), ("timeout_s", False, True)):
        value = raw.get(key)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int if integer else (int, float)):
            raise err(f"expected {'an integer' if integer else 'a number'}, got {value!r}", key)
        if value < 0 or (strict and value == 0):
            raise err(f"must be {'> 0' if strict else '>= 0'}, got {value!r}", key)
        numbers[key] = value
    return Step(name=name, kind=kind, params=params, depends_on=tuple(deps), **numbers)


def _triggers(config, table: dict, keys: tuple[str, ...]) -> tuple[Trigger, ...]:
    raw = table.get("triggers", [])
    if not isinstance(raw, list):
        raise config.error('expected a list such as [{event = "ingest.batch", debounce_s = 30}]', *keys, "triggers")
    out = []
    for item in raw:
        if not isinstance(item, dict):
            raise config.error(f"expected a table with an event, got {item!r}", *keys, "triggers")
        _unknown(config, item, TRIGGER_KEYS, *keys, "triggers")
        event, subject = item.get("event"), item.get("subject")
        if not isinstance(event, str) or not event:
            raise config.error("each trigger needs an event type (a glob such as 'ingest.*')", *keys, "triggers")
        if subject is not None and not isinstance(subject, str):
            raise config.error(f"expected a subject glob, got {subject!r}", *keys, "triggers")
        debounce = _number(config, item, "debounce_s", *keys, "triggers") or 0.0
        out.append(Trigger(event=event, subject=subject, debounce_s=float(debounce)))
    return tuple(out)


def _job_schedule(config, kinds, name: str, table: dict) -> JobSchedule:
    keys = ("schedules", name)
    _unknown(config, table, JOB_SCHEDULE_KEYS, *keys)

    def err(message: str, key: str | None = None) -> ConfigError:
        return config.error(message, *keys, *((key,) if key else ()))

    kind = _kind(config, kinds, table.get("kind"), err)
    when = _when(config, table, *keys)
    if when is None:
        raise err("a schedule needs cron or interval_s")
    params = _params(kinds.get(kind), table.get("params", {}), err)
    allow = table.get("allow_overlap", False)
    if not isinstance(allow, bool):
        raise err(f"expected true or false, got {allow!r}", "allow_overlap")
    description = table.get("description", "")
    if not isinstance(description, str):
        raise err(f"expected a string, got {description!r}", "description")
    return JobSchedule(name=name, kind=kind, when=when, params=params, description=description,
                       retries=_number(config, table, "retries", *keys, integer=True),
                       backoff_s=_number(config, table, "backoff_s", *keys),
                       timeout_s=_number(config, table, "timeout_s", *keys, strict=True),
                       allow_overlap=allow)


def _cycle(steps: list[Step]) -> list[str] | None:
    """A dependency cycle as a list of step names (first repeated at the end), or None."""
    deps = {s.name: s.depends_on for s in steps}
    state: dict[str, int] = {}
    path: list[str] = []

    def visit(n: str) -> list[str] | None:
        state[n] = 1
        path.append(n)
        for d in deps[n]:
            if state.get(d) == 1:
                return path[path.index(d):] + [d]
            if d not in state and (found := visit(d)):
                return found
        path.pop()
        state[n] = 2
        return None

    for s in steps:
        if s.name not in state and (found := visit(s.name)):
            return found
    return None


_STEPS_HEADER = re.compile(r"^\s*\[\[\s*pipelines\s*\.\s*[\"']?([^\]\"']+?)[\"']?\s*\.\s*steps\s*\]\]")
_HEADER = re.compile(r"^\s*\[")
_KEY = re.compile(r"^\s*([A-Za-z0-9_\-]+)\s*=")


def _step_error(config, pipeline: str, index: int, key: str | None, message: str) -> ConfigError:
    """A ConfigError at the line of step ``index`` (or its ``key``) of ``pipeline``."""
    line = None
    seen = -1
    lines = (config.text or "").splitlines()
    for no, text in enumerate(lines, 1):
        m = _STEPS_HEADER.match(text)
        if m and m.group(1) == pipeline:
            seen += 1
            if seen == index:
                line = no
                for j in range(no, len(lines)):
                    if _HEADER.match(lines[j]):
                        break
                    km = _KEY.match(lines[j])
                    if key and km and km.group(1) == key.split(".")[0]:
                        line = j + 1
                        break
                break
    if line is None:  # steps written inline (steps = [{...}, ...]): point at the steps key
        line = config.line_of("pipelines", pipeline, "steps")
    where = str(config.path or "appliance.toml") + (f":{line}" if line else "")
    dotted = f"pipelines.{pipeline}.steps[{index}]" + (f".{key}" if key else "")
    return ConfigError(f"{where}: {dotted}: {message}")
