"""Hooks around enqueue and run, so metrics and logging plug in without patching.

Subclass :class:`Middleware`, override the hooks you need, and pass an instance to
``TaskQueue(..., middleware=[...])`` or ``tasks.add_middleware(...)``. Hooks run in the
process and thread that does the work (the enqueuer, or the worker thread that runs the
job). An exception from ``before_enqueue`` cancels the enqueue (nothing is written);
exceptions from the other hooks are logged and ignored.

``after_run``, ``on_retry`` and ``on_dead`` also get ``duration``, the seconds the run
took, as a keyword argument, when the hook names a ``duration`` parameter (or takes
``**kwargs``): a hook written without it is called as before.
"""

from __future__ import annotations

import inspect
import logging
from typing import TYPE_CHECKING, Any, Optional

if TYPE_CHECKING:
    from .job import Job

log = logging.getLogger("diskqueue.tasks")

HOOKS = ("before_enqueue", "after_enqueue", "before_run", "after_run", "on_retry", "on_dead")
TIMED = ("after_run", "on_retry", "on_dead")  # the hooks that may get ``duration=``


class Middleware:
    """No-op hooks; override any of them."""

    def before_enqueue(self, job: Job) -> None:
        """Before the job is written. Raising cancels the enqueue."""

    def after_enqueue(self, job: Job) -> None:
        """After the job is written (not called when ``unique_key`` found an existing job)."""

    def before_run(self, job: Job) -> None:
        """In the worker, just before the task function is called."""

    def after_run(self, job: Job, result: Any = None, error: Optional[BaseException] = None,
                  duration: Optional[float] = None) -> None:
        """In the worker, after the call returned (``error`` None) or raised;
        ``duration``: the seconds the call took."""

    def on_retry(self, job: Job, error: BaseException, delay: float,
                 duration: Optional[float] = None) -> None:
        """A failed attempt (that took ``duration`` seconds) will be retried in ``delay``
        seconds."""

    def on_dead(self, job: Job, error: BaseException, duration: Optional[float] = None
                ) -> None:
        """The last attempt failed (after ``duration`` seconds): the job went to the
        dead-letter set."""


def takes_duration(method: Any) -> bool:
    """True when ``method`` can be called with ``duration=`` (it names the parameter or
    takes ``**kwargs``); False too when its signature cannot be read."""
    try:
        params = inspect.signature(method).parameters.values()
    except (TypeError, ValueError):
        return False
    return any(p.kind is p.VAR_KEYWORD or (p.name == "duration" and p.kind in (
        p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)) for p in params)


class Hooks:
    """The middleware list, and a cheap ``emit`` when no middleware defines a hook."""

    def __init__(self) -> None:
        self.items: list[Any] = []
        # (method, whether it is given duration=) per hook
        self._by_hook: dict[str, list[tuple[Any, bool]]] = {name: [] for name in HOOKS}

    def add(self, middleware: Any) -> None:
        """Add a middleware: an object with any of the hook methods (TypeError when it
        has none)."""
        if not any(callable(getattr(middleware, name, None)) for name in HOOKS):
            raise TypeError(f"{middleware!r} defines none of the hooks {', '.join(HOOKS)}")
        self.items.append(middleware)
        for name in HOOKS:
            method = getattr(middleware, name, None)
            base = getattr(Middleware, name)
            if callable(method) and getattr(method, "__func__", None) is not base:
                timed = name in TIMED and takes_duration(method)
                self._by_hook[name].append((method, timed))

    def wants(self, name: str) -> bool:
        """True when some middleware defines the hook ``name``."""
        return bool(self._by_hook[name])

    def emit(self, name: str, *args: Any, duration: Optional[float] = None) -> None:
        """Call the hook ``name`` of each middleware defining it, with ``duration=`` for
        the hooks that take it. ``before_enqueue`` raises what a hook raises; other
        hooks' errors are logged and ignored."""
        for method, timed in self._by_hook[name]:
            if name == "before_enqueue":
                method(*args)
                continue
            try:
                if timed:
                    method(*args, duration=duration)
                else:
                    method(*args)
            except Exception:
                log.exception("middleware hook %s of %r failed", name,
                              getattr(method, "__self__", method))
