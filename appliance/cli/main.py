"""``appliance``: the command line. ``up`` runs the daemon; every other command asks it over the control API."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import click

from .. import __version__
from ..errors import ApplianceError, DaemonNotRunning
from ..home import Home, default_home
from .output import emit_json, json_option, table, when


class ApplianceGroup(click.Group):
    """Built-in commands first; plugins' commands (``register_commands``) are loaded only when asked for."""

    _plugin_commands: dict[str, click.Command] | None = None

    def _plugins(self, ctx: click.Context) -> dict[str, click.Command]:
        if self._plugin_commands is None:
            from ..host import PluginHost

            # Commands are resolved before the group callback runs, so read --home from the parsed params.
            home = Home(ctx.params.get("home") or default_home())
            # Drop-ins come from the home and the running daemon's project only, never from the current
            # directory: `appliance --help` inside a cloned repository must not run that repository's code.
            # The project's [plugins] allow/deny apply here as in the daemon: a plugin kept out is not imported.
            dirs, allow, deny, third_party = [home.plugins_dir], [], [], True
            try:
                project = home.read_daemon_info().get("project")
            except ApplianceError:
                project = None
            if project:
                from ..config import load

                try:
                    plugs = load(project).plugins
                    allow, deny = plugs.get("allow", []), plugs.get("deny", [])
                    dirs.append(Path(project) / "plugins")
                except ApplianceError:
                    third_party = False  # an unreadable allow-list allows nothing
            host = PluginHost(allow=allow, deny=deny)
            host.load_all(dropin_dirs=list(dict.fromkeys(dirs)) if third_party else [], entry_points=third_party)
            self._plugin_commands = {}
            for name, cmd in host.registries["commands"].items():
                if name not in self.commands:
                    self._plugin_commands[name] = cmd
        return self._plugin_commands

    def list_commands(self, ctx):
        return sorted(set(super().list_commands(ctx)) | set(self._plugins(ctx)))

    def get_command(self, ctx, name):
        return super().get_command(ctx, name) or self._plugins(ctx).get(name)


def client(ctx: click.Context):
    """A control API client for the home this command was given (also for plugins' commands)."""
    from .client import Client

    return Client(ctx.find_root().obj["home"])


@click.group(cls=ApplianceGroup, invoke_without_command=True)
@click.option("--home", type=click.Path(file_okay=False, path_type=Path), envvar="APPLIANCE_HOME",
              help="The daemon's home (default: $APPLIANCE_HOME or ~/.local/share/appliance).")
@click.version_option(__version__, prog_name="appliance")
@click.pass_context
def cli(ctx: click.Context, home: Path | None) -> None:
    """An ML platform in one box: one daemon, one dashboard, your data never lost."""
    ctx.ensure_object(dict)
    ctx.obj["home"] = home or default_home()
    if ctx.invoked_subcommand is None:
        if sys.stdin.isatty() and sys.stdout.isatty():
            ctx.invoke(tui)
        else:
            click.echo(ctx.get_help())


@cli.command()
@click.option("--readonly", is_flag=True, help="Look only: every action is refused.")
@click.pass_context
def tui(ctx: click.Context, readonly: bool) -> None:
    """The dashboard: attach to the daemon (or offer to start it) and watch the box live."""
    # Imported here: the dashboard (textual) is not the core's business and must not slow other commands.
    from tui import run

    run(Path(ctx.obj["home"]), readonly=readonly)


# --------------------------------------------------------------------------------------------- lifecycle


@cli.command()
@click.option("--project", type=click.Path(path_type=Path),
              help="Project directory or appliance.toml (default: the current directory, if it has one).")
@click.option("--host", help="Address for the control API (default 127.0.0.1).")
@click.option("--port", type=int, help="Port for the control API (default 7870; 0 picks a free one).")
@click.option("--allow-remote", is_flag=True, help="Allow a non-loopback --host (the token still applies).")
@click.pass_context
def up(ctx, project, host, port, allow_remote):
    """Run the daemon in the foreground (systemd-friendly; logs to stderr and the home's logs/)."""
    from ..daemon import run

    if project is None and (Path.cwd() / "appliance.toml").is_file():
        project = Path.cwd()
    sys.exit(run(ctx.obj["home"], project=project, host=host, port=port, allow_remote=allow_remote))


