"""The plugin author's guide, ``docs/plugins.md``, generated from the contract itself, and the check that keeps
``docs/internals.md`` (written by hand) in step with the code.

    python -m appliance.docs > docs/plugins.md

Every hook's section is its spec's docstring and signature in ``appliance/hookspecs.py``, in the file's order
and under its banner comments, with the contract version it arrived in and its example from
``docs/hook_examples.py``; the objects hooks register are described from ``appliance/contract.py``. A test fails
when the checked-in page differs from what this renders, so the page cannot drift from the code.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import re
from pathlib import Path

from . import contract, hookspecs
from .options import Option, Options
from .outbox import Outbox

_BANNER = re.compile(r"^# -{20,}$")
#: One working plugin holding every hook's example (it is loaded in a test, so the examples cannot rot).
EXAMPLES = Path(__file__).resolve().parent.parent / "docs" / "hook_examples.py"

INTRO = """\
# Writing plugins

<!-- Generated from appliance/hookspecs.py, appliance/contract.py and docs/hook_examples.py by
     `python -m appliance.docs > docs/plugins.md`. Do not edit by hand: change those and run it again
     (tests/test_plugin_authoring.py checks it). -->

## Start here

```
appliance plugin new my_plugin      # an installable package: entry point, one example of each kind of hook, tests
pip install -e my_plugin
pytest my_plugin                    # your plugin in real daemons and in-process apps, through the fixtures below
appliance plugin install ./my_plugin  # or: pip install it and restart the daemon (appliance down && appliance up)
appliance plugins                   # my_plugin: entrypoint, loaded (or why it was refused, with the traceback)
```

