"""The client's side of a shared directory: the engine's methods over a Unix socket.

A ``RemoteEngine`` satisfies :class:`diskqueue.engine.api.EngineAPI`, as the owner's
engine does, so a handle never knows which it has (``role`` says). It sends the
required arguments of a call by position and every flag by name. When the owner closes or
dies, the next call takes the directory over (opening it here) or connects to
whichever process did, then repeats the call: callers see a pause, not an error. Takes
the last owner held for this process are settled with the next (``_resettle_now``). A
push, ack or nack repeated after a takeover may have landed before the owner died: it
is numbered, and the next owner answers it from its receipt instead of running it again
(:mod:`diskqueue.sharing.receipts`).

An owner that is alive but does not answer (stopped, hung) is waited for
``connect_timeout`` seconds, after a blocking call's own timeout. Then the call raises
``Locked`` if it cannot have taken effect (nothing reached the owner), or
``OutcomeUnknown`` (a ``Locked``) if the request was sent: each request carries its
deadline, and the owner refuses to start one past it, so a request that was sent
either started before its deadline or never will.
"""

from __future__ import annotations

import errno
import itertools
import logging
import os
import socket
import stat
import threading
import time
import zlib
from collections.abc import Callable, Iterable, Sequence
from typing import Any, NoReturn, Optional, Protocol

from ..engine import handed, holders, store
from ..engine.api import Ack, Check, EngineAPI, Entry, Guarded, Held, Receipt, RecordOps, Take
from ..engine.holders import running
from ..errors import Closed, DiskQueueError, Empty, Full, Locked, OutcomeUnknown
from . import peercred, protocol, receipts
from .client_connection import Connection, timed_out

log = logging.getLogger("diskqueue.remote")

CONNECT_TIMEOUT = 10.0
# A call with no timeout that blocks (``dequeue(block=True)``) is sent as calls of this
# many seconds each, so that an owner that stops answering is noticed within this plus
# connect_timeout, not never.
BLOCK_SLICE = 10.0
# A call whose owner went late in its bound still looks this long for the next one
# (a takeover takes a fraction of a second), so it may end this much past its bound.
SEARCH_LEAST = 0.5
# Control words (sent as their own frame, never answered).
GOT_IT = protocol.pack("got it")  # the reply to my last take arrived: let it go
PUT_BACK = protocol.pack("put back")  # the items of my last reply were not delivered
# Takes whose items the owner holds until the client says "got it".
_TAKES = frozenset({"take", "take_run", "take_first", "pop_one"})
# Calls that may wait (for an item, or for room under a maxsize), by ``block=``.
_BLOCKING = _TAKES | {"push_one", "push", "push_run"}
# Pushes wait only for room under a maxsize.
_PUSHES = frozenset({"push_one", "push", "push_run"})
Key = tuple[bytes, bytes, int]  # (ns, lane, seq) of an item a take took
# Numbers of pushes and acks: one counter for the process, so that no number is used twice with
# one receipt key, whichever engine of the process sends it (next() is atomic).
_push_numbers = itertools.count()


class Takeover(Protocol):
    """What a client asks of the registry that made it (injected, so that this module
    never imports the owner's engine)."""

    def open_owner(self, path: str) -> EngineAPI:
        """Open ``path`` as its owner (and serve it); ``Locked`` when another holds it."""

    def orphan(self, engine: EngineAPI) -> None:
        """Forget an owner's engine inherited across fork() without touching its store."""

    def forget(self, engine: EngineAPI) -> bool:
        """Drop one reference to ``engine``; True when it was the last."""


class _TimedOut(Exception):
    """The owner did not answer in time; ``sent`` says whether the request got there."""

    def __init__(self, sent: bool) -> None:
        super().__init__()
        self.sent = sent


class _Refused(Exception):
    """The owner answered a connection with an error and closed it (out of file
    descriptors, say): ``reply`` is that answer, for the caller at once."""

    def __init__(self, reply: list[Any]) -> None:
        super().__init__()
        self.reply = reply


