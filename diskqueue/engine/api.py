"""The engine's one written interface: what the layers above may call.

:class:`EngineAPI` lists every method and attribute that handles, the socket server, the
client engine, the task layer and the command line use. The owner's
:class:`~diskqueue.engine.engine.Engine` and the client engine
(:class:`~diskqueue.sharing.client.RemoteEngine`) both satisfy it, so a caller never
knows which it has (``role`` says). Flags are keyword-only: a call reads the same on
both sides of the socket, and reordering a parameter cannot shift another's value.

:class:`WireAPI` is the part a client may ask of a holder over the socket: the wire's
method table, and each method's signature, are derived from it (see
:mod:`diskqueue.sharing.requests`). Parameters named in :data:`LOCAL_ONLY` are passed
only inside the holder's process and never travel.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any, Optional, Protocol

from .holders import Holder

Entry = tuple[bytes, int, bytes, bytes, int]
"""``(lane, seq, key, data, attempts)``: what reads hand back to handles."""
Check = Optional[Callable[[list[bytes]], None]]
"""Run on the data of the items a take is about to remove or reserve, after they are read
and before anything is written (a handle passes its decoder). Never sent to an owner."""
RecordOps = Iterable[tuple[bytes, bytes, Optional[bytes]]]
"""``(ns, key, value)`` to write, or ``(ns, key, None)`` to delete: records beside the
items."""
Held = tuple[bytes, bytes, int, int]
"""``(ns, lane, seq, attempts)`` of a held or reserved item."""
Take = tuple[bytes, bytes, int, int, int]
"""``(ns, lane, seq, crc32 of the data, hold)`` of a dequeue or pop as its client got it;
``hold``: the id of the held record of a pop from the top, else -1. A Stack pushes
where it pops, so a later pop from the same seq is told apart by its hold id."""
Ack = tuple[bytes, bytes, int, Optional[int], RecordOps]
"""``(ns, lane, seq, attempts, records)``: a reserved item to delete, with its records."""
Guarded = tuple[bytes, bytes, Optional[bytes], RecordOps]
"""``(ns, key, expected, records)``: ``records`` to write only if record ``key`` of
namespace ``ns`` still holds ``expected`` (None: there is none)."""
LOCAL_ONLY = frozenset({"owner", "check", "holder", "held", "receipt"})
"""Parameters only the holder's own process passes (objects that cannot travel)."""
Receipt = tuple[bytes, Callable[[Any], bytes]]
"""``(record key, encoder of the result)``: a receipt a push writes in its own batch, under
:data:`RECEIPTS` (see :mod:`diskqueue.sharing.receipts`), so that a client's request
repeated after a takeover finds the result instead of pushing again."""
RECEIPTS = b"\x00receipts"
"""The records namespace of receipts."""


