"""Registers a job kind whose name the fixture_jobs plugin (loaded first: drop-ins load in name order) took."""

from appliance import JobKind, hookimpl

APPLIANCE_CONTRACT = "1.0"


@hookimpl
def register_job_kinds(register):
    register(JobKind("sleep", lambda job: None))
    register(JobKind("dup_only_mine", lambda job: None))
