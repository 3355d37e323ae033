"""A web dashboard for a queue or task directory (``diskq dashboard PATH``; extra ``web``).

:class:`Dashboard` serves it from background threads; :func:`serve` until a signal.
The page shows every queue's counts and an hour of charts, pages through jobs and dead
letters, retries and purges dead jobs, and lists the living workers and periodic tasks.
"""

from .server import TOKEN_ENV, Dashboard, check_bind, is_loopback, serve

__all__ = ["TOKEN_ENV", "Dashboard", "check_bind", "is_loopback", "serve"]
