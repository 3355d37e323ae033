"""The face of :class:`queue.Queue`: ``put``/``get`` and friends on a persistent structure.

``maxsize`` counts what is already on disk and may be reassigned at any time;
``task_done``/``join`` count items put since the directory was opened, plus those found
on disk then.
"""

from __future__ import annotations

import abc
from typing import Any, Optional

from .._checks import check_timeout
from ..engine.api import EngineAPI


class QueueFace(abc.ABC):
    """``put``/``get``, ``qsize``, ``task_done``/``join`` as :class:`queue.Queue` has them.

    Each structure says how a stdlib item is stored and read back; errors are the
    stdlib's too: ``Empty`` is a ``queue.Empty``, ``Full`` a ``queue.Full``.
    """

    _engine: EngineAPI
    _ns: bytes
    maxsize: int

    @abc.abstractmethod
    def _put_value(self, value: Any, block: bool, timeout: Optional[float]) -> None:
        """Store one stdlib-style item, waiting for room as ``queue.Queue.put`` does."""

    @abc.abstractmethod
    def _get_value(self, block: bool, timeout: Optional[float]) -> Any:
        """Remove one item and return it as ``queue.Queue.get`` would."""

    def put(self, item: Any, block: bool = True, timeout: Optional[float] = None) -> None:
        """Store ``item``; at ``maxsize``, wait for room (up to ``timeout`` seconds).

        Raises ``Full`` when there is no room and it may not wait (``block=False``) or the
        ``timeout`` ran out, ``TypeError`` when the codec cannot encode ``item``.
        """
        timeout = check_timeout(block, timeout)
        self._put_value(item, bool(block), timeout)

    def get(self, block: bool = True, timeout: Optional[float] = None) -> Any:
        """Remove and return the next item's value, waiting for one (up to ``timeout``).

        Raises ``Empty`` when there is none and it may not wait or the ``timeout`` ran
        out, ``Undecodable`` when the codec refuses the item (it stays in place).
        """
        timeout = check_timeout(block, timeout)
        return self._get_value(bool(block), timeout)

    def put_nowait(self, item: Any) -> None:
        """``put(item, block=False)``: ``Full`` at once when there is no room."""
        self.put(item, block=False)

    def get_nowait(self) -> Any:
        """``get(block=False)``: ``Empty`` at once when there is no item."""
        return self.get(block=False)

    def qsize(self) -> int:
        """The number of ready items, as ``len()``."""
        return self._engine.length(self._ns)

    def empty(self) -> bool:
        """Whether no item is ready."""
        return self.qsize() == 0

    def full(self) -> bool:
        """Whether ``maxsize`` is set and reached."""
        return 0 < self.maxsize <= self.qsize()

    def task_done(self) -> None:
        """Mark one item taken with ``get`` as processed, for ``join``.

        Raises ``ValueError`` when called more times than there were items put.
        """
        self._engine.task_done(self._ns)

    def join(self) -> None:
        """Wait until every item put (or found on disk at open) was marked done with
        ``task_done``."""
        self._engine.join(self._ns)
