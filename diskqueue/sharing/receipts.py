"""Receipts: a client's push, ack or nack lands once, even when it is sent again after a
takeover.

A holder can die after writing a client's push and before its reply left. The client
then sends the same request to the next holder, which would store the items a second
time (and an ack sent again would be refused as ``NotReserved``, its item already gone,
though it was acked: the caller would take its work for lost). So a client numbers
these calls: each carries ``(slot, seq)``, where ``seq`` is a number the client never
uses twice and ``slot`` one of a few it reuses (one per call under way at once). The
holder writes, in the call's own batch, a *receipt*: the record ``RECEIPTS/<client
pid, start time, slot>`` holding ``seq`` and the call's result. A request sent again
says so, and the holder that gets it looks for its receipt first: when the receipt
holds the same ``seq``, it answers with the stored result and writes nothing. The
next call in the same slot overwrites the receipt, so a live client keeps
one per slot; the receipts of processes that ended are deleted by the holder
(:func:`sweep`), about every :data:`SWEEP_EVERY` seconds.
"""

from __future__ import annotations

import struct
from typing import Any, Optional

import msgpack

from ..engine import holders
from ..engine.api import RECEIPTS, EngineAPI, Receipt

# Calls that carry a receipt (push_unless is guarded by its own record already).
RECEIPTED = frozenset({"push_one", "push", "push_run", "push_durable",
                       "ack", "ack_many", "ack_each", "nack"})
SWEEP_EVERY = 10.0
_KEY = struct.Struct(">QQI")  # pid, start time, slot


def key(holder: holders.Holder, slot: int) -> bytes:
    """The record key of ``holder``'s receipt in ``slot``."""
    return _KEY.pack(holder[0], holder[1], slot)


def receipt(holder: holders.Holder, slot: int, seq: int) -> Receipt:
    """What an engine push writes with its items (``receipt=``)."""
    return key(holder, slot), lambda result: msgpack.packb([seq, result], use_bin_type=True)


def stored(engine: EngineAPI, holder: holders.Holder, slot: int, seq: int
           ) -> tuple[bool, Any]:
    """``(True, result)`` when push ``seq`` of ``holder`` in ``slot`` landed already,
    else ``(False, None)``."""
    value: Optional[bytes] = engine.get_record(RECEIPTS, key(holder, slot))
    if value is None:
        return False, None
    got_seq, result = msgpack.unpackb(value, raw=False)
    return (True, result) if got_seq == seq else (False, None)


def sweep(engine: EngineAPI) -> int:
    """Delete the receipts of processes that ended; how many went."""
    gone: list[tuple[bytes, bytes, None]] = []
    start = b""
    while True:
        found = engine.scan_records(RECEIPTS, start, limit=1000)
        for k, _ in found:
            if len(k) == _KEY.size:
                pid, begun, _slot = _KEY.unpack(k)
                if not holders.alive((pid, begun)):
                    gone.append((RECEIPTS, k, None))
        if len(found) < 1000:
            break
        start = found[-1][0] + b"\x00"
    if gone:
        engine.write_records(gone)
    return len(gone)
