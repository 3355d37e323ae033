"""The task layer: functions registered as tasks, jobs stored in a queue directory, and
a worker pool that runs them with at-least-once delivery (SPEC §7).

One concept per module: :mod:`.taskqueue` (the public entry point: registering,
enqueueing, dead letters, workers) on top of :mod:`.jobstore` (the directory's engine,
job ids, job records, paged scans), which every other module uses; :mod:`.layout` (the
on-disk layout), :mod:`.enqueue` (calls into job records), :mod:`.task` and
:mod:`.options` (a registered function), :mod:`.job` (a job and its states),
:mod:`.deadletters`, :mod:`.stats`, :mod:`.retry`, :mod:`.ratelimit`, :mod:`.cron`,
:mod:`.periodic`, :mod:`.middleware`, :mod:`.context`; :mod:`.app` (what the worker needs
of a TaskQueue) and :mod:`.worker` (the runner, the pools, the scheduler, start and stop).
"""

from .context import current_job_id, set_progress
from .job import STATES, Job, UnknownJob
from .middleware import Middleware
from .retry import Retry
from .task import AsyncTaskFunction, TaskFunction, TaskOptions
from .taskqueue import TaskQueue
from .worker.outcome import TaskError
from .worker.worker import Worker

__all__ = [
    "STATES", "AsyncTaskFunction", "Job", "Middleware", "Retry", "TaskError", "TaskFunction",
    "TaskOptions",
    "TaskQueue", "UnknownJob", "Worker", "current_job_id", "set_progress",
]