A plugin is a module (or a package's top module) that sets `APPLIANCE_CONTRACT = "{version}"` and marks its
hook implementations with `@appliance.hookimpl` (a function named like a hook but not marked is never called;
`appliance plugins` warns about it). The daemon finds plugins three ways, all loaded by the same call: the
`appliance` entry-point group of installed packages (`[project.entry-points.appliance]` in `pyproject.toml`), a
drop-in `.py` file or package in the home's or the project's `plugins/` directory, and the built-ins in the
appliance's own `plugins/`. `[plugins] allow = [...]` in `appliance.toml` loads only the third-party plugins it
names (the others are never imported); `deny` keeps any plugin out. `appliance plugin reload NAME` reads a
drop-in again without a restart.

What a plugin registers declares its options (`appliance.Options` of `appliance.Option`, below): a source kind,
monitor kind, trainer, job kind or alert sink. The host checks the user's table against them, so a mistake
is reported with file, line and key before the plugin sees it, and the plugin gets the values merged over the
defaults. A plugin's own table (`[my_plugin]`) is checked in `configure` with `config.check_options(...)`.

A third-party plugin cannot take the box down: if it fails to import, breaks the contract, raises in a
registration hook, or its migration, `configure` or `startup` fails, it is disabled and shown `failed` with its
traceback in `appliance plugins`, `GET /api/v1/plugins` and the dashboard, while the daemon and every other
plugin run. (A plugin named in `[plugins] allow` that fails to load is a configuration error instead: you asked
for it.) A hook implementation that raises is recorded against its plugin; an `on_event` sink busy on one event
longer than `[daemon] sink_timeout_s` (30 s) is reported.

[`internals.md`](internals.md) documents everything a hook receives: `app` and its parts, `config`, a job's
`job`, a route's `request`, the event types, the tables a plugin may read and the core's routes.

## Testing

Installing the appliance gives pytest these fixtures (`appliance.pytest_plugin`, a `pytest11` entry point):

- `appliance_daemon(toml="", *, dropins=(), packages=(), env=None, strict=None)` starts a real daemon on free
  loopback ports with a fresh home and that `appliance.toml`, loading every installed plugin, the `dropins`
  (files or package directories copied into the project's `plugins/`) and the `packages` (package directories
  pip-installed once per session and loaded by their entry points). It returns an
  `appliance.testing.DaemonProcess` with `get`, `post`, `delete`, `submit`, `wait_job`, `events`, `cli` and
  `project`, and stops it after the test.
- `appliance_app(toml="", *, plugins=(), dropins=(), builtins=(), entry_points=False, strict=None)` builds the
  same daemon inside the test's process (`appliance.testing.InProcessApp`): the same loading, migrations,
  hooks and control API (token and Host checks included) in milliseconds instead of seconds. `plugins` are
  modules you import in the test; `builtins` names the built-in plugins to load too (none by default). It
  answers `get`, `post`, `delete`, `submit`, `wait_job` and `events` like a daemon, and `app` is the `app` your
  hooks receive. Use it for unit tests; use `appliance_daemon` for the CLI, the event stream, process jobs and
  anything that needs a process of its own.
- `appliance_panel(daemon, name)` renders the panel `name` your plugin registered in the real dashboard
  (Textual's Pilot) against a daemon from `appliance_daemon`, and returns what it shows (`rows`, `text`).
- Strict mode (`pytest --appliance-strict`, `appliance_strict = true` in the ini file, or `strict=True` on one
  call) fails a test whose daemon recorded any plugin failure.

`examples/` holds complete third-party plugins with their tests: a webhook alert sink and source, a SQLite
source with its own options, a KS drift monitor with a JSON-lines alert sink, and a dashboard panel with its
route and command.

## Versioning

A plugin states the contract it was written for: `APPLIANCE_CONTRACT = "MAJOR.MINOR"`. It loads when the major
is this appliance's and its minor is not newer. A minor version only adds (hooks, optional arguments,
attributes a plugin may use or ignore), so a plugin written for 1.0 loads unchanged under 1.1; a major version
removes or changes something, and plugins written for another major are refused with a message naming both
versions. A plugin that uses something added in 1.1 says `"1.1"`, so an older appliance refuses it in words
rather than failing on a missing hook. This appliance provides contract {version}.

{changelog}

## The contract
"""


def hook_sections() -> list[tuple[str, list[ast.FunctionDef]]]:
    """The hooks in source order, grouped under the banner comment above them."""
    source = Path(inspect.getfile(hookspecs)).read_text()
    lines = source.splitlines()
    banners = {}
    for i, line in enumerate(lines[:-2]):
        if _BANNER.match(line) and lines[i + 1].startswith("# ") and _BANNER.match(lines[i + 2]):
            banners[i + 1] = lines[i + 1][2:].strip()
    sections: list[tuple[str, list[ast.FunctionDef]]] = []
    for node in ast.parse(source).body:
        if not isinstance(node, ast.FunctionDef) or not any(
                isinstance(d, ast.Name) and d.id == "hookspec" for d in node.decorator_list):
            continue
        title = max(((ln, t) for ln, t in banners.items() if ln < node.lineno), default=(0, "Hooks"))[1]
        if not sections or sections[-1][0] != title:
            sections.append((title, []))
        sections[-1][1].append(node)
    return sections


def _signature(node: ast.FunctionDef) -> str:
    returns = f" -> {ast.unparse(node.returns)}" if node.returns else ""
    return f"{node.name}({ast.unparse(node.args)}){returns}"


def _objects() -> list[str]:
    out = ["## What hooks register and receive", ""]
    for name in ("JobKind", "Route", "TuiPanel", "Event", "Reply", "Stream"):
        cls = getattr(contract, name, None)
        if cls is None:
            continue
        fields = ", ".join(f"{f.name}: {f.type}" + _default(f) for f in dataclasses.fields(cls))
        out += [f"### `appliance.{name}({fields})`", "", inspect.cleandoc(cls.__doc__ or ""), ""]
    fields = ", ".join(f"{f.name}: {f.type}" + _default(f) for f in dataclasses.fields(Option))
    out += [f"### `appliance.Option({fields})`", "", inspect.cleandoc(Option.__doc__ or ""), ""]
    for cls, signature in ((Options, "Options(*options)"), (Outbox, "Outbox(name, deliver, *, report, size=10000, "
                                                                    "stall_s=30.0, describe=repr)")):
        out += [f"### `appliance.{signature}`", "", inspect.cleandoc(cls.__doc__ or ""), ""]
        for attr in sorted(vars(cls)):
            member = vars(cls)[attr]
            if not attr.startswith("_") and callable(getattr(member, "__func__", member)) and member.__doc__:
                out += [f"- `{attr}`: " + " ".join(inspect.cleandoc(member.__doc__).split())]
        out.append("")
    return out


def _default(f: dataclasses.Field) -> str:
    if f.default is not dataclasses.MISSING:
        return f" = {f.default!r}"
    return " = ..." if f.default_factory is not dataclasses.MISSING else ""


def _changelog() -> str:
    lines = ["### Changelog", ""]
    for version, changes in contract.CHANGELOG.items():
        lines += [f"- **{version}**"] + [f"  - {change}" for change in changes]
    return "\n".join(lines)


def examples() -> dict[str, str]:
    """Each hook's example from ``docs/hook_examples.py``: the block after its ``# example: HOOK`` line."""
    found: dict[str, str] = {}
    current, block = None, []
    for line in EXAMPLES.read_text().splitlines() + ["# example: end"]:
        if line.startswith("# example: "):
            if current:
                found[current] = "\n".join(block).strip("\n")
            current, block = line.removeprefix("# example: ").strip(), []
        elif current:
            block.append(line)
    return found


def render() -> str:
    intro = (INTRO.replace("{version}", contract.CONTRACT_VERSION).replace("{changelog}", _changelog()))
    lines = [intro, inspect.cleandoc(hookspecs.__doc__ or ""), ""]
    code = examples()
    for title, nodes in hook_sections():
        lines += [f"### {title}", ""]
        for node in nodes:
            doc = inspect.cleandoc(getattr(hookspecs, node.name).__doc__ or "")
            added = contract.HOOKS_ADDED_IN.get(node.name, "1.0")
            lines += [f"#### `{_signature(node)}`", "", f"*Added in contract {added}.*", "", doc, ""]
            if node.name in code:
                lines += ["Example:", "", "```python", code[node.name], "```", ""]
    lines += _objects()
    return "\n".join(lines).rstrip() + "\n"




# ---------------------------------------------------------------------------------------------------------------
# docs/internals.md: what a hook receives, checked against the code.
# ---------------------------------------------------------------------------------------------------------------

#: Each object a hook receives, as internals.md names it, and the class it is.
INTERNALS = (
    ("app", "appliance.app:Appliance"),
    ("app.home", "appliance.home:Home"),
    ("config", "appliance.config:Config"),
    ("app.catalog", "appliance.catalog:Catalog"),
    ("app.store", "appliance.store:Store"),
    ("app.artifacts", "appliance.artifacts:ArtifactStore"),
    ("app.events", "appliance.events:EventBus"),
    ("app.jobs", "appliance.jobs:JobRunner"),
    ("job", "appliance.jobs.handle:JobHandle"),
    ("job", "appliance.jobs.child:ChildJob"),
    ("request", "appliance.api.request:ApiRequest"),
)
_EMIT = re.compile(r"""(?:\.emit|_emit\w*)\(\s*f?["']([a-z_]+\.[a-z_.]+)["']""")
_CREATE_SCHEMA = re.compile(r"create schema if not exists ([a-z_]+)\b", re.IGNORECASE)
_CREATE_TABLE = re.compile(r"create table ([a-z_]+) \(", re.IGNORECASE)


def public_attributes(cls: type) -> set[str]:
    """Public methods, properties, dataclass fields and the attributes ``__init__`` sets on ``self``."""
    names = {n for n in dir(cls) if not n.startswith("_")}
    if dataclasses.is_dataclass(cls):
        names |= {f.name for f in dataclasses.fields(cls)}
    for node in ast.walk(ast.parse(inspect.getsource(cls))):
        if (isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store)
                and isinstance(node.value, ast.Name) and node.value.id == "self"):
            names.add(node.attr)
    return {n for n in names if not n.startswith("_")}


