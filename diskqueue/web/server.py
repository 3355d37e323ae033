"""Serving the dashboard: :class:`Dashboard` runs it in background threads (for code and
tests); :func:`serve` runs it until SIGINT or SIGTERM (for ``diskq dashboard``).

waitress serves it: a pure-Python, production-grade WSGI server with no dependencies
of its own, whose threads suit the blocking calls the dashboard makes on the directory.
"""

from __future__ import annotations

import ipaddress
import os
import signal
import threading
from typing import Any, Optional

from ..errors import DiskQueueError
from .sampler import INTERVAL, Sampler
from .source import Source

TOKEN_ENV = "DISKQ_DASHBOARD_TOKEN"
THREADS = 4  # requests served at once; the page makes a few small ones per poll


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback addresses (127.0.0.0/8, ::1)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_bind(host: str, token: Optional[str]) -> None:
    """Refuse to serve a host other than loopback without a token.

    Raises ``DiskQueueError`` saying how to give one."""
    if token is not None and not token:
        raise DiskQueueError("the dashboard token cannot be empty")
    if token is None and not is_loopback(host):
        raise DiskQueueError(
            f"the dashboard serves {host} only with a token: pass --token T or set "
            f"{TOKEN_ENV} (anyone who can reach the port could retry and purge jobs)")


class Dashboard:
    """The dashboard of the directory ``path``, served on ``host:port`` (0: any free
    port; see :attr:`port`) from background threads until :meth:`stop`. ``token``: the
    secret every request must then carry (needed for a host other than loopback);
    ``read_only``: refuse every change; ``interval``: seconds between two samples of
    the counts; ``name``: what the page calls the directory (default: its path).

    Raises ``DiskQueueError`` when the host needs a token and has none, when the extra
    is missing, or when the directory cannot be opened; ``OSError`` when the port is taken.
    """

    def __init__(self, path: str, *, host: str = "127.0.0.1", port: int = 8686,
                 token: Optional[str] = None, read_only: bool = False,
                 interval: float = INTERVAL, name: Optional[str] = None) -> None:
        check_bind(host, token)
        try:
            from waitress import create_server

            from .app import create_app
        except ImportError as exc:
            raise DiskQueueError("the dashboard needs its extra: pip install "
                                 f"'diskqueue[web]' ({exc})") from exc
        self.source = Source(path)
        try:
            self.sampler = Sampler(self.source, interval)
            self.sampler.start()
            app = create_app(self.source, self.sampler, token=token, read_only=read_only,
                             name=name)
            self._map: dict[Any, Any] = {}  # the server's sockets, so this class can close them
            self._server: Any = create_server(app, map=self._map, host=host, port=port,
                                              threads=THREADS, ident="diskqueue")
        except BaseException:
            self.sampler.stop()
            self.source.close()
            raise
        self.host = host
        self.port: int = self._server.effective_port
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="diskqueue-web", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        from waitress import wasyncore

        # waitress's own run() loops while any socket is open (a browser keeps one open)
        # and its close() from another thread races its threads: so loop here in short
        # steps, and close everything from this thread once asked to stop
        try:
            while not self._stopping.is_set():
                wasyncore.loop(timeout=0.2, map=self._map, count=1)
        finally:
            self._server.task_dispatcher.shutdown()
            for channel in list(self._map.values()):
                channel.close()

    @property
    def url(self) -> str:
        """The address the page is served on."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/"

    def stop(self) -> None:
        """Stop serving and let go of the directory."""
        self._stopping.set()
        self._thread.join()
        self.sampler.stop()
        self.source.close()

    def __enter__(self) -> Dashboard:
        """The dashboard itself; leaving the block stops it."""
        return self

    def __exit__(self, *exc: object) -> None:
        """Stop serving (see :meth:`close`)."""
        self.stop()


def serve(path: str, *, host: str = "127.0.0.1", port: int = 8686,
          token: Optional[str] = None, read_only: bool = False,
          name: Optional[str] = None) -> None:
    """Serve the dashboard of ``path`` until SIGINT or SIGTERM (call from the main thread).

    ``token`` defaults to the ``DISKQ_DASHBOARD_TOKEN`` environment variable."""
    if token is None:
        token = os.environ.get(TOKEN_ENV) or None
    stop = threading.Event()
    # the handlers only set the flag; the main thread then stops the server
    previous = {sig: signal.signal(sig, lambda *_: stop.set())
                for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        dashboard = Dashboard(path, host=host, port=port, token=token, read_only=read_only,
                              name=name)
        try:
            print(f"diskqueue dashboard of {name or path} on {dashboard.url}"
                  f"{' (read-only)' if read_only else ''}", flush=True)
            stop.wait()
        finally:
            dashboard.stop()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
