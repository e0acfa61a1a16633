"""``appliance backup``, ``backup verify`` and ``restore``.

``backup`` asks the daemon (only it may open the stores); ``verify`` and ``restore`` work on files alone and
need no daemon, because they are what you run when the box is gone.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from appliance import ApplianceError
from appliance.cli import connect
from appliance.cli.output import emit_json, json_option


@click.group(invoke_without_command=True)
@click.option("--to", "to", type=click.Path(file_okay=False, path_type=Path),
              help="Write the backup here (a new or empty directory) instead of the home's backups/.")
@json_option
@click.pass_context
def backup(ctx, to, as_json):
    """Take a consistent backup of the running daemon (catalog, store, artifacts), or verify one."""
    if ctx.invoked_subcommand is not None:
        return
    c = connect(ctx)
    job = c.post("/jobs", {"kind": "backup", "params": {"to": str(to.resolve())} if to else {}})
    job = c.wait_job(job)
    if job["state"] != "succeeded":
        raise ApplianceError(f"backup job {job['id']} {job['state']}: {job.get('error') or 'no result'}",
                             title="Backup failed")
    result = job["result"]
    if as_json:
        return emit_json(result)
    click.echo(f"backup written to {result['path']}: {result['files']} files, {_size(result['bytes'])}, "
               f"{result['artifacts']} artifacts, in {result['seconds']:.1f} s")
    for digest in result.get("damaged_artifacts", []):
        click.echo(f"warning: artifact {digest} in the home does not match its hash, so it was left out of this "
                   "backup; an older backup may hold it intact", err=True)
    if result.get("pruned"):
        click.echo(f"removed old backups: {', '.join(result['pruned'])}")


@backup.command("verify")
@click.argument("directory", type=click.Path(path_type=Path))
@json_option
def verify(directory, as_json):
    """Re-hash every file of the backup in DIRECTORY against its manifest and list each one that fails (no
    daemon needed); exits 1 if any does."""
    from .manifest import check, describe

    data, problems = check(directory)
    if as_json:
        emit_json({"ok": not problems, "path": str(directory.resolve()), "files": len(data["files"]),
                   "bytes": data["bytes"], "tables": data["tables"], "problems": problems})
    elif problems:
        click.echo(f"{directory}: {len(problems)} file(s) failed verification:", err=True)
        for p in problems:
            click.echo(f"  {describe(p)}", err=True)
    else:
        click.echo(f"{directory}: ok, {len(data['files'])} files ({_size(data['bytes'])}) match the manifest")
    if problems:
        sys.exit(1)


#: ``restore``'s exit status when it restored everything that verified but left some files out.
RESTORED_IN_PART = 4


@click.command()
@click.argument("directory", type=click.Path(path_type=Path))
@click.option("--home", "home", type=click.Path(file_okay=False, path_type=Path),
              help="The empty home to restore into (default: the --home given to appliance, or the default).")
@json_option
@click.pass_context
def restore(ctx, directory, home, as_json):
    """Restore the backup in DIRECTORY into an empty home (no daemon needed). Every file is verified first;
    files that fail are left out and listed, and the exit status is then 4."""
    from .manifest import describe
    from .restore import restore as run

    target = Path(home or ctx.find_root().obj["home"]).expanduser().resolve()
    data = run(directory, target)
    problems = data["problems"]
    if as_json:
        emit_json({"home": str(target), "files": data["files"], "tables": data["tables"],
                   "problems": problems, "empty_tables": data["empty_tables"]})
    else:
        click.echo(f"restored {directory} into {target}{' in part' if problems else ''}; start it with "
                   f"`appliance --home {target} up`")
        if problems:
            click.echo(f"{len(problems)} file(s) failed verification and were left out:", err=True)
            for p in problems:
                click.echo(f"  {describe(p)}", err=True)
        if data["empty_tables"]:
            click.echo(f"tables restored empty (their file was left out): {', '.join(data['empty_tables'])}",
                       err=True)
    if problems:
        sys.exit(RESTORED_IN_PART)


def _size(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            break
        size /= 1024
    return f"{n} B" if unit == "B" else f"{size:.1f} {unit}"