class WireAPI(Protocol):
    """The engine methods a client may call through a holder's socket."""

    def push_one(self, ns: bytes, lane: bytes, data: bytes, *, maxsize: int = 0,
                 block: bool = False, timeout: Optional[float] = None,
                 receipt: Optional[Receipt] = None) -> tuple[int, bytes]:
        """Append one item to ``lane``; its ``(seq, key)``. ``Full`` when ``maxsize``
        items are ready and no room came within ``timeout`` (or ``block`` is False).
        ``receipt`` (the holder's own): a record written with the item, in its batch."""

    def push(self, ns: bytes, entries: list[tuple[bytes, bytes]], *, maxsize: int = 0,
             block: bool = False, timeout: Optional[float] = None,
             records: RecordOps = (), receipt: Optional[Receipt] = None
             ) -> list[tuple[int, bytes]]:
        """Append ``(lane, data)`` items (and write ``records``) in one batch; ``Full``
        and ``receipt`` as :meth:`push_one`."""

    def push_run(self, ns: bytes, lane: bytes, datas: list[bytes], *, maxsize: int = 0,
                 block: bool = False, timeout: Optional[float] = None,
                 receipt: Optional[Receipt] = None) -> tuple[int, list[bytes]]:
        """Append items to one lane in one batch; the first seq and every key
        (``receipt`` as :meth:`push_one`)."""

    def push_unless(self, ns: bytes, entries: list[tuple[bytes, bytes]],
                    guard: tuple[bytes, bytes], *, records: RecordOps = ()
                    ) -> Optional[bytes]:
        """Append ``entries`` with ``records`` unless the ``(ns, key)`` record ``guard``
        exists; then nothing is written and its value is returned."""

    def push_durable(self, ns: bytes, entries: list[tuple[bytes, bytes]], *,
                     receipt: Optional[Receipt] = None) -> list[tuple[int, bytes]]:
        """Append items and fsync before returning (group commit; ``receipt`` as
        :meth:`push_one`)."""

    def take(self, ns: bytes, n: int = 1, *, lane: Optional[bytes] = None,
             desc: bool = False, from_tail: bool = False, lease: Optional[float] = None,
             block: bool = False, timeout: Optional[float] = None,
             owner: Any = None, check: Check = None, held: bool = False) -> list[Entry]:
        """Remove (with ``lease``: reserve) up to ``n`` ready items; ``Empty`` when none
        came within ``timeout``."""

    def take_run(self, ns: bytes, lane: bytes, n: int, *, from_tail: bool = False,
                 block: bool = False, timeout: Optional[float] = None,
                 check: Check = None) -> tuple[Sequence[int], list[tuple[bytes, bytes]]]:
        """Remove up to ``n`` items of one lane atomically: their seqs and (key, data)."""

    def take_first(self, nss: list[bytes], *, lease: Optional[float] = None,
                   block: bool = False, timeout: Optional[float] = None,
                   owner: Any = None, check: Check = None,
                   held: bool = False) -> tuple[bytes, Entry]:
        """Take one item from the first of ``nss`` that has one: ``(ns, entry)``."""

    def pop_one(self, ns: bytes, lane: Optional[bytes], *, desc: bool = False,
                from_tail: bool = False, block: bool = False,
                timeout: Optional[float] = None, check: Check = None) -> Entry:
        """Remove one item (from the top with ``from_tail``); ``Empty`` as :meth:`take`."""

    def find_reserved(self, ns: bytes, seq: int) -> list[bytes]:
        """The lanes holding a reservation of ``seq``."""

    def ack(self, ns: bytes, lane: bytes, seq: int, *, attempts: Optional[int] = None,
            records: RecordOps = (), receipt: Optional[Receipt] = None) -> None:
        """Delete a reserved item (and write ``records``); ``NotReserved`` if it is not.
        ``receipt``, here and in the other acks and nack: as for :meth:`push_one`."""

    def ack_many(self, held: list[Held], *, receipt: Optional[Receipt] = None) -> None:
        """Delete reserved items in one batch."""

    def ack_each(self, acks: list[Ack], *, guarded: Sequence[Guarded] = (),
                 receipt: Optional[Receipt] = None) -> list[bool]:
        """Delete reserved items, each with its records, in one batch; for each, False
        when it was not reserved so (nothing of it is written, the others are). Each of
        ``guarded`` writes its records in the same batch only if its record is still as
        expected; its bool follows those of ``acks``."""

    def nack(self, ns: bytes, lane: bytes, seq: int, *, attempts: Optional[int] = None,
             front: bool = True, receipt: Optional[Receipt] = None) -> int:
        """Return a reserved item to the front (or the back); its attempts."""

    def in_flight(self, ns: bytes) -> int:
        """How many items of ``ns`` are reserved."""

    def peek(self, ns: bytes, offset: int = 0, *, lane: Optional[bytes] = None,
             desc: bool = False, from_tail: bool = False) -> Entry:
        """The ready item ``offset`` places from the front; ``Empty``/``OutOfBounds``."""

    def get(self, ns: bytes, lane: bytes, seq: int) -> Entry:
        """The ready item ``seq`` of ``lane``; ``Empty``/``OutOfBounds``."""

    def update(self, ns: bytes, lane: bytes, seq: int, data: bytes) -> bytes:
        """Replace the data of a ready item; its key."""

    def length(self, ns: bytes, lane: Optional[bytes] = None) -> int:
        """Ready items of ``ns`` (of one lane)."""

    def lanes(self, ns: bytes, *, desc: bool = False) -> list[bytes]:
        """Lanes holding ready items, in key order (or reversed)."""

    def scan(self, ns: bytes, *, lane: Optional[bytes] = None, desc: bool = False,
             from_tail: bool = False, after: Optional[tuple[bytes, int]] = None,
             limit: int = 256) -> list[Entry]:
        """A page of ready items in dequeue order, after a ``(lane, seq)`` cursor."""

    def clear(self, ns: bytes) -> None:
        """Remove every item of ``ns``, reserved ones too."""

    def task_done(self, ns: bytes) -> None:
        """``queue.Queue.task_done``; ``ValueError`` when called too many times."""

    def join(self, ns: bytes, *, timeout: Optional[float] = None) -> None:
        """Wait until every item put was marked done; ``Empty`` after ``timeout``."""

    def sync(self) -> None:
        """Make everything written so far survive power loss."""

    def write_records(self, records: RecordOps) -> None:
        """Write and delete records in one batch."""

    def get_record(self, ns: bytes, key: bytes) -> Optional[bytes]:
        """One record's value, or None."""

    def get_records(self, ns: bytes, keys: list[bytes]) -> list[Optional[bytes]]:
        """The values of several records of ``ns`` (None for each there is not)."""

    def scan_records(self, ns: bytes, start: bytes = b"", stop: Optional[bytes] = None,
                     *, limit: int = 1000) -> list[tuple[bytes, bytes]]:
        """Records of ``ns`` from ``start`` up to ``stop``, in key order."""

    def ensure_kind(self, kind: str, accepts: Iterable[str]) -> None:
        """Record the structure kind on first use; ``IncompatibleType`` for another."""

    def info(self) -> dict[str, Any]:
        """Counts of ready and reserved items and of lanes, per namespace."""

    def confirm(self, takes: list[Take], keep: list[Take], *, delivered: bool,
                holder: Optional[Holder] = None) -> bool:
        """Settle what the last holder held for a client's process (see
        :mod:`diskqueue.engine.inherited`)."""


