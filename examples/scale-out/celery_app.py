"""An order-totalling Celery app that runs on a diskqueue directory, and on Redis (or
RabbitMQ) by changing its broker URL: the ``BROKER`` line, read here from the
``CELERY_BROKER`` environment variable so the same file runs on both.

Start a worker, then send orders from any other process::

    celery -A celery_app worker --pool threads --concurrency 4
    python celery_app.py 100

Each order's total lands in ``results/<order>.json`` (``ORDER_RESULTS`` moves it).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from celery import Celery

BROKER = os.environ.get("CELERY_BROKER", "diskqueue://data/orders")  # the one line that changes
RESULTS = Path(os.environ.get("ORDER_RESULTS", "results"))

app = Celery("celery_app", broker=BROKER)
# A task a killed worker was running is delivered again, on a directory as on Redis.
app.conf.task_acks_late = True


@app.task
def total(order: int, lines: list[list[int]]) -> int:
    """Total an order's (quantity, unit price in cents) lines and store the result."""
    cents = sum(quantity * price for quantity, price in lines)
    RESULTS.mkdir(parents=True, exist_ok=True)
    part = RESULTS / f".{order}.json.part"
    part.write_text(json.dumps({"order": order, "cents": cents}))
    part.replace(RESULTS / f"{order}.json")  # readers never see half a file
    return cents


def order_lines(order: int) -> list[list[int]]:
    """The made-up lines of order number ``order``."""
    return [[1 + order % 3, 250], [2, 199 + order]]


def send(count: int) -> None:
    """Send orders 0 .. count-1 to the workers."""
    for order in range(count):
        total.delay(order, order_lines(order))


if __name__ == "__main__":
    send(int(sys.argv[1]) if len(sys.argv) > 1 else 10)
