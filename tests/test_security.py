"""The control API's defences: token, Host, Origin, loopback binding, no leaks in errors."""

from __future__ import annotations

import os
import stat
import subprocess
import sys

import httpx
import pytest
from conftest import make_project

from appliance.testing import DaemonProcess


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    root = tmp_path_factory.mktemp("security")
    project = make_project(root / "project", ["good/fixture_jobs"], '[daemon]\nallowed_hosts = ["box.lan"]\n')
    with DaemonProcess(root / "home", project) as d:
        yield d


def raw(daemon, method, path, headers=None, **kw):
    with httpx.Client(base_url=daemon.url) as c:
        return c.request(method, "/api/v1" + path, headers=headers or {}, **kw)


def auth(daemon, **extra):
    return {"Authorization": f"Bearer {daemon.token}", **extra}


def test_no_token_is_401(daemon):
    r = raw(daemon, "GET", "/status")
    assert r.status_code == 401
    assert r.json()["error"]["title"] == "Unauthorized"
    assert r.headers["www-authenticate"] == "Bearer"


def test_wrong_token_is_401(daemon):
    assert raw(daemon, "GET", "/status", {"Authorization": "Bearer nope"}).status_code == 401
    assert raw(daemon, "GET", "/status", {"Authorization": daemon.token}).status_code == 401


def test_right_token_is_200(daemon):
    assert raw(daemon, "GET", "/status", auth(daemon)).status_code == 200


def test_foreign_host_is_403_even_with_the_token(daemon):
    r = raw(daemon, "GET", "/status", auth(daemon, Host="evil.example"))
    assert r.status_code == 403
    assert "evil.example" in r.json()["error"]["message"]


def test_loopback_hosts_with_any_port_pass(daemon):
    for host in ("localhost", "127.0.0.1:1234", "[::1]:80", "localhost:9"):
        assert raw(daemon, "GET", "/health", auth(daemon, Host=host)).status_code == 200, host


@pytest.mark.parametrize("host", ["127.0.0.1.nip.io", "127.0.0.1.nip.io:80", "127.evil.example", "localhost.evil.example",
                                  "127.0.0.1evil", "[::1].evil.example", "box.lan.evil.example"])
def test_names_that_only_start_like_loopback_are_403(daemon, host):
    # DNS rebinding: a page served from 127.0.0.1.nip.io resolves to 127.0.0.1, but its Host names the attacker.
    r = raw(daemon, "GET", "/status", auth(daemon, Host=host))
    assert r.status_code == 403, host
    assert r.json()["error"]["title"] == "Forbidden host"
    r = raw(daemon, "POST", "/jobs", auth(daemon, Origin=f"http://{host}"), json={"kind": "sleep"})
    assert r.status_code == 403, host


def test_loopback_addresses_localhost_and_allowed_hosts_pass(daemon):
    for host in ("127.5.6.7", "127.255.255.254:8080", "[::1]", "LOCALHOST", "box.lan", "box.lan:7870"):
        assert raw(daemon, "GET", "/health", auth(daemon, Host=host)).status_code == 200, host
    r = raw(daemon, "POST", "/jobs", auth(daemon, Origin="http://box.lan:7870"),
            json={"kind": "sleep", "params": {"seconds": 0}})
    assert r.status_code == 202


def test_cross_site_post_and_delete_are_403(daemon):
    for method in ("POST", "DELETE", "PUT"):
        r = raw(daemon, method, "/jobs", auth(daemon, Origin="https://evil.example"), json={"kind": "sleep"})
        assert r.status_code == 403, method
        assert r.json()["error"]["title"] == "Cross-site request"
    r = raw(daemon, "POST", "/jobs", auth(daemon, **{"Sec-Fetch-Site": "cross-site"}), json={"kind": "sleep"})
    assert r.status_code == 403
    assert raw(daemon, "POST", "/jobs", auth(daemon, Origin="null"), json={"kind": "sleep"}).status_code == 403