@cli.command()
@click.option("--timeout", default=60.0, show_default=True, help="Seconds to wait for the daemon to exit.")
@click.pass_context
def down(ctx, timeout):
    """Stop the daemon gracefully: it finishes running jobs (up to its drain time) and exits."""
    from ..health import disk_full, disk_is_full
    from ..home import pid_alive

    c = client(ctx)
    pid = c.info["pid"]
    c.post("/shutdown")
    deadline = time.monotonic() + timeout
    while pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    if pid_alive(pid):
        raise ApplianceError(f"the daemon (pid {pid}) is still draining after {timeout:g} s", title="Still running")
    click.echo(f"stopped daemon (pid {pid})")
    if disk_is_full(c.home.root):
        full = disk_full(c.home.root, "the daemon closed its stores, but its last events and log lines may be lost",
                         then="before `appliance up`")
        click.echo(f"warning: {full.message}", err=True)


@cli.command()
@json_option
@click.pass_context
def status(ctx, as_json):
    """What the daemon is doing: health (and how to repair what is damaged), version, uptime, plugins, jobs."""
    c = client(ctx)
    s, health = c.get("/status"), c.get("/health")
    if as_json:
        return emit_json({**s, "health": health})
    click.echo(f"health: {health['status']}")
    for p in health.get("problems", []):
        click.echo(f"  {p['level']}: {p['problem']}\n    remedy: {p['remedy']}")
    click.echo(f"appliance {s['version']}  pid {s['pid']}  up {s['uptime_s']:.0f} s  home {s['home']}")
    click.echo(f"control API port {s['ports'].get('control')}   project {s['project'] or '-'}")
    p = s["plugins"]
    click.echo(f"plugins: {p['loaded']} loaded, {p['failed']} not loaded, {p['failures']} failure(s) recorded")
    jobs = ", ".join(f"{n} {k}" for k, n in sorted(s["jobs"].items())) or "none"
    click.echo(f"jobs: {jobs}")


@cli.command()
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path), default=".")
def init(directory: Path):
    """Create a project: an appliance.toml to keep in git, plus plugins/ and data/ folders."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "appliance.toml"
    if path.exists():
        raise ApplianceError(f"{path} already exists; edit it, or init another directory", title="Exists")
    from ..scaffold import PROJECT_TEMPLATE

    path.write_text(PROJECT_TEMPLATE)
    (directory / "plugins").mkdir(exist_ok=True)
    (directory / "data").mkdir(exist_ok=True)
    click.echo(f"created {path}: each section is commented; every key is in docs/config.md")
    click.echo(f"start the daemon with `appliance up --project {directory}`, then `appliance apply` after edits")




@cli.command()
@click.argument("project", type=click.Path(path_type=Path), required=False)
@click.option("--dry-run", is_flag=True, help="Check the file and show what would change, key by key; change nothing.")
@json_option
@click.pass_context
def apply(ctx, project, dry_run, as_json):
    """Check the project's appliance.toml and apply it to the running daemon (all or nothing)."""
    from .. import config as config_mod

    if project is not None:
        project = project.resolve()
        config_mod.load(project)  # a mistake is reported here, with file, line and key, before the daemon sees it
    result = client(ctx).post("/apply", {"project": str(project) if project else None, "dry_run": dry_run})
    if as_json:
        return emit_json(result)
    if dry_run:
        click.echo(f"{result['path']}: {len(result['changes'])} change(s) would be applied (nothing changed yet)")
        for c in result["changes"]:
            shown = {"added": f"+ {c['key']} = {c.get('to')!r}", "removed": f"- {c['key']} (was {c.get('from')!r})",
                     "changed": f"~ {c['key']}: {c.get('from')!r} -> {c.get('to')!r}"}[c["change"]]
            click.echo(f"  {shown}")
    else:
        click.echo(f"applied {result['path']}; changed: {', '.join(result['changed']) or 'nothing'}")
    if result["note"]:
        click.echo(result["note"])


