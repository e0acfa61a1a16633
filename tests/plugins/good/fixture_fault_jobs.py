"""A drop-in plugin for the fault tests: a job kind that fails at the moment the test chooses.

``fail_when`` touches nothing of the daemon's (no progress, no log) before it fails, so the first catalog
write its thread makes is the record of its failure: the write the fault tests make fail.
"""

from pathlib import Path

from appliance import JobKind, hookimpl

APPLIANCE_CONTRACT = "1.0"


def _fail_when(job):
    """Waits until the file ``params.marker`` exists (or is cancelled), then fails."""
    marker = Path(job.params["marker"])
    while not marker.exists():
        if job.wait(0.02):
            job.check_cancelled()
    raise RuntimeError("failed on purpose")


@hookimpl
def register_job_kinds(register):
    register(JobKind("fail_when", _fail_when, description="fails once params.marker exists"))
