"""The task layer: functions registered as tasks, jobs stored in a queue directory, and
a worker pool that runs them with at-least-once delivery (SPEC §7).

One concept per module: :mod:`.taskqueue` (registering, enqueueing, dead letters),
:mod:`.task` (a registered function), :mod:`.job` (a job and its states), :mod:`.records`
(the on-disk layout), :mod:`.runner` (running one job), :mod:`.pools` and
:mod:`.procpool` (thread, async and process pools), :mod:`.scheduler` (delays, retries,
periodic ticks), :mod:`.worker` (start and stop order), :mod:`.runloop` (signals),
:mod:`.retry`, :mod:`.ratelimit`, :mod:`.cron`, :mod:`.periodic`, :mod:`.middleware`,
:mod:`.stats`.
"""

from .context import current_job_id, set_progress
from .job import STATES, Job, UnknownJob
from .middleware import Middleware
from .retry import Retry
from .task import TaskFunction, TaskOptions
from .taskqueue import TaskQueue
from .worker.outcome import TaskError
from .worker.worker import Worker

__all__ = [
    "STATES", "Job", "Middleware", "Retry", "TaskError", "TaskFunction", "TaskOptions",
    "TaskQueue", "UnknownJob", "Worker", "current_job_id", "set_progress",
]