class RemoteEngine:
    """Each call borrows an idle connection, or opens one, so a thread blocked in a call
    never holds up the calls of the process's other threads."""

    def __init__(self, path: str, *, registry: Takeover, connect: bool = True,
                 connect_timeout: float = CONNECT_TIMEOUT) -> None:
        self.path = path
        self.refs = 0
        self.adopt(registry=registry, connect_timeout=connect_timeout)
        if connect:
            # An open is one call: when the owner goes during its first request (the
            # handle's ensure_kind), looking for the next one ends where the open does.
            opening = time.monotonic() + connect_timeout
            self._opening: Optional[float] = opening
            conn = self._reach(opening)
            if conn is not None:
                self._idle.append(conn)

    def adopt(self, *, registry: Takeover, connect_timeout: float) -> None:
        """Fresh client state, open and unconnected (also for an owner's engine a forked
        child turned into a client in place: see :mod:`diskqueue.sharing.registry`)."""
        self.closed = False
        self.forked = False
        self.connect_timeout = connect_timeout
        self._registry = registry
        self._reset()

    def _reset(self) -> None:
        """Fresh connection state (also in a child after fork(): nothing is shared)."""
        self.pid = os.getpid()
        self._lock = threading.Lock()  # guards _idle, _open and closed
        self._taking_over = threading.Lock()  # one thread at a time opens the directory
        self._idle: list[Connection] = []
        self._open: set[Connection] = set()  # every connection, idle or in a call
        # The owner's engine once this process took the directory over.
        self._local: Optional[EngineAPI] = None
        # Takes whose "got it" the owner may not have read (see _resettle_now): those
        # of each connection's last reply, until that connection's next reply.
        self._unsettled: dict[Any, list[Take]] = {}
        # ... and the takes handed out, noted in a file for the next holders (handed.py)
        self._ledger = handed.ledger(self.path)
        self._receiving: dict[object, list[Take]] = {}  # replies being settled now
        self._resettle = False  # a connection broke: settle with the next owner
        self._gen = 0  # resettles so far
        self._slots: list[int] = []  # free receipt slots (see receipts)
        self._opening = None  # see __init__
        self._slot_count = 0

    @property
    def role(self) -> str:
        """``"owner"`` once this process took the directory over, else ``"client"``."""
        return "owner" if self._local is not None else "client"

    # -- reaching the directory ------------------------------------------------
    def _reach(self, deadline: float) -> Optional[Connection]:
        """A new connection to the owner, or None once this process is the owner;
        ``Locked`` at ``deadline``."""
        pause = 0.005
        while self._local is None:
            try:
                return self._connect(deadline)
            except OSError:
                pass
            with self._taking_over:
                if self._local is not None:
                    break
                try:
                    self._local = self._registry.open_owner(self.path)
                    log.info("took over %s", self.path)
                    break
                except Locked as exc:
                    if time.monotonic() >= deadline:
                        raise Locked(self.path, exc.pid,
                                     f", which did not let it in within "
                                     f"{self.connect_timeout:g} s{_why_not(self.path)}"
                                     ) from None
            time.sleep(pause)
            pause = min(pause * 2, 0.1)
        return None

    def _connect(self, deadline: float) -> Connection:
        """Connect, and make sure the owner is this user before sending it anything."""
        address, keep = protocol.socket_address(self.path)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            # A stopped owner whose backlog is full never accepts: bound the wait.
            sock.settimeout(max(0.001, deadline - time.monotonic()))
            sock.connect(address)
            sock.settimeout(None)
            ours, peer = peercred.same_user(
                sock, os.path.join(self.path, protocol.SOCKET_NAME))
        except BaseException:
            sock.close()
            raise
        finally:
            protocol.release_address(keep)
        if not ours:
            sock.close()
            who = f"uid {peer.uid}" if peer else "an unknown user"
            pid = f" (pid {peer.pid})" if peer and peer.pid else ""
            raise DiskQueueError(
                f"{self.path}: its socket is served by {who}{pid}, not by this user "
                f"(uid {os.geteuid()}); nothing was sent to it. Another user who can write "
                f"to the directory may have replaced {protocol.SOCKET_NAME}: make the "
                "directory writable by its owner only"
            )
        conn = Connection(sock, peer.pid if peer else None, self.connect_timeout)
        with self._lock:
            self._open.add(conn)
        return conn

    # -- calls -----------------------------------------------------------------
    def call(self, method: str, args: tuple[Any, ...] | list[Any],
             kwargs: dict[str, Any], check: Check = None) -> Any:
        """Run one engine method in the owner (``args``: its required arguments, by
        position; ``kwargs``: its flags, by name); ``check`` vets a take's items before
        the owner lets them go (contract of the engine's takes)."""
        if method in _BLOCKING:
            block, timeout = _waiting(method, kwargs)
            if block and timeout is None:
                return self._block_for_ever(method, args, kwargs, check)
            wait = float(timeout) if block and timeout is not None and timeout > 0 else 0.0
        else:
            wait = 0.0
        return self._call(method, args, kwargs, wait, check)

    def _block_for_ever(self, method: str, args: Any, kwargs: dict[str, Any],
                        check: Check) -> Any:
        """A call that may block for ever, as calls of BLOCK_SLICE seconds each."""
        while True:
            if self._local is not None:
                return self._call(method, args, kwargs, 0.0, check)
            sliced = {**kwargs, "timeout": BLOCK_SLICE}
            started = time.monotonic()
            try:
                return self._call(method, args, sliced, BLOCK_SLICE, check)
            except (Empty, Full):
                if time.monotonic() - started < 0.9 * BLOCK_SLICE:
                    raise  # refused at once (a batch over maxsize, say): waiting won't help
                # this slice ran out: wait on

    def _call(self, method: str, args: Any, kwargs: dict[str, Any], wait: float,
              check: Check) -> Any:
        if method not in receipts.RECEIPTED or self._local is not None:
            return self._calls(method, args, kwargs, wait, check, None)
        with self._lock:
            if self._slots:
                slot = self._slots.pop()
            else:
                slot = self._slot_count
                self._slot_count += 1
        try:
            return self._calls(method, args, kwargs, wait, check,
                               [slot, next(_push_numbers), False])
        finally:
            with self._lock:
                self._slots.append(slot)

    def _calls(self, method: str, args: Any, kwargs: dict[str, Any], wait: float,
               check: Check, numbered: Optional[list[Any]]) -> Any:
        """Run a call, again after a takeover; ``numbered``: a push's or ack's ``[slot, seq,
        sent before]`` (its receipt tells whether a holder that went had written it)."""
        deadline: Optional[float] = None  # to reach an owner after the last one went
        # A call's bound runs from its start (after its own wait): waiting on an owner
        # that then went and looking for the next one share it (see _search_end).
        ends = time.monotonic() + wait + self.connect_timeout
        if method == "ensure_kind" and self._opening is not None:
            # The open's first request: its answer has what is left of the open's bound.
            ends = deadline = self._opening
            self._opening = None
        while True:
            local = self._local
            if local is not None:
                if self._resettle:
                    self._resettle_now(None)
                if check is not None:
                    kwargs = {**kwargs, "check": check}
                if numbered is not None and numbered[2]:
                    found, result = receipts.stored(local, holders.me(), numbered[0],
                                                    numbered[1])
                    if found:
                        return result
                return getattr(local, method)(*args, **kwargs)
            with self._lock:
                if self.closed:
                    raise Closed(f"{self.path} is closed")
                if self.pid != os.getpid():
                    self.reset_after_fork()
                    continue
                conn = self._idle.pop() if self._idle else None
            if conn is None:
                # Finding an owner and its answer share one bound, not one each (a
                # connect that took most of it leaves the answer SEARCH_LEAST at least).
                reach_by = deadline or time.monotonic() + self.connect_timeout
                conn = self._reach(reach_by)
                if conn is None:
                    continue  # this process holds the directory now
                if deadline is None:
                    deadline = max(reach_by, time.monotonic() + SEARCH_LEAST)
            gen = self._gen
            try:
                if self._resettle:
                    self._resettle_now(conn, deadline)
                    gen = self._gen
                reply = self._exchange(conn, method, args, kwargs, wait, numbered, deadline)
            except _TimedOut as exc:
                self._discard(conn)
                if conn.pid is not None and not running(conn.pid):
                    # Its sockets live on in a process it forked: it is gone all the same.
                    self._resettle = True
                    self._drop_idle()
                    deadline = deadline or self._search_end(ends)
                    continue
                if exc.sent:
                    raise OutcomeUnknown(self.path, conn.pid, wait + self.connect_timeout) \
                        from None
                raise Locked(self.path, conn.pid, f", which did not take a request "
                             f"within {self.connect_timeout:g} s; nothing was done") from None
            except _Refused as exc:
                self._discard(conn)
                self._raise(conn, exc.reply)
            except (OSError, protocol.ProtocolError):
                self._resettle = True
                self._discard(conn)
                self._drop_idle()  # the owner went away: its other connections are dead
                deadline = deadline or self._search_end(ends)
                continue
            if reply[0] != 0:
                self._put_back(conn)
                self._raise(conn, reply)
            result = reply[1]
            if method in _TAKES and not self._settle(
                    conn, method, result, check, _taken(method, args, kwargs, result), gen,
                    reply[2] if len(reply) > 2 else None):
                # The items were not this process's any more when it asked (see
                # _settle): handing them out would deliver them twice; take again.
                deadline = deadline or self._search_end(ends)
                continue
            if method not in _TAKES:
                self._put_back(conn)
            return result

    def _raise(self, conn: Connection, reply: list[Any]) -> NoReturn:
        """Raise the error of an error reply."""
        if reply[1] == "Expired":
            raise Locked(self.path, conn.pid, ", which did not start the call "
                         "before its deadline; nothing was done")
        protocol.raise_reply(reply[1], reply[2])
        raise AssertionError("raise_reply returned")  # for the type checker

    def _search_end(self, ends: float) -> float:
        """When a call whose owner went gives up looking for the next one: where the
        call's bound ``ends`` (connect_timeout after it began, after its own wait; for
        an open's first request, where the open's ends), but no sooner than
        SEARCH_LEAST from now, so that a next owner already there can still answer."""
        now = time.monotonic()
        return min(now + self.connect_timeout, max(ends, now + SEARCH_LEAST))

    def _exchange(self, conn: Connection, method: str, args: Any, kwargs: dict[str, Any],
                  wait: float, numbered: Optional[list[Any]] = None,
                  until: Optional[float] = None) -> Any:
        """Send one request and read its reply within ``wait`` + connect_timeout
        (``numbered``: a push's or ack's number, marked as sent from here on), or, when the call
        had to look for an owner first, within ``wait`` + what is left of it ``until``
        (a ``time.monotonic()``)."""
        bound = self.connect_timeout
        if until is not None:
            bound = min(bound, until - time.monotonic())
            if bound <= 0:
                raise _TimedOut(sent=False)
        request = [method, list(args), kwargs, time.time() + bound]
        if numbered is not None:
            request.append(list(numbered))
            numbered[2] = True  # any later try asks for the receipt first
        frame = protocol.pack(request)
        conn.bound(wait + bound)
        try:
            conn.send(frame, bound)
        except OSError as exc:
            if timed_out(exc):  # the owner reads nothing: the frame is not all there
                raise _TimedOut(sent=False) from None
            if exc.errno not in (errno.EPIPE, errno.ECONNRESET):
                raise
            # It may have refused the connection and closed it before the request got
            # there: its answer is still to be read, and says more than the broken pipe.
            try:
                reply = conn.reader.read()
            except (OSError, protocol.ProtocolError):
                raise exc from None
            if isinstance(reply, list) and reply and reply[0] != 0:
                raise _Refused(reply) from None
            raise
        try:
            return conn.reader.read()
        except OSError as exc:
            if timed_out(exc):
                raise _TimedOut(sent=True) from None
            raise

    def _settle(self, conn: Connection, method: str, result: Any, check: Check,
                taken: list[Key], gen: int, holds: Optional[list[int]]) -> bool:
        """Tell the owner at once whether a take's items arrived, so it lets them go
        (or puts them back when ``check`` refuses them, whose error is raised). False
        when the items turned out not to be this process's any more (take again).

        ``taken``: the keys of the items a dequeue or pop took (a reservation's are not
        needed: it stays this process's until its lease ends, whoever holds the
        directory). The owner may go before reading "got it": the next one keeps the
        items for this process, which confirms them with it (:meth:`_resettle_now`),
        naming each by its key, the crc32 of its data and ``holds``: the ids of the
        records holding pops from the top (None: the take was from the head).
        ``gen``: the resettles before the request was sent; one since may have given
        these items back, so they are confirmed before they are handed out.
        """
        refused: Optional[BaseException] = None
        datas = _taken_data(method, result) if check is not None or taken else []
        if check is not None:
            try:
                check(datas)
            except BaseException as exc:
                refused = exc
        why = self._ledger.reserve(len(taken)) if refused is None and taken else None
        reserved = len(taken) if refused is None and why is None else 0
        if why is not None:
            # No room for the note that keeps a take taken should its holder and then
            # this process die: a full disk, where an owner's own take fails too.
            refused = DiskQueueError(
                f"{self.path}: {why} (no room for this process's notes of what it takes); "
                "nothing was taken. Free some space (or file descriptors) and try again")
        takes: list[Take] = [
            (*key, zlib.crc32(data), hold) for key, data, hold in
            zip(taken, datas, holds or [-1] * len(taken), strict=True)] if taken else []
        token = object()
        with self._lock:
            changed = self._gen != gen
            if takes and not changed:
                self._receiving[token] = takes
        try:
            try:
                conn.sock.sendall(PUT_BACK if refused is not None or changed and taken
                                  else GOT_IT)
            except OSError:
                self._resettle = True  # what the owner held for us is settled with the next
                self._discard(conn)
                self._drop_idle()  # the owner went away: its other connections are dead
                with self._lock:
                    self._receiving.pop(token, None)
                if refused is not None:
                    raise refused from None
                return not takes or self._confirm_first(takes)
            if refused is not None:
                self._put_back(conn)
                raise refused
            if changed and takes:
                self._put_back(conn)
                return self._confirm_first(takes)
            with self._lock:
                self._receiving.pop(token, None)
                if self._gen != gen:
                    self._resettle = True  # one went by while we read: it kept these
            if taken:  # handed out from here on, whoever dies next
                self._ledger.note(takes, datas)  # in the room set aside
                reserved = 0
            self._put_back(conn, takes)
            return True
        finally:
            if reserved:
                self._ledger.unreserve(reserved)

    def _confirm_first(self, takes: list[Take]) -> bool:
        """Whether takes the last owner held for this process are still its (and then
        they are let go), asked of the owner now before handing them out."""
        return bool(self._call("confirm", [takes, []], {"delivered": False}, 0.0, None))

    def _resettle_now(self, conn: Optional[Connection], until: Optional[float] = None
                      ) -> None:
        """After a connection broke: tell the owner at ``conn`` (None: this process, which
        holds the directory now) which of the takes the last owner held for us were
        handed out; it lets them go, and gives back the rest but those being read now.
        ``until``: as :meth:`_exchange` takes it."""
        with self._lock:
            if not self._resettle:
                return
            here = conn.pid if conn is not None else os.getpid()
            taken: list[Take] = []
            for other in [c for c in self._unsettled if c.pid != here or c.pid is None]:
                taken += self._unsettled.pop(other)
            keep = [take for takes in self._receiving.values() for take in takes]
            self._gen += 1
            self._resettle = False
        try:
            if conn is None:
                if self._local is not None:
                    self._local.confirm(taken, keep, delivered=True)
                    self._ledger.drop(taken)
                return
            reply = self._exchange(conn, "confirm", [taken, keep], {"delivered": True}, 0.0,
                                   until=until)
            if reply[0] != 0:  # kept for the next owner, or for this one once it takes it
                raise _Refused(reply)
            self._ledger.drop(taken)
        except BaseException:
            with self._lock:
                self._unsettled[_Lost()] = taken
                self._resettle = True
            raise

    def _put_back(self, conn: Connection, unsettled: Optional[list[Take]] = None) -> None:
        """An idle connection again, for the next call (a reply on it also says the
        owner read the "got it" before: ``unsettled`` are the takes of the last)."""
        with self._lock:
            read = self._unsettled.pop(conn, None) if self._unsettled else None
            if unsettled:
                self._unsettled[conn] = unsettled
            idle = not self.closed and self.pid == os.getpid()
            if idle:
                self._idle.append(conn)
        if read:
            self._ledger.settled(read)
        if not idle:
            self._discard(conn, goodbye=self.pid == os.getpid())

    def _discard(self, conn: Connection, goodbye: bool = False) -> None:
        with self._lock:
            self._open.discard(conn)
        conn.close(goodbye)

    def _drop_idle(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
            self._open.difference_update(idle)
        for conn in idle:
            conn.close(goodbye=False)

    def reset_after_fork(self) -> None:
        """In a child: close our copies of the parent's connections, idle or in a call
        of a thread that does not exist here (no goodbye: they stay the parent's), so
        the owner sees the parent's connections end when the parent ends them."""
        if self._local is not None:
            self._registry.orphan(self._local)
        for conn in self._open:
            try:
                conn.sock.close()
            except OSError:
                pass
        self._reset()

    # -- lifecycle -------------------------------------------------------------
    def release(self) -> None:
        """Drop one handle's reference; the last one closes the client."""
        if self._registry.forget(self):
            self.close()

    def close(self) -> None:
        """Close for every handle: settle takes a vanished owner may not have seen, say
        goodbye on each idle connection, and close the engine this process took over, if
        any. A second call does nothing; settling errors are logged, not raised."""
        if not self.closed and self.pid == os.getpid() and self._local is None:
            with self._lock:
                idle = [conn for conn in self._idle if conn in self._unsettled]
            if any(_ended(conn) for conn in idle):
                self._resettle = True  # its owner may not have read our last "got it"
        # Only takes handed out are worth a search for the next owner: what else it
        # holds for this process goes back when the process ends (see handed.py).
        if self._resettle and any(self._unsettled.values()) and not self.closed \
                and self.pid == os.getpid():
            try:  # an owner went: settle what it held for us with the next, while we can
                self._call("confirm", [[], []], {"delivered": False}, 0.0, None)
            except DiskQueueError as exc:
                log.debug("%s: settling takes on close: %s", self.path, exc)
        with self._lock:
            if self.closed:
                return
            self.closed = True
            idle, self._idle = self._idle, []
            self._open.difference_update(idle)
            local, self._local = self._local, None
            ours = self.pid == os.getpid()
        for conn in idle:
            conn.close(goodbye=ours)
        if local is not None and ours:
            local.close()

    def destroy(self) -> None:
        """Close and delete the directory; only an owner may, so a client raises
        ``Locked`` naming the directory (nothing is deleted)."""
        if self._local is not None:
            local = self._local
            self.close()
            local.destroy()
            return
        raise Locked(self.path, None)

    # -- watching (see diskqueue.engine.watches): only once this process holds it
    def watch(self, callback: Callable[[int], None]) -> bool:
        """Watch the engine this process took over; False while another process holds
        the directory (its items change there: wait with a blocking take instead)."""
        local = self._local
        return local is not None and local.watch(callback)

    def unwatch(self, callback: Callable[[int], None]) -> None:
        """Stop calling ``callback`` (see :meth:`watch`)."""
        local = self._local
        if local is not None:
            local.unwatch(callback)

    def serve_own_first(self, nss: Iterable[bytes],
                        wants: Optional[Callable[[], bool]]) -> bool:
        """See :meth:`EngineAPI.serve_own_first`; False while another process holds
        the directory."""
        local = self._local
        return local is not None and local.serve_own_first(nss, wants)

    def next_expiry(self) -> Optional[float]:
        """See :meth:`EngineAPI.next_expiry`; None while another process holds it."""
        local = self._local
        return None if local is None else local.next_expiry()

    # -- the engine's calls (EngineAPI): required arguments by position, flags by name
    # ``receipt`` is the holder's own (it writes one for each numbered push, ack and
    # nack): never sent.
    def push_one(self, ns: bytes, lane: bytes, data: bytes, *, maxsize: int = 0,
                 block: bool = False, timeout: Optional[float] = None,
                 receipt: Optional[Receipt] = None) -> tuple[int, bytes]:
        """See :meth:`EngineAPI.push_one`."""
        return self.call("push_one", [ns, lane, data],  # type: ignore[no-any-return]
                         {"maxsize": maxsize, "block": block, "timeout": timeout})

    def push(self, ns: bytes, entries: list[tuple[bytes, bytes]], *, maxsize: int = 0,
             block: bool = False, timeout: Optional[float] = None,
             records: RecordOps = (), receipt: Optional[Receipt] = None
             ) -> list[tuple[int, bytes]]:
        """See :meth:`EngineAPI.push`."""
        return self.call("push", [ns, entries], {  # type: ignore[no-any-return]
            "maxsize": maxsize, "block": block, "timeout": timeout, "records": records})

    def push_run(self, ns: bytes, lane: bytes, datas: list[bytes], *, maxsize: int = 0,
                 block: bool = False, timeout: Optional[float] = None,
                 receipt: Optional[Receipt] = None) -> tuple[int, list[bytes]]:
        """See :meth:`EngineAPI.push_run`."""
        return self.call("push_run", [ns, lane, datas],  # type: ignore[no-any-return]
                         {"maxsize": maxsize, "block": block, "timeout": timeout})

    def push_unless(self, ns: bytes, entries: list[tuple[bytes, bytes]],
                    guard: tuple[bytes, bytes], *, records: RecordOps = ()
                    ) -> Optional[bytes]:
        """See :meth:`EngineAPI.push_unless`."""
        return self.call("push_unless", [ns, entries, guard],  # type: ignore[no-any-return]
                         {"records": records})

    def push_durable(self, ns: bytes, entries: list[tuple[bytes, bytes]], *,
                     receipt: Optional[Receipt] = None) -> list[tuple[int, bytes]]:
        """See :meth:`EngineAPI.push_durable`."""
        return self.call("push_durable", [ns, entries], {})  # type: ignore[no-any-return]

    # Takes take ``check`` (run here, never sent), and are settled at once. ``owner``
    # and ``held`` are the holder's own: a client is never asked for them.
    def take(self, ns: bytes, n: int = 1, *, lane: Optional[bytes] = None,
             desc: bool = False, from_tail: bool = False, lease: Optional[float] = None,
             block: bool = False, timeout: Optional[float] = None,
             owner: Any = None, check: Check = None, held: bool = False) -> list[Entry]:
        """See :meth:`EngineAPI.take`."""
        return self.call("take", [ns, n], {  # type: ignore[no-any-return]
            "lane": lane, "desc": desc, "from_tail": from_tail, "lease": lease,
            "block": block, "timeout": timeout}, check)

    def take_run(self, ns: bytes, lane: bytes, n: int, *, from_tail: bool = False,
                 block: bool = False, timeout: Optional[float] = None,
                 check: Check = None) -> tuple[Sequence[int], list[tuple[bytes, bytes]]]:
        """See :meth:`EngineAPI.take_run`."""
        return self.call("take_run", [ns, lane, n],  # type: ignore[no-any-return]
                         {"from_tail": from_tail, "block": block, "timeout": timeout}, check)

    def take_first(self, nss: list[bytes], *, lease: Optional[float] = None,
                   block: bool = False, timeout: Optional[float] = None,
                   owner: Any = None, check: Check = None,
                   held: bool = False) -> tuple[bytes, Entry]:
        """See :meth:`EngineAPI.take_first`."""
        return self.call("take_first", [nss],  # type: ignore[no-any-return]
                         {"lease": lease, "block": block, "timeout": timeout}, check)

    def pop_one(self, ns: bytes, lane: Optional[bytes], *, desc: bool = False,
                from_tail: bool = False, block: bool = False,
                timeout: Optional[float] = None, check: Check = None) -> Entry:
        """See :meth:`EngineAPI.pop_one`."""
        return self.call("pop_one", [ns, lane], {  # type: ignore[no-any-return]
            "desc": desc, "from_tail": from_tail, "block": block, "timeout": timeout}, check)

    def find_reserved(self, ns: bytes, seq: int) -> list[bytes]:
        """See :meth:`EngineAPI.find_reserved`."""
        return self.call("find_reserved", [ns, seq], {})  # type: ignore[no-any-return]

    def ack(self, ns: bytes, lane: bytes, seq: int, *, attempts: Optional[int] = None,
            records: RecordOps = (), receipt: Optional[Receipt] = None) -> None:
        """See :meth:`EngineAPI.ack`."""
        self.call("ack", [ns, lane, seq], {"attempts": attempts, "records": records})

    def ack_many(self, held: list[Held], *, receipt: Optional[Receipt] = None) -> None:
        """See :meth:`EngineAPI.ack_many`."""
        self.call("ack_many", [held], {})

    def ack_each(self, acks: list[Ack], *, guarded: Sequence[Guarded] = (),
                 receipt: Optional[Receipt] = None) -> list[bool]:
        """See :meth:`EngineAPI.ack_each`."""
        return self.call("ack_each", [acks], {"guarded": guarded} if guarded else {}
                         )  # type: ignore[no-any-return]

    def nack(self, ns: bytes, lane: bytes, seq: int, *, attempts: Optional[int] = None,
             front: bool = True, receipt: Optional[Receipt] = None) -> int:
        """See :meth:`EngineAPI.nack`."""
        return self.call("nack", [ns, lane, seq],  # type: ignore[no-any-return]
                         {"attempts": attempts, "front": front})

    def in_flight(self, ns: bytes) -> int:
        """See :meth:`EngineAPI.in_flight`."""
        return self.call("in_flight", [ns], {})  # type: ignore[no-any-return]

    def peek(self, ns: bytes, offset: int = 0, *, lane: Optional[bytes] = None,
             desc: bool = False, from_tail: bool = False) -> Entry:
        """See :meth:`EngineAPI.peek`."""
        return self.call("peek", [ns, offset],  # type: ignore[no-any-return]
                         {"lane": lane, "desc": desc, "from_tail": from_tail})

    def get(self, ns: bytes, lane: bytes, seq: int) -> Entry:
        """See :meth:`EngineAPI.get`."""
        return self.call("get", [ns, lane, seq], {})  # type: ignore[no-any-return]

    def update(self, ns: bytes, lane: bytes, seq: int, data: bytes) -> bytes:
        """See :meth:`EngineAPI.update`."""
        return self.call("update", [ns, lane, seq, data], {})  # type: ignore[no-any-return]

    def length(self, ns: bytes, lane: Optional[bytes] = None) -> int:
        """See :meth:`EngineAPI.length`."""
        return self.call("length", [ns, lane], {})  # type: ignore[no-any-return]

    def lanes(self, ns: bytes, *, desc: bool = False) -> list[bytes]:
        """See :meth:`EngineAPI.lanes`."""
        return self.call("lanes", [ns], {"desc": desc})  # type: ignore[no-any-return]

    def scan(self, ns: bytes, *, lane: Optional[bytes] = None, desc: bool = False,
             from_tail: bool = False, after: Optional[tuple[bytes, int]] = None,
             limit: int = 256) -> list[Entry]:
        """See :meth:`EngineAPI.scan`."""
        return self.call("scan", [ns], {  # type: ignore[no-any-return]
            "lane": lane, "desc": desc, "from_tail": from_tail, "after": after,
            "limit": limit})

    def clear(self, ns: bytes) -> None:
        """See :meth:`EngineAPI.clear`."""
        self.call("clear", [ns], {})

    def task_done(self, ns: bytes) -> None:
        """See :meth:`EngineAPI.task_done`."""
        self.call("task_done", [ns], {})

    def join(self, ns: bytes, *, timeout: Optional[float] = None) -> None:
        """See :meth:`EngineAPI.join`."""
        self.call("join", [ns], {"timeout": timeout})

    def sync(self) -> None:
        """See :meth:`EngineAPI.sync`."""
        self.call("sync", [], {})

    def write_records(self, records: RecordOps) -> None:
        """See :meth:`EngineAPI.write_records`."""
        self.call("write_records", [records], {})

    def get_record(self, ns: bytes, key: bytes) -> Optional[bytes]:
        """See :meth:`EngineAPI.get_record`."""
        return self.call("get_record", [ns, key], {})  # type: ignore[no-any-return]

    def get_records(self, ns: bytes, keys: list[bytes]) -> list[Optional[bytes]]:
        """See :meth:`EngineAPI.get_records`."""
        return self.call("get_records", [ns, keys], {})  # type: ignore[no-any-return]

    def scan_records(self, ns: bytes, start: bytes = b"", stop: Optional[bytes] = None,
                     *, limit: int = 1000) -> list[tuple[bytes, bytes]]:
        """See :meth:`EngineAPI.scan_records`."""
        return self.call("scan_records", [ns, start, stop],  # type: ignore[no-any-return]
                         {"limit": limit})

    def ensure_kind(self, kind: str, accepts: Iterable[str]) -> None:
        """See :meth:`EngineAPI.ensure_kind`."""
        self.call("ensure_kind", [kind, list(accepts)], {})

    def info(self) -> dict[str, Any]:
        """See :meth:`EngineAPI.info`."""
        return self.call("info", [], {})  # type: ignore[no-any-return]

    def confirm(self, takes: list[Take], keep: list[Take], *, delivered: bool,
                holder: Any = None) -> bool:
        """See :meth:`EngineAPI.confirm` (``holder`` is the holder's own: never sent)."""
        return self.call("confirm", [takes, keep],  # type: ignore[no-any-return]
                         {"delivered": delivered})


def _waiting(method: str, kwargs: dict[str, Any]) -> tuple[bool, Optional[float]]:
    """``block`` and ``timeout`` of a blocking method's call (a push without a maxsize
    never waits, whatever its ``block`` says)."""
    if method in _PUSHES and not kwargs.get("maxsize"):
        return False, None
    return bool(kwargs.get("block", False)), kwargs.get("timeout")


def _taken_data(method: str, result: Any) -> list[bytes]:
    """The raw data of the items a take's reply holds, whatever its shape."""
    if method == "take":
        return [entry[3] for entry in result]
    if method == "take_first":
        return [result[1][3]]
    if method == "pop_one":
        return [result[3]]
    return [pair[1] for pair in result[1]]  # take_run: seqs, then (key, data) pairs


def _taken(method: str, args: Any, kwargs: dict[str, Any], result: Any) -> list[Key]:
    """``(ns, lane, seq)`` of the items a dequeue or pop took ([] for a reservation:
    the owner does not delete those when told they arrived)."""
    if method == "take_first":
        if kwargs.get("lease") is not None:
            return []
        return [(result[0], result[1][0], result[1][1])]
    ns = args[0] if args else kwargs["ns"]
    if method == "take":
        if kwargs.get("lease") is not None:
            return []
        return [(ns, entry[0], entry[1]) for entry in result]
    if method == "pop_one":
        return [(ns, result[0], result[1])]
    lane = args[1] if len(args) > 1 else kwargs["lane"]  # take_run(ns, lane, n, ...)
    return [(ns, lane, seq) for seq in result[0]]


def _ended(conn: Connection) -> bool:
    """Whether the owner ended this idle connection (it went, or closed)."""
    try:
        return conn.sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
    except (BlockingIOError, InterruptedError):
        return False
    except OSError:
        return True


class _Lost:
    """Stands for a connection whose unsettled takes a failed resettle put back."""

    pid = None


def _why_not(path: str) -> str:
    """What keeps a holder from serving ``path``, when the directory says (or this
    process may not become its holder)."""
    if not store.can_own():
        return store.forked_note()
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return ""
    if mode & stat.S_IWOTH and not mode & stat.S_ISVTX:
        return (" (it does not serve a world-writable directory, whose socket another "
                f"user could replace: run `chmod o-w {path}`)")
    return ""
