"""The plugin author's guide, ``docs/plugins.md``, generated from the contract itself.

    python -m appliance.docs > docs/plugins.md

Every hook's section is its spec's docstring and signature in ``appliance/hookspecs.py``, in the file's order
and under its banner comments; the objects hooks register are described from ``appliance/contract.py``. A
test fails when the checked-in page differs from what this renders, so the page cannot drift from the code.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import re
from pathlib import Path

from . import contract, hookspecs

_BANNER = re.compile(r"^# -{20,}$")

INTRO = """\
# Writing plugins

<!-- Generated from appliance/hookspecs.py and appliance/contract.py by `python -m appliance.docs > docs/plugins.md`.
     Do not edit by hand: change the docstrings and run it again (tests/test_plugin_authoring.py checks it). -->

## Start here

```
appliance plugin new my_plugin      # an installable package: entry point, one example of each kind of hook, tests
pip install -e my_plugin
pytest my_plugin                    # real daemons with your plugin loaded, through the appliance_daemon fixture
appliance down && appliance up      # the daemon loads installed plugins at start
appliance plugins                   # my_plugin: entrypoint, loaded (or the reason it was refused)
```

A plugin is a module (or a package's top module) that sets `APPLIANCE_CONTRACT = "{version}"` and marks its
hook implementations with `@appliance.hookimpl`. The daemon finds it three ways, all loaded by the same call:
the `appliance` entry-point group of installed packages (`[project.entry-points.appliance]` in
`pyproject.toml`), a drop-in `.py` file or package in the home's or the project's `plugins/` directory, and
the built-ins in the appliance's own `plugins/`. A plugin reads its own table of `appliance.toml`
(`[my_plugin]`) with `app.settings("my_plugin")` or, better, checks it in `configure`.

Tests: installing the appliance gives pytest the `appliance_daemon` fixture (`appliance.pytest_plugin`, a
`pytest11` entry point). `appliance_daemon(toml="", *, env=None)` starts a real daemon on free loopback ports
with a fresh home and that `appliance.toml`, loading every installed plugin; it returns an
`appliance.testing.DaemonProcess` with `get`, `post`, `submit`, `wait_job`, `events` and `cli`, and stops it
after the test. `examples/webhook_sink_and_source/` is a complete third-party plugin with its tests.

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
    return out


def _default(f: dataclasses.Field) -> str:
    if f.default is not dataclasses.MISSING:
        return f" = {f.default!r}"
    return " = ..." if f.default_factory is not dataclasses.MISSING else ""


def render() -> str:
    lines = [INTRO.replace("{version}", contract.CONTRACT_VERSION),
             inspect.cleandoc(hookspecs.__doc__ or ""), ""]
    for title, nodes in hook_sections():
        lines += [f"### {title}", ""]
        for node in nodes:
            doc = inspect.cleandoc(getattr(hookspecs, node.name).__doc__ or "")
            lines += [f"#### `{_signature(node)}`", "", doc, ""]
    lines += _objects()
    return "\n".join(lines).rstrip() + "\n"


if __name__ == "__main__":
    print(render(), end="")