def _sources(*packages: str) -> list[Path]:
    root = Path(inspect.getfile(contract)).resolve().parent.parent
    return [p for pkg in packages for p in sorted((root / pkg).rglob("*.py")) if p.name != "scaffold.py"]


def event_types() -> set[str]:
    """Every event type the core and the built-in plugins emit by name."""
    return {m.group(1) for path in _sources("appliance", "plugins") for m in _EMIT.finditer(path.read_text())}


def internals_gaps(text: str) -> list[str]:
    """What ``docs/internals.md`` (``text``) leaves out: attributes of the objects hooks receive, event types,
    core routes, the core's catalog tables and the store's schemas. Empty when it documents them all."""
    import importlib

    from .api.core_routes import ROUTES

    gaps = []
    for label, target in INTERNALS:
        module, _, name = target.partition(":")
        cls = getattr(importlib.import_module(module), name)
        gaps += [f"{label}.{a} ({name})" for a in sorted(public_attributes(cls))
                 if not re.search(rf"`{re.escape(label)}\.{re.escape(a)}\b", text)]
    gaps += [f"event type {t}" for t in sorted(event_types()) if f"`{t}`" not in text]
    gaps += [f"route {r.method} {r.path}" for r in ROUTES if f"`{r.method} {r.path}`" not in text]
    core = Path(inspect.getfile(contract)).resolve().parent / "catalog.py"
    gaps += [f"catalog table {t}" for t in sorted(set(_CREATE_TABLE.findall(core.read_text())))
             if f"`{t}`" not in text]
    schemas = {m for path in _sources("plugins") for m in _CREATE_SCHEMA.findall(path.read_text())}
    gaps += [f"store schema {s}" for s in sorted(schemas) if f"`{s}.`" not in text]
    return gaps


if __name__ == "__main__":
    print(render(), end="")
