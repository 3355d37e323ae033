"""Prometheus metrics for task directories and plain queues (the ``metrics`` extra).

:mod:`.counters` counts what a worker process does (jobs by state, run time, wait);
:mod:`.collector` reads the directory's gauges when scraped; :mod:`.server` serves them
over HTTP with ``prometheus_client``. Importing this package does not import
``prometheus_client``: :func:`require` does, and says how to install it when missing.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from ..errors import DiskQueueError

INSTALL = "pip install 'diskqueue[metrics]'"


class MetricsUnavailable(DiskQueueError, ImportError):
    """Raised when metrics are asked for but ``prometheus_client`` is not installed."""


def require(module: str = "prometheus_client") -> ModuleType:
    """Import and return ``prometheus_client`` (or one of its modules, e.g.
    ``"prometheus_client.core"``); raise :class:`MetricsUnavailable`, naming the extra
    to install, when it is missing."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MetricsUnavailable(
            f"metrics need the prometheus_client package, which is not installed: {INSTALL}"
        ) from exc


__all__ = ["INSTALL", "MetricsUnavailable", "require"]
