"""This process's engine per directory: the owner's, or a client of whoever owns it.

The only module that knows both :class:`~diskqueue.engine.engine.Engine` and the client
engine. :func:`acquire` opens a directory as its owner (and starts the server that lets
other processes in) or, when another process holds it, as a client; the handles of one
path in one process share that engine and count themselves in ``refs``. A client that
takes a directory over opens it through :data:`REGISTRY` too, so the client module
never imports the Engine.

After ``fork()`` the child must not touch the parent's LevelDB: each owner's engine
inherited becomes a client of the parent (or its successor), in place (see
:func:`_after_fork_in_child` for why in place).
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
from typing import Any

from ..engine.api import EngineAPI
from ..engine.engine import Engine
from ..engine.store import Store
from ..errors import DiskQueueError, Locked
from .client import CONNECT_TIMEOUT, RemoteEngine
from .server import Server

log = logging.getLogger("diskqueue.engine")

_registry: dict[str, EngineAPI] = {}
_registry_lock = threading.RLock()  # re-entered by an open cut short, which closes (closed())

# Owners' engines whose last handle went, until their close() ended: a signal handler's
# exception (Ctrl-C) can end a close() before it let go of the directory, and the next
# open of that directory in this process, or the exit, finishes it.
_closing: dict[str, Engine] = {}

# Stores (and engines being closed) inherited across fork(): kept alive forever, because
# freeing one in the child would run LevelDB's destructor, which waits for a background
# thread that only the parent has.
_orphans: list[Store | Engine] = []


class Registry:
    """What engines ask of the registry: counting handles, forgetting, and opening a
    directory as its owner (a client taking it over)."""

    def forget(self, engine: EngineAPI) -> bool:
        """Drop one reference to an engine (owner or client); True when it was the last."""
        with _registry_lock:
            engine.refs -= 1
            if engine.refs > 0:
                return False
            if _registry.get(engine.path) is engine:
                del _registry[engine.path]
            if isinstance(engine, Engine):
                _closing[engine.path] = engine
            return True

    def closed(self, engine: EngineAPI) -> None:
        """``engine``'s close() ended."""
        with _registry_lock:
            if _closing.get(engine.path) is engine:
                del _closing[engine.path]

    def drop(self, engine: EngineAPI) -> None:
        """Forget ``engine`` for every handle (it is being destroyed)."""
        with _registry_lock:
            if _registry.get(engine.path) is engine:
                del _registry[engine.path]

    def open_owner(self, path: str) -> EngineAPI:
        """Open ``path`` as its owner, serving it to other processes; ``Locked`` when
        another process holds it."""
        engine = Engine(path)
        try:
            server = _serve(engine)
            engine.attach(server, self)
            if server is not None:  # once the engine can stop it
                server.start()
        except BaseException:  # a signal handler's exception, say: let go of it
            engine.close()
            raise
        return engine

    def orphan(self, engine: EngineAPI) -> None:
        """Forget an owner's engine inherited across fork() without ever touching its
        LevelDB (see :func:`orphan`)."""
        if isinstance(engine, Engine):
            orphan(engine)


REGISTRY = Registry()


def _serve(engine: Engine) -> Server | None:
    """Let other processes in through a socket in the directory (None when it cannot:
    the engine works for this process alone)."""
    try:
        return Server(engine)
    except (OSError, DiskQueueError) as exc:
        log.warning("not serving %s to other processes: %s", engine.path, exc)
        return None


def orphan(engine: Engine) -> None:
    """Forget an engine inherited across fork() without ever touching its LevelDB, and
    let go of the child's copies of its server's sockets: the listening one and the
    server ends of its clients' connections (else, once the parent dies, those clients
    and this child would wait on sockets that nobody serves)."""
    _orphans.append(engine.detach_after_fork())


def _before_fork() -> None:
    _registry_lock.acquire()


def _after_fork_in_parent() -> None:
    _registry_lock.release()


