"""The demo a newcomer runs first: `appliance demo --headless` from a fresh home, every figure checked."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from appliance.cli.client import Client


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    home = tmp_path_factory.mktemp("demo") / "home"
    out = subprocess.run([sys.executable, "-m", "appliance", "demo", "--headless", "--seconds", "60", "--json",
                          "--keep", "--demo-home", str(home)], capture_output=True, text=True, timeout=600)
    client = Client(home) if (home / "daemon.json").exists() else None
    yield out, client, home
    if client is not None:
        client.post("/shutdown")


def test_demo_headless_passes_from_a_fresh_home(demo):
    out, client, _ = demo
    assert out.returncode == 0, out.stderr[-3000:]
    summary = json.loads(out.stdout.strip().splitlines()[-1])
    assert summary["failed"] == []
    assert "Traceback" not in out.stderr


def test_every_summary_figure_matches_the_catalog(demo):
    out, client, home = demo
    summary = json.loads(out.stdout.strip().splitlines()[-1])
    source = client.get("/sources/transactions")
    assert summary["rows_ingested"] == source["rows"] > 30_000
    rows = client.get("/sources/transactions/quarantine", limit=10_000)
    assert summary["rows_quarantined"] == source["quarantined_rows"] == len(rows) == 120  # the generator spoils 120
    assert {r["rule"] for r in rows} >= {"min", "not_null"}
    model = client.get("/models/fraud")
    champion = [v for v in model["versions"] if "champion" in v["aliases"]]
    assert [v["version"] for v in champion] == [summary["model_version"]]
    assert summary["auc"] == round(champion[0]["metrics"]["auc"], 4)
    assert summary["auc"] > 0.65  # the seeded data carries real signal
    dep = client.get("/deployments/fraud")
    assert summary["requests_served"] == dep["requests"] > 100
    assert summary["p99_ms"] == dep["p99_ms"]
    assert summary["alerts_raised"] == len(client.get("/events", type="alert.raised", after=0, limit=100_000))
    logged = client.get("/predictions", deployment="fraud", limit=10_000)
    assert len(logged) >= summary["requests_served"]  # one row per instance; requests carry 1 to 3
    assert summary["bad_requests_sent"] >= 0