# --------------------------------------------------------------------------------------------- plugins


@cli.command()
@json_option
@click.pass_context
def plugins(ctx, as_json):
    """Plugins the daemon loaded or refused, the hooks each implements, and recorded failures."""
    report = client(ctx).get("/plugins")
    if as_json:
        return emit_json(report)
    rows = [(p["name"], p["source"], p["status"], p["version"] or "-", ", ".join(p["hooks"]) or "-")
            for p in report["plugins"]]
    table(rows, ["NAME", "SOURCE", "STATUS", "VERSION", "HOOKS"])
    for p in report["plugins"]:
        if p["error"]:
            click.echo(f"\n{p['name']}: {p['error']}")
        if p["status"] == "failed" and p.get("traceback"):
            # The end of the traceback says where it broke; --json has all of it.
            for line in p["traceback"].rstrip().splitlines()[-12:]:
                click.echo(f"    {line}")
    if report["failures"]:
        click.echo("\nfailures (newest last; --json for tracebacks):")
        for f in report["failures"][-20:]:
            click.echo(f"  {when(f['time'])}  {f['plugin']}  {f['hook']}: {f['message']}")
    for w in report["warnings"]:
        click.echo(f"warning: {w}")


@cli.group("plugin")
def plugin_group():
    """Write, install and reload plugins: new, install, reload."""


@plugin_group.command("install")
@click.argument("spec")
@click.pass_context
def plugin_install(ctx, spec):
    """pip install SPEC (a package, requirement or path) into the daemon's environment and load its plugins."""
    from .client import Client

    if Path(spec).exists():
        spec = str(Path(spec).resolve())  # the daemon's working directory is not this one
    result = Client(ctx.find_root().obj["home"], timeout=660).post("/plugins/install", {"spec": spec})
    _show_loaded(result["plugins"])
    if result["note"]:
        click.echo(result["note"])


@plugin_group.command("reload")
@click.argument("name")
@click.pass_context
def plugin_reload(ctx, name):
    """Read the drop-in plugin NAME again from its file, without restarting the daemon."""
    _show_loaded([client(ctx).post(f"/plugins/{name}/reload")])


def _show_loaded(records: list[dict]) -> None:
    for p in records:
        click.echo(f"{p['name']}: {p['status']}" + (f" ({p['error']})" if p["error"] else ""))
        if p["status"] == "failed" and p.get("traceback"):
            for line in p["traceback"].rstrip().splitlines()[-12:]:
                click.echo(f"    {line}")


@plugin_group.command("new")
@click.argument("name")
@click.option("--dir", "directory", type=click.Path(file_okay=False, path_type=Path), default=".",
              show_default=True, help="Where to create the package directory NAME/.")
def plugin_new(name, directory):
    """Scaffold an installable plugin package NAME: entry point, one example per hook kind, tests."""
    from ..scaffold import new_plugin

    root = new_plugin(name, directory)
    click.echo(f"created {root}; install it with `pip install -e {root}`, test it with `pytest {root}`")


# --------------------------------------------------------------------------------------------- jobs


@cli.group(invoke_without_command=True)
@click.option("--state", type=click.Choice(["queued", "running", "succeeded", "failed", "cancelled"]))
@click.option("--kind")
@click.option("--limit", default=50, show_default=True)
@json_option
@click.pass_context
def jobs(ctx, state, kind, limit, as_json):
    """List jobs (newest first), or act on one: show, logs, cancel, submit."""
    if ctx.invoked_subcommand is not None:
        return
    rows = client(ctx).get("/jobs", state=state, kind=kind, limit=limit)
    if as_json:
        return emit_json(rows)
    table([(j["id"], j["kind"], j["state"], f"{j['progress'] * 100:.0f}%", f"{j['attempt']}/{j['max_attempts']}",
            when(j["created"]), (j["error"] or j["message"] or "")[:60]) for j in rows],
          ["ID", "KIND", "STATE", "PROGRESS", "ATTEMPT", "CREATED", "MESSAGE"])