def _after_fork_in_child() -> None:
    """Handles inherited across fork() become clients of the parent (or its successor).

    The child lets go of its copies of the parent's sockets: those its server serves on
    (see ``orphan``), and the client ends of the parent's own connections.

    An owner's engine is turned into a client *in place* (its class reassigned): the
    engine object is referenced not only by the handles but by whatever cached it (a
    TaskQueue, its workers' runners and schedulers), and every one of those references
    must reach the parent from now on. A replacement object would need each holder to
    register for re-pointing; the in-place change reaches them all at once.
    """
    try:
        for closing in _closing.values():  # never to be touched here
            closing.forked = True
            _orphans.append(closing)
        _closing.clear()
        for engine in _registry.values():
            if isinstance(engine, Engine):
                orphan(engine)
                timeout = getattr(engine, "connect_timeout", CONNECT_TIMEOUT)
                engine.__class__ = RemoteEngine  # type: ignore[assignment]
                client: RemoteEngine = engine  # type: ignore[assignment]
                client.adopt(registry=REGISTRY, connect_timeout=timeout)
            elif isinstance(engine, RemoteEngine):
                engine.reset_after_fork()
    finally:
        _registry_lock.release()


os.register_at_fork(before=_before_fork, after_in_parent=_after_fork_in_parent,
                    after_in_child=_after_fork_in_child)


def _close_owned_at_exit() -> None:
    """Close the directories this process holds when it exits with them open.

    Once the interpreter starts finalizing, Python stops its daemon threads where they
    next need the GIL, and the server's are daemons: one stopped inside a call keeps
    the directory's lock for ever, and the garbage collection of the handles, which
    closes them, then waits for that lock, so the process never ends and its clients
    wait ``connect_timeout`` for a reply that never comes. At exit (atexit runs before
    that) a holder leaves as ``close()`` leaves: its server stops between calls, the
    clients take over at once.
    """
    with _registry_lock:
        engines = [*_registry.values(), *_closing.values()]
    for engine in engines:
        if engine.pid == os.getpid() and not engine.forked and engine.role == "owner":
            try:
                engine.close()
            except Exception as exc:  # exiting anyway: say why it was not clean
                log.warning("closing %s at exit: %s", engine.path, exc)


atexit.register(_close_owned_at_exit)


def check_connect_timeout(value: Any) -> float:
    """A ``connect_timeout=`` argument as seconds; ``TypeError``/``ValueError`` when it
    is not a finite number of seconds > 0."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"connect_timeout must be a number of seconds, not {type(value).__name__}")
    if not 0 < value < float("inf"):  # NaN fails this too
        raise ValueError(f"connect_timeout must be a finite number of seconds > 0, not {value}")
    return float(value)


def acquire(path: str, *, connect_timeout: float = CONNECT_TIMEOUT) -> EngineAPI:
    """Return this process's engine for ``path``: the owner's, or a client of it.

    A holder that does not let this process in within ``connect_timeout`` seconds
    makes it ``Locked``. The handles of one path in one process share the engine, and
    with it the ``connect_timeout`` of the first one opened.
    """
    connect_timeout = check_connect_timeout(connect_timeout)
    with _registry_lock:
        leftover = _closing.pop(path, None)
    if leftover is not None:  # one that an exception ended still holds the directory
        try:
            leftover.close()
        except DiskQueueError as exc:  # the open below says whether it matters
            log.warning("finishing the close of %s: %s", path, exc)
    with _registry_lock:
        engine = _registry.get(path)
        if engine is None or engine.closed:
            try:
                engine = REGISTRY.open_owner(path)
            except Locked:
                engine = RemoteEngine(path, registry=REGISTRY,
                                      connect_timeout=connect_timeout)
            try:
                engine.connect_timeout = connect_timeout  # type: ignore[union-attr]
                _registry[path] = engine
            except BaseException:  # unknown to the registry, nobody would close it
                engine.close()
                raise
        engine.refs += 1
        return engine
