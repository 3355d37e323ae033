"""Fixtures of the Dramatiq broker tests: Dramatiq's ``stub_broker``/``stub_worker``
pair, with the stub swapped for a DiskQueueBroker on a fresh directory."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

dramatiq = pytest.importorskip("dramatiq", reason="needs the dramatiq extra")

from dramatiq import Worker  # noqa: E402

from diskqueue.contrib.dramatiq import DiskQueueBroker  # noqa: E402


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[DiskQueueBroker]:
    """A DiskQueueBroker set as Dramatiq's global broker, as Dramatiq's tests do."""
    broker = DiskQueueBroker(tmp_path / "broker")
    broker.emit_after("process_boot")
    dramatiq.set_broker(broker)
    yield broker
    broker.flush_all()
    broker.close()


@pytest.fixture
def worker(broker: DiskQueueBroker) -> Iterator[Worker]:
    """A running in-process Dramatiq worker on ``broker``."""
    worker = Worker(broker, worker_timeout=100, worker_threads=8)
    worker.start()
    yield worker
    worker.stop()
