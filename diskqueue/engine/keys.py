"""The key layout: keys sort the way the structures dequeue.

Every key starts with a tag byte, then the namespace (length-prefixed, so namespaces
never collide), then the lane (empty for a plain queue, a sign-flipped big-endian
priority, or a length-prefixed prefix), then for items a big-endian sequence number.
"""

from __future__ import annotations

import struct

META = b"\x00"  # directory-wide settings: format version, structure kind
ITEM = b"\x01"  # ns + lane + seq -> encoded value
POINTER = b"\x02"  # ns + lane -> (head, tail)
ASIDE = b"\x03"  # ns + lane + seq -> attempts, for items reserved at least once
RECORD = b"\x04"  # ns + key -> value: the task layer's job records, schedules, results
HELD = b"\x05"  # ns + lane + hold id -> attempts + data: popped from the top for a client

SEQ_BYTES = 8
PRIORITY_MIN = -(2**63)
PRIORITY_MAX = 2**63 - 1
_PRIO_OFFSET = 2**63
POINTERS = struct.Struct(">QQ")


def ns_bytes(ns: bytes) -> bytes:
    """A namespace with its length first, as keys hold it; ``ValueError`` past 255 bytes."""
    if len(ns) > 255:
        raise ValueError("a namespace is at most 255 bytes")
    return bytes((len(ns),)) + ns


def item_prefix(ns: bytes, lane: bytes) -> bytes:
    """Every item key of one lane starts with this; the big-endian seq follows."""
    return ITEM + ns_bytes(ns) + lane


def seq_bytes(seq: int) -> bytes:
    """A seq as the big-endian bytes that end an item key."""
    return seq.to_bytes(SEQ_BYTES, "big")


def item_keys(prefix: bytes, first: int, n: int) -> list[bytes]:
    """The keys of ``n`` items of a lane from seq ``first`` on (for batches: one struct
    call per key is the cheapest way Python has)."""
    pack = struct.Struct(f">{len(prefix)}sQ").pack
    return [pack(prefix, seq) for seq in range(first, first + n)]


def priority_lane(priority: object) -> bytes:
    """Encode a priority so that byte order is numeric order; validate it on the way."""
    if type(priority) is not int:
        if isinstance(priority, bool) or not isinstance(priority, int):
            raise TypeError(f"priority must be an int, not {type(priority).__name__}")
        priority = int(priority)
    if not PRIORITY_MIN <= priority <= PRIORITY_MAX:
        raise ValueError(
            f"priority {priority} is outside the signed 64-bit range "
            f"[{PRIORITY_MIN}, {PRIORITY_MAX}]"
        )
    return (priority + _PRIO_OFFSET).to_bytes(8, "big")


def lane_priority(lane: bytes) -> int:
    """The priority a lane encodes (the inverse of :func:`priority_lane`)."""
    return int.from_bytes(lane, "big") - _PRIO_OFFSET


def prefix_lane(prefix: object) -> bytes:
    """Encode a prefix with its length first, so ``a``, ``a:`` and ``a\\x00b`` never mix."""
    if isinstance(prefix, str):
        raw = prefix.encode("utf-8")
    elif isinstance(prefix, (bytes, bytearray, memoryview)):
        raw = bytes(prefix)
    else:
        raise TypeError(f"prefix must be str or bytes, not {type(prefix).__name__}")
    return len(raw).to_bytes(4, "big") + raw


def lane_prefix(lane: bytes) -> bytes:
    """The prefix a lane encodes (the inverse of :func:`prefix_lane`), as bytes."""
    return lane[4:]


def prefix_end(prefix: bytes) -> bytes | None:
    """The smallest key above every key starting with ``prefix`` (None: no bound)."""
    stripped = prefix.rstrip(b"\xff")
    if not stripped:
        return None
    return stripped[:-1] + bytes((stripped[-1] + 1,))
