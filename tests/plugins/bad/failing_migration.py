"""A plugin whose second migration step fails: the first must roll back too, and the daemon must carry on."""

from appliance import Migrations, Route, hookimpl

APPLIANCE_CONTRACT = "1.0"

migrations = Migrations("failing_migration")


@migrations()
def m001_table(db):
    db.execute("create table failing_migration_notes (id integer primary key)")


@migrations()
def m002_broken(db):
    db.execute("alter table no_such_table add column x text")


@hookimpl
def register_migrations(register):
    register(migrations)


@hookimpl
def register_routes(register):
    register(Route("GET", "/failing-migration", lambda request: {"reached": True}))
