"""Applying a project is all or nothing, one at a time: two applies at once never leave a configuration mixed
from both files, and a file one plugin refuses leaves every plugin on the running one."""

from __future__ import annotations

import threading
from pathlib import Path

import httpx
import pytest

from appliance.testing import DaemonProcess


def project_file(directory: Path, tag: str, entity: str = "customer") -> Path:
    """A project whose every plugin-owned part names ``tag``: source, feature view, pipeline."""
    (directory / "data").mkdir(parents=True, exist_ok=True)
    path = directory / "appliance.toml"
    path.write_text(f"""
[ingest]
data_dirs = ["data"]

[sources.src_{tag}]
kind = "csv"
path = "data/{tag}.csv"

[entities.customer]
join_keys = ["id"]

[feature_views.view_{tag}]
source = "raw.src_{tag}"
entities = ["{entity}"]
event_time = "ts"
features = ["x"]

[pipelines.pipe_{tag}]
[[pipelines.pipe_{tag}.steps]]
name = "only"
kind = "backup"
""")
    return path


def configuration(d: DaemonProcess) -> dict:
    """What each part of the daemon is running now."""
    return {"sources": [s["name"] for s in d.get("/sources").json()],
            "views": [v["name"] for v in d.get("/features").json()],
            "pipelines": [p["name"] for p in d.get("/pipelines").json()],
            "project": d.get("/status").json()["project"]}


def expected(tag: str, directory: Path) -> dict:
    return {"sources": [f"src_{tag}"], "views": [f"view_{tag}"], "pipelines": [f"pipe_{tag}"],
            "project": str(directory.resolve())}


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    root = tmp_path_factory.mktemp("apply-race")
    project_file(root / "a", "a")
    project_file(root / "b", "b")
    with DaemonProcess(root / "home", root / "a") as d:
        d.root = root
        yield d


def apply_at_once(d: DaemonProcess, files: list[Path]) -> list[httpx.Response]:
    """POST /apply for each file, all released at the same moment, as `appliance apply` run side by side does."""
    answers: list[httpx.Response | None] = [None] * len(files)
    start = threading.Barrier(len(files))

    def apply(i: int) -> None:
        with httpx.Client(base_url=d.url, headers={"Authorization": f"Bearer {d.token}"}, timeout=60) as c:
            start.wait()
            answers[i] = c.post("/api/v1/apply", json={"project": str(files[i])})

    threads = [threading.Thread(target=apply, args=(i,)) for i in range(len(files))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return answers


def test_two_applies_at_once_end_with_one_files_configuration(daemon):
    tags = ("a", "b")
    wanted = [expected(tag, daemon.root / tag) for tag in tags]
    for round_ in range(20):
        answers = apply_at_once(daemon, [daemon.root / tag / "appliance.toml" for tag in tags])
        for tag, r in zip(tags, answers, strict=True):  # the loser waits its turn, then applies its file whole
            assert r.status_code == 200, (round_, tag, r.text)
        now = configuration(daemon)
        assert now in wanted, f"round {round_}: a mixed configuration {now}"


def test_a_file_one_plugin_refuses_leaves_every_plugin_as_it_was(daemon):
    daemon.post("/apply", {"project": str(daemon.root / "a" / "appliance.toml")}).raise_for_status()
    # Every other plugin takes this file; the feature store, asked last, refuses its view's unknown entity.
    bad = project_file(daemon.root / "c", "c", entity="ghost")
    r = daemon.post("/apply", {"project": str(bad)})
    assert r.status_code == 400 and "'ghost'" in r.json()["error"]["message"], r.text
    assert configuration(daemon) == expected("a", daemon.root / "a")
    out = daemon.cli("apply", str(daemon.root / "b"))  # the CLI as a user runs it, after the refusal
    assert out.returncode == 0, out.stderr
    assert configuration(daemon) == expected("b", daemon.root / "b")