def test_same_origin_post_is_allowed(daemon):
    r = raw(daemon, "POST", "/jobs", auth(daemon, Origin=daemon.url), json={"kind": "sleep", "params": {"seconds": 0}})
    assert r.status_code == 202


def test_no_cors_headers(daemon):
    r = raw(daemon, "OPTIONS", "/jobs", auth(daemon, Origin="https://evil.example",
                                             **{"Access-Control-Request-Method": "POST"}))
    assert not any(h.lower().startswith("access-control-") for h in r.headers)
    r = raw(daemon, "GET", "/status", auth(daemon, Origin="https://evil.example"))
    assert "access-control-allow-origin" not in r.headers


def test_token_file_is_private(daemon):
    mode = stat.S_IMODE(os.stat(daemon.home / "token").st_mode)
    assert mode == 0o600
    assert daemon.token not in daemon.stderr()
    assert daemon.token not in (daemon.home / "logs" / "daemon.log").read_text()


def test_default_bind_is_loopback(daemon):
    assert daemon.info["host"] == "127.0.0.1"
    assert daemon.url.startswith("http://127.0.0.1:")


def test_non_loopback_bind_without_flag_refuses_to_start(tmp_path):
    out = subprocess.run([sys.executable, "-m", "appliance", "--home", str(tmp_path / "h"), "up", "--host",
                          "0.0.0.0", "--port", "0"], capture_output=True, text=True, timeout=30)
    assert out.returncode != 0
    assert "refusing to listen on '0.0.0.0'" in out.stderr and "--allow-remote" in out.stderr
    assert "Traceback" not in out.stderr
    assert not (tmp_path / "h" / "daemon.json").exists()


def test_errors_are_json_without_paths_or_tracebacks(daemon):
    r = raw(daemon, "GET", "/fixture/boom", auth(daemon))
    assert r.status_code == 500
    body = r.json()["error"]
    assert body["title"] == "Internal error"
    assert "/secret/path" not in r.text and "Traceback" not in r.text
    r = raw(daemon, "GET", "/no/such/route", auth(daemon))
    assert (r.status_code, r.json()["error"]["title"]) == (404, "Not found")
    r = raw(daemon, "POST", "/jobs", auth(daemon), content=b"{not json")
    assert r.status_code == 400
    assert "not valid JSON" in r.json()["error"]["message"]
    r = raw(daemon, "POST", "/jobs", auth(daemon), json={"kind": "nope"})
    assert r.status_code == 404 and "unknown job kind 'nope'" in r.json()["error"]["message"]


HUGE = str(2**64)


@pytest.mark.parametrize("path, params, named", [
    ("/jobs", {"before": HUGE}, "'before'"),
    ("/jobs/1/logs", {"after": HUGE}, "'after'"),
    ("/events", {"after": HUGE}, "'after'"),
    ("/events/stream", {"after": HUGE}, "'after'"),
    ("/runs", {"sweep": HUGE}, "'sweep'"),
    ("/runs/compare", {"a": HUGE, "b": "1"}, "'a'"),
    ("/runs/1/metrics", {"after": HUGE}, "'after'"),
    ("/alerts", {"limit": HUGE}, "'limit'"),
    ("/jobs/" + HUGE, {}, "id"),
    ("/jobs/" + HUGE + "/logs", {}, "id"),
    ("/batches/" + HUGE, {}, "id"),
    ("/runs/" + HUGE, {}, "id"),
    ("/sweeps/" + HUGE, {}, "id"),
    ("/alerts/" + HUGE, {}, "id"),
    ("/training-sets/" + HUGE, {}, HUGE),
])
def test_integers_beyond_64_bits_are_a_400_naming_the_parameter(daemon, path, params, named):
    failures = len(daemon.get("/plugins").json()["failures"])
    r = daemon.get(path, params=params)
    assert r.status_code in (400, 404), r.text
    assert named in r.json()["error"]["message"]
    assert len(daemon.get("/plugins").json()["failures"]) == failures  # nothing recorded as a plugin failure
