"""docs/config.md against the code: every table and key appliance.toml takes has a line there, with the default
the code has where it keeps one; a key added to the code without a line fails here."""

from __future__ import annotations

import json
import re
from pathlib import Path

from config_schema import declared

DOC = Path(__file__).parent.parent / "docs" / "config.md"
HEADING = re.compile(r'^### `\[([^\]]+)\]`(?: kind = "(\w+)")?')
ROW = re.compile(r"^\| `(\w+)` \| ([^|]*) \| ([^|]*) \| (.*) \|$")


def fmt(value) -> str:
    """A default as the page writes it."""
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else repr(value)
    if isinstance(value, int):
        return str(value)
    return json.dumps(value)


def documented() -> dict[str, dict[str, tuple[str, str, str]]]:
    out: dict[str, dict[str, tuple[str, str, str]]] = {}
    table = None
    for line in DOC.read_text().splitlines():
        if m := HEADING.match(line):
            table = m[1] + (f" kind = {m[2]}" if m[2] else "")
            out[table] = {}
        elif table and (m := ROW.match(line)):
            out[table][m[1]] = (m[2].strip(), m[3].strip(), m[4].strip())
    return out


def test_every_key_the_code_takes_is_documented_with_its_default():
    docs, code = documented(), declared()
    missing_tables = sorted(set(code) - set(docs))
    assert not missing_tables, f"tables without a section in docs/config.md: {missing_tables}"
    for table, (keys, defaults) in code.items():
        assert set(docs[table]) == keys, (table, "undocumented:", sorted(keys - set(docs[table])),
                                          "documented but not taken:", sorted(set(docs[table]) - keys))
        for key, (kind, default, meaning) in docs[table].items():
            assert kind and meaning, (table, key)
            if defaults is not None and key in defaults:
                assert default == fmt(defaults[key]), (table, key, default, fmt(defaults[key]))


def test_the_reference_fails_when_a_key_is_added_without_a_line(monkeypatch):
    from plugins.ingest import settings

    monkeypatch.setattr(settings, "SOURCE_KEYS", {*settings.SOURCE_KEYS, "brand_new_key"})
    keys, _ = declared()["sources.NAME"]
    assert "brand_new_key" in keys and "brand_new_key" not in documented()["sources.NAME"]


def test_init_writes_a_commented_template_and_apply_dry_run_shows_changes_without_making_them(tmp_path):
    import subprocess
    import sys

    from appliance.config import load
    from appliance.testing import DaemonProcess

    project = tmp_path / "project"
    out = subprocess.run([sys.executable, "-m", "appliance", "init", str(project)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    text = (project / "appliance.toml").read_text()
    assert "docs/config.md" in text and "apply --dry-run" in text
    for section in ("[sources.", "[feature_views.", "[training.", "[deployments.", "[monitors.", "[pipelines.",
                    "[registry.", "[backup]", "[retention]"):
        assert section in text, section
    load(project)  # the template is valid as written
    with DaemonProcess(tmp_path / "home", project) as d:
        (project / "appliance.toml").write_text(text.replace('data_dirs = ["data"]', 'data_dirs = ["data", "more"]')
                                                + '\n[sources.flights]\nkind = "csv"\npath = "data/f.csv"\n')
        (project / "more").mkdir()
        out = d.cli("apply", "--dry-run")
        assert out.returncode == 0, out.stderr
        assert "2 change(s) would be applied (nothing changed yet)" in out.stdout
        assert "~ ingest.data_dirs: ['data'] -> ['data', 'more']" in out.stdout
        assert "+ sources = {'flights': {" in out.stdout
        assert d.get("/sources").json() == []
        out = d.cli("apply")
        assert out.returncode == 0 and "changed: ingest, sources" in out.stdout, out.stdout + out.stderr
        assert [s["name"] for s in d.get("/sources").json()] == ["flights"]
