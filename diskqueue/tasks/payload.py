"""``Payload``: how a job's arguments and result are stored, with a TaskQueue's codec.

The default (``codec=None`` or ``"msgpack"``) is :data:`~diskqueue.codecs.TASK_MSGPACK`,
the codec of the job record itself: arguments and result sit in the record as values,
with nothing to encode twice. Any other codec (``"json"``, ``"pickle"``, an object with
``dumps``/``loads``) encodes them to bytes inside the record, which then names the codec
(``"coded"``), so a TaskQueue opened with another codec says so instead of misreading.

Either way a value that cannot be encoded raises ``TypeError`` naming the task and the
argument, before anything is written.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Optional

from .. import codecs
from ..errors import DiskQueueError
from . import layout as R

CODED = "coded"  # the record field naming the codec of its args, kwargs and result


class Payload:
    """The codec of a task directory's arguments and results (see the module)."""

    def __init__(self, codec: Any = None) -> None:
        """Raises ValueError for an unknown codec name, TypeError for an object without
        ``dumps`` and ``loads``."""
        self.name: Optional[str] = None  # None: the default, values inline
        self.dumps: Callable[[Any], bytes] = R.pack
        self.loads: Callable[[bytes], Any] = R.unpack
        if codec is None or codec == "msgpack" or codec is codecs.TASK_MSGPACK:
            return
        dumps, self.loads = codecs.resolve(codec)
        self.dumps = codecs.encoder(dumps)
        self.name = codec if isinstance(codec, str) else type(codec).__name__

    # -- writing ---------------------------------------------------------------
    def call(self, task: str, args: list[Any], kwargs: dict[str, Any]
             ) -> tuple[Any, Any, Optional[str]]:
        """``(args, kwargs, coded)`` as a new record stores them; raises TypeError naming
        the task and the argument that cannot be encoded."""
        if self.name is None:
            return args, kwargs, None
        try:
            return self.dumps(args), self.dumps(kwargs), self.name
        except TypeError as exc:
            raise self.blame(task, args, kwargs, exc) from exc

    def store_result(self, record: dict[str, Any], value: Any) -> None:
        """Put a task's return value in its record, encoded (and the record marked) when
        the codec is not the default; raises TypeError when it cannot be encoded."""
        if self.name is None:
            record["result"] = value
            return
        record["result"] = self.dumps(value)
        record[CODED] = self.name  # (a periodic tick's job has no arguments to encode)

    def blame(self, task: str, args: list[Any], kwargs: dict[str, Any],
              exc: BaseException) -> TypeError:
        """The TypeError for a call of ``task`` that could not be encoded: it names the
        first argument that cannot be, found by encoding each on its own."""
        where, culprit = "an argument", None
        named = [(f"argument {i}", v) for i, v in enumerate(args)]
        named += [(f"argument {k!r}", v) for k, v in kwargs.items()]
        for label, value in named:
            try:
                self.dumps(value)
            except Exception:  # any failure of its own names the culprit
                where, culprit = label, value
                break
        kind = "" if culprit is None else f" ({type(culprit).__name__})"
        codec = self.name or "msgpack"
        return TypeError(f"task {task!r}: {where}{kind} cannot be stored by the {codec} "
                         f"codec ({exc}); nothing was enqueued. Pass a value it holds, or "
                         "give the TaskQueue a codec= that holds it")

    # -- reading ---------------------------------------------------------------
    def _loads_for(self, record: dict[str, Any]) -> Callable[[bytes], Any]:
        if self.name is None or record[CODED] != self.name:
            raise DiskQueueError(
                f"job {record['id']} ({record['task']}) was stored with the "
                f"{record[CODED]} codec; open its TaskQueue with that codec to read it")
        return self.loads

    def args_of(self, record: dict[str, Any]) -> tuple[list[Any], dict[str, Any]]:
        """A record's ``(args, kwargs)`` as values (DiskQueueError: another codec's)."""
        args, kwargs = record.get("args") or [], record.get("kwargs") or {}
        if CODED not in record:
            return args, kwargs
        # encoded fields are bytes; a periodic tick's empty ones were stored as they are
        if isinstance(args, bytes):
            args = self._loads_for(record)(args)
        if isinstance(kwargs, bytes):
            kwargs = self._loads_for(record)(kwargs)
        return args, kwargs

    def result_of(self, record: dict[str, Any]) -> Any:
        """A finished record's result as a value (DiskQueueError: another codec's)."""
        value = record.get("result")
        if CODED not in record or value is None:
            return value
        return self._loads_for(record)(value)
