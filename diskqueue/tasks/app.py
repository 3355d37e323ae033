"""``TaskApp``: what the worker needs of a TaskQueue, written down as a Protocol.

The worker's parts (:mod:`.worker`) run the tasks of a TaskQueue without importing it:
they are given anything with its registry, hooks, store and queue names.
"""

from __future__ import annotations

from typing import Protocol

from .jobstore import HasStore
from .middleware import Hooks
from .task import TaskFunction


class TaskApp(HasStore, Protocol):
    """The tasks a worker runs and the directory they run against."""

    registry: dict[str, TaskFunction]
    hooks: Hooks

    def queue_names(self) -> list[str]:
        """Queues of registered tasks, then any other queue the directory holds."""
