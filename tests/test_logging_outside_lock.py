"""A logging handler that blocks must not stall a directory.

The engine logs some events while it holds a directory's lock (a lease that ran out, a
write refused on a full disk, a watcher that failed). A handler that blocks there (a
full stderr pipe, a slow network handler, a handler lock left taken by an exception
raised from a signal handler) used to hold every other call of the directory, and
``close()``, for as long as it blocked.
"""

from __future__ import annotations

import logging
import threading
import time

import pytest

import diskqueue as dq


class Stuck(logging.Handler):
    """Blocks in ``emit`` until released, as a handler writing to a full pipe does."""

    def __init__(self) -> None:
        super().__init__(level=logging.INFO)
        self.go = threading.Event()
        self.entered = threading.Event()

    def emit(self, record: logging.LogRecord) -> None:
        self.entered.set()
        self.go.wait(30)


@pytest.fixture
def stuck():
    handler = Stuck()
    logger = logging.getLogger("diskqueue")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield handler
    finally:
        handler.go.set()
        logger.removeHandler(handler)
        logger.setLevel(level)


@pytest.mark.timeout(60)
def test_calls_go_on_while_a_log_handler_blocks(tmp_path, stuck):
    with dq.Queue(tmp_path / "q", codec="json") as q:
        q.enqueue_many(["a", "b"])
        q.reserve(lease=0.05)
        time.sleep(0.2)
        got: list[str] = []
        # the next take expires the lease and logs it ("back at the front")
        taker = threading.Thread(target=lambda: got.append(q.dequeue().value), daemon=True)
        taker.start()
        taker.join(5)
        assert stuck.entered.wait(5)  # the handler was called, and blocks
        assert got == ["a"]
        started = time.monotonic()
        assert q.dequeue().value == "b"  # another call, from another thread
        assert len(q) == 0
        assert time.monotonic() - started < 2
        stuck.go.set()