class EngineAPI(WireAPI, Protocol):
    """Everything the layers above use of an engine, owner's or client's."""

    path: str
    closed: bool
    forked: bool  # opened before fork(): this process may not use it
    refs: int  # handles sharing it (kept by the registry)
    pid: int

    @property
    def role(self) -> str:
        """``"owner"`` when this process holds the directory, else ``"client"``."""

    def release(self) -> None:
        """Drop one handle's reference; the last one closes the engine."""

    def close(self) -> None:
        """Close for every handle."""

    def destroy(self) -> None:
        """Close for every handle and delete the directory (``Locked`` for a client)."""

    def watch(self, callback: Callable[[int], None]) -> bool:
        """Call ``callback(n)`` whenever items may have become ready (see
        :mod:`diskqueue.engine.watches`); False, and nothing is called, where the items
        change in another process (a client's engine)."""

    def unwatch(self, callback: Callable[[int], None]) -> None:
        """Stop calling ``callback``."""

    def next_expiry(self) -> Optional[float]:
        """Return the reservations whose lease ended; when the next one ends (None: no
        lease runs, or a client's engine)."""

    def serve_own_first(self, nss: Iterable[bytes],
                        wants: Optional[Callable[[], bool]]) -> bool:
        """While ``wants()`` says so, clients' reservations in ``nss`` find nothing: this
        process's own worker takes those items (None: stop). False, and nothing
        changes, where another process holds the directory (a client's engine)."""


class HolderAPI(EngineAPI, Protocol):
    """An owner's engine as its socket server uses it: :class:`EngineAPI` and what the
    server calls to hold takes for its clients and give them back."""

    def hold_top(self, ns: bytes, n: int, *, lane: Optional[bytes] = None,
                 desc: bool = False, block: bool = False, timeout: Optional[float] = None,
                 holder: Optional[Holder] = None) -> tuple[list[Entry], list[int]]:
        """Pop up to ``n`` items from the top, held for a client until settled."""

    def settle_tops(self, holds: Iterable[int], *, put_back: bool) -> int:
        """Let held pops go, or put them back; how many went back."""

    def unreserve(self, held: Iterable[Held], owner: Any = None) -> int:
        """Return reserved items with their attempts as before, struck from ``owner``'s
        holdings; how many."""

    def wait_for_change(self, *, room: bool, timeout: float) -> bool:
        """Wait until an item (or, with ``room``, room) may be there."""

    def check_holders(self, keep: Iterable[Holder] = ()) -> int:
        """Return what inherited holders that died since held; how many items (the
        notes of ``keep`` are kept)."""

    def release_owner(self, owner: Any) -> int:
        """Return the reservations of ``owner``; how many."""

    def keep_for(self, owner: Any, holder: Holder) -> int:
        """Keep the reservations of ``owner`` for client process ``holder``; how many."""


class Registrar(Protocol):
    """Where an owner's engine reports its handles going (kept by the registry)."""

    def forget(self, engine: EngineAPI) -> bool:
        """Drop one reference to ``engine``; True when it was the last."""

    def drop(self, engine: EngineAPI) -> None:
        """Forget ``engine`` for every handle (it is being destroyed)."""

    def closed(self, engine: EngineAPI) -> None:
        """``engine``'s close() ended (until then, the registry finishes it when this
        process opens its directory again, or exits)."""


class Closable(Protocol):
    """What an engine knows of the server that serves it."""

    def close(self) -> None:
        """Stop serving."""

    def forget_after_fork(self) -> None:
        """In a forked child: close this process's copies of the server's sockets."""
