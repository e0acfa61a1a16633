"""Registry tags from the CLI: set and remove them on a model or a version, and see them in `models show`."""

from __future__ import annotations

import json

import pytest
from conftest import make_project
from serving_models import linear_model

from appliance.testing import DaemonProcess


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    root = tmp_path_factory.mktemp("registry-tags")
    with DaemonProcess(root / "home", make_project(root / "project")) as d:
        for seed in (1, 2):
            d.register_model("fraud", linear_model(root / f"m{seed}.onnx", seed=seed))
        yield d


def test_models_tag_and_untag_a_model_and_a_version_and_show_prints_them(registry):
    d = registry
    out = d.cli("models", "tag", "fraud", "owner=risk", "team=ml")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "fraud tags: owner=risk, team=ml"
    out = d.cli("models", "tag", "fraud", "reviewed=yes", "note=a=b", "--version", "1")
    assert out.stdout.strip() == "fraud version 1 tags: note=a=b, reviewed=yes", out.stderr
    out = d.cli("models", "untag", "fraud", "team", "--json")
    assert json.loads(out.stdout)["tags"] == {"owner": "risk"}
    assert d.get("/models/fraud/versions/1").json()["tags"] == {"reviewed": "yes", "note": "a=b"}
    assert d.events("model.described")[-1]["data"]["untagged"] == ["team"]

    show = d.cli("models", "show", "fraud").stdout.splitlines()
    assert "tags: owner=risk" in show
    header = next(i for i, line in enumerate(show) if line.startswith("VERSION"))
    assert "TAGS" in show[header].split()
    rows = {line.split()[0]: line for line in show[header + 1:header + 3]}
    assert "note=a=b, reviewed=yes" in rows["1"] and "  -  " in rows["2"]


@pytest.fixture
def anyio_backend():
    return "asyncio"


@pytest.mark.anyio
async def test_the_dashboard_shows_tags_of_models_and_versions(registry):
    from tui_helpers import settle, table, text_of

    from tui.app import ApplianceApp
    from tui.client import ApiClient

    d = registry
    assert d.post("/models/fraud", {"tags": {"stage": "pilot"}}).status_code == 200
    assert d.post("/models/fraud/versions/2", {"tags": {"data": "march"}}).status_code == 200
    app = ApplianceApp(ApiClient(d.home), home=d.home, area="models")
    async with app.run_test(size=(120, 36)) as pilot:
        await settle(pilot, app, lambda: table(app, "versions").rows_all)
        seen = text_of(app)
        assert "Tags" in seen and "data=march" in seen and "stage=pilot" in seen, seen


def test_bad_tags_are_refused_naming_what_was_wrong(registry):
    d = registry
    out = d.cli("models", "tag", "fraud", "novalue")
    assert out.returncode == 2 and "expected KEY=VALUE, got 'novalue'" in out.stderr
    r = d.post("/models/fraud", {"untag": "owner"})
    assert r.status_code == 400 and r.json()["error"]["message"] == "field 'untag' must be a list of tag keys"
    out = d.cli("models", "tag", "nosuch", "a=b")
    assert out.returncode != 0 and "no model 'nosuch'" in out.stderr and "Traceback" not in out.stderr