@jobs.command("show")
@click.argument("job_id", type=int)
@json_option
@click.pass_context
def jobs_show(ctx, job_id, as_json):
    """One job in full."""
    j = client(ctx).get(f"/jobs/{job_id}")
    if as_json:
        return emit_json(j)
    for key in ("id", "kind", "state", "progress", "message", "attempt", "max_attempts", "params", "result",
                "error"):
        click.echo(f"{key:>13}: {j[key]}")
    for key in ("created", "started", "finished"):
        click.echo(f"{key:>13}: {when(j[key])}")


@jobs.command("logs")
@click.argument("job_id", type=int)
@json_option
@click.pass_context
def jobs_logs(ctx, job_id, as_json):
    """A job's log lines."""
    lines = client(ctx).get(f"/jobs/{job_id}/logs", limit=100_000)
    if as_json:
        return emit_json(lines)
    for entry in lines:
        click.echo(entry["line"])


@jobs.command("cancel")
@click.argument("job_id", type=int)
@json_option
@click.pass_context
def jobs_cancel(ctx, job_id, as_json):
    """Cancel a queued or running job."""
    j = client(ctx).post(f"/jobs/{job_id}/cancel")
    if as_json:
        return emit_json(j)
    click.echo(f"job {job_id}: {j['state']}" + (" (cancel requested)" if j["state"] == "running" else ""))


@jobs.command("submit")
@click.argument("kind")
@click.option("--param", "-p", multiple=True, help="KEY=VALUE (VALUE parsed as JSON when it can be).")
@click.option("--retries", type=int)
@click.option("--timeout", "timeout_s", type=float)
@click.option("--wait", is_flag=True, help="Wait for the job to finish; exit non-zero if it fails.")
@json_option
@click.pass_context
def jobs_submit(ctx, kind, param, retries, timeout_s, wait, as_json):
    """Queue a job of a registered kind."""
    import json as _json

    params = {}
    for item in param:
        key, sep, value = item.partition("=")
        if not sep:
            raise click.BadParameter(f"expected KEY=VALUE, got {item!r}", param_hint="--param")
        try:
            params[key] = _json.loads(value)
        except ValueError:
            params[key] = value
    c = client(ctx)
    j = c.post("/jobs", {"kind": kind, "params": params, "retries": retries, "timeout_s": timeout_s})
    if wait:
        j = c.wait_job(j)
    if as_json:
        emit_json(j)
    else:
        click.echo(f"job {j['id']} ({kind}): {j['state']}" + (f": {j['error']}" if j.get("error") else ""))
    if wait and j["state"] != "succeeded":
        sys.exit(1)


# --------------------------------------------------------------------------------------------- events


@cli.command()
@click.option("--follow", "-f", is_flag=True, help="Keep printing new events as they happen.")
@click.option("--type", "type_", help="Only events of this type (prefix with * wildcards, e.g. 'job.*').")
@click.option("--limit", default=50, show_default=True)
@json_option
@click.pass_context
def events(ctx, follow, type_, limit, as_json):
    """Recent events, oldest first; --follow streams new ones."""
    c = client(ctx)
    recent = c.get("/events", limit=limit, type=type_)
    if type_ is None:
        recent = recent[-limit:]

    def show(e: dict) -> None:
        if as_json:
            import json as _json

            click.echo(_json.dumps(e, default=str))
        else:
            click.echo(f"{e['id']:>7}  {when(e['time'])}  {e['type']:<22} {e['subject']:<16} {e['data']}")

    for e in recent:
        show(e)
    if follow:
        last = recent[-1]["id"] if recent else None
        prefix = type_.rstrip("*%") if type_ else None
        for e in c.stream_events(after=last, types=prefix):
            show(e)


def main() -> None:
    try:
        cli(standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except DaemonNotRunning as exc:
        click.echo(f"error: {exc.message}", err=True)
        sys.exit(3)
    except ApplianceError as exc:
        click.echo(f"error: {exc.title}: {exc.message}", err=True)
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)
    except BrokenPipeError:
        os._exit(0)
