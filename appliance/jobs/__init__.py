"""Jobs: all long work, queued, run, retried, cancelled and recorded by one runner."""

from .handle import Cancelled, JobHandle
from .runner import JobRunner

__all__ = ["Cancelled", "JobHandle", "JobRunner"]
