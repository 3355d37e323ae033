"""The face of :class:`queue.Queue`: ``put``/``get`` and friends on a persistent structure.

``maxsize`` counts what is already on disk and may be reassigned at any time;
``task_done``/``join`` count items put since the directory was opened, plus those found
on disk then.
"""

from __future__ import annotations

import abc
from typing import Any, Optional

from ..engine.api import EngineAPI
from .handle import check_timeout


class QueueFace(abc.ABC):
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
        timeout = check_timeout(block, timeout)
        self._put_value(item, bool(block), timeout)

    def get(self, block: bool = True, timeout: Optional[float] = None) -> Any:
        timeout = check_timeout(block, timeout)
        return self._get_value(bool(block), timeout)

    def put_nowait(self, item: Any) -> None:
        self.put(item, block=False)

    def get_nowait(self) -> Any:
        return self.get(block=False)

    def qsize(self) -> int:
        return self._engine.length(self._ns)

    def empty(self) -> bool:
        return self.qsize() == 0

    def full(self) -> bool:
        return 0 < self.maxsize <= self.qsize()

    def task_done(self) -> None:
        self._engine.task_done(self._ns)

    def join(self) -> None:
        self._engine.join(self._ns)
