"""Serving metrics over HTTP: ``prometheus_client``'s own server, in a daemon thread.

Bound to ``127.0.0.1`` unless told otherwise: the numbers name tasks and queues, which
an operator may not want on every interface. Port 0 picks a free port
(:attr:`MetricsServer.port` says which).
"""

from __future__ import annotations

import logging
import signal
import threading
from typing import TYPE_CHECKING, Any, Optional

from ..errors import DiskQueueError
from ..tasks import TaskQueue
from . import require
from .collector import DirectoryCollector, SlotsCollector, read_path, read_tasks
from .counters import JobMetrics

if TYPE_CHECKING:
    from ..tasks import Worker

log = logging.getLogger("diskqueue.metrics")

DEFAULT_HOST = "127.0.0.1"


def check_port(port: Any) -> int:
    """A TCP port, 0 (any free one) to 65535; TypeError or ValueError otherwise."""
    if isinstance(port, bool) or not isinstance(port, int):
        raise TypeError(f"a metrics port must be an int, not {type(port).__name__}")
    if not 0 <= port <= 65535:
        raise ValueError(f"a metrics port must be 0 to 65535, not {port}")
    return port


class MetricsServer:
    """Serves one registry at ``http://host:port/metrics`` until :meth:`close`.

    Raises :class:`~diskqueue.metrics.MetricsUnavailable` without ``prometheus_client``
    and :class:`~diskqueue.errors.DiskQueueError` when the port cannot be bound."""

    def __init__(self, registry: Any, port: int, host: str = DEFAULT_HOST) -> None:
        client = require()
        check_port(port)
        if not isinstance(host, str) or not host:
            raise TypeError("a metrics host must be a non-empty str")
        try:  # (the server and its thread are returned since prometheus_client 0.20)
            self._httpd, self._thread = client.start_http_server(port, addr=host,
                                                                 registry=registry)
        except OSError as exc:
            raise DiskQueueError(f"cannot serve metrics on {host}:{port}: "
                                 f"{exc.strerror or exc}") from exc
        self.registry = registry
        self.host = host
        self.port: int = self._httpd.server_port
        self._closed = False

    @property
    def url(self) -> str:
        """Where Prometheus scrapes: ``http://host:port/metrics``."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/metrics"

    def close(self) -> None:
        """Stop serving and free the port (a second call does nothing)."""
        if self._closed:
            return
        self._closed = True
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(5)

    def __enter__(self) -> MetricsServer:
        """The server itself: ``with serve(...) as server:`` closes it on leaving."""
        return self

    def __exit__(self, *exc: object) -> None:
        """Stop serving (see ``close``); an exception in the block propagates."""
        self.close()


def _registry(*collectors: Any) -> Any:
    client = require()
    registry = client.CollectorRegistry()
    for collector in collectors:
        registry.register(collector)
    # the usual process_* and python_* metrics, as prometheus_client's default registry has
    client.ProcessCollector(registry=registry)
    client.PlatformCollector(registry=registry)
    client.GCCollector(registry=registry)
    return registry


def serve(tasks: TaskQueue, port: int, host: str = DEFAULT_HOST, *,
          worker: Optional[Worker] = None) -> MetricsServer:
    """Serve the metrics of ``tasks`` from this process: its job counters (a
    :class:`JobMetrics` added to it, once), the directory's gauges, and with ``worker``
    the worker's busy/idle slots. A producer process can call it too, for the jobs it
    enqueues. Raises what :class:`MetricsServer` raises."""
    metrics = JobMetrics.of(tasks)
    collectors = [metrics, DirectoryCollector(lambda: read_tasks(tasks))]
    if worker is not None:
        collectors.append(SlotsCollector(metrics, worker.concurrency))
    server = MetricsServer(_registry(*collectors), port, host)
    log.info("serving Prometheus metrics on %s", server.url)
    return server


def attach(worker: Worker, port: int, host: str = DEFAULT_HOST) -> MetricsServer:
    """Serve a worker's metrics (see :func:`serve`) until the worker stops. Raises
    TypeError for a worker that does not run a TaskQueue's tasks."""
    tasks = worker.tasks
    if not isinstance(tasks, TaskQueue):
        raise TypeError(f"metrics need a worker of a TaskQueue, not of {type(tasks).__name__}")
    server = serve(tasks, port, host, worker=worker)
    worker.metrics = server
    worker.on_stop.append(lambda stopped: server.close())
    return server


def start_serving(worker: Worker, port: int, host: str = DEFAULT_HOST) -> Worker:
    """Start ``worker`` with its metrics served (``tasks.start(metrics_port=...)``): the
    port is bound first, so a port in use starts nothing; a worker that fails to start
    frees it again."""
    server = attach(worker, port, host)
    try:
        worker.start()
    except BaseException:
        server.close()
        raise
    return worker


def serve_directory(path: str, port: int, host: str = DEFAULT_HOST, *,
                    connect_timeout: float = 10.0) -> MetricsServer:
    """Serve the gauges of the directory at ``path`` (a task directory or plain queues),
    read at each scrape through whichever process holds it. Raises what
    :class:`MetricsServer` raises."""
    collector = DirectoryCollector(lambda: read_path(path, connect_timeout))
    return MetricsServer(_registry(collector), port, host)


def run_directory(path: str, port: int, host: str = DEFAULT_HOST,
                  announce: Any = print) -> None:
    """``diskq metrics``: serve a directory's gauges until SIGTERM or SIGINT."""
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda signum, frame: stop.set())
                for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        with serve_directory(path, port, host) as server:
            announce(f"serving metrics of {path} on {server.url} (Ctrl-C stops)")
            stop.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
