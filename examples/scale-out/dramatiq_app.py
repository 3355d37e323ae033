"""A Dramatiq app that runs on a diskqueue directory, and on Redis by changing one line.

    python dramatiq_app.py send 100                   # producers: run from any process
    dramatiq dramatiq_app --processes 2 --threads 2   # workers
    python dramatiq_app.py report                     # what the workers wrote

``APP_BROKER`` picks the broker object: a directory (default ``var/dramatiq``) or a
``redis://`` URL. ``APP_OUT`` is where the actors write their results (default
``var/out``), one file per result, so any process can read them back.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import dramatiq

BROKER = os.environ.get("APP_BROKER", "var/dramatiq")
OUT = Path(os.environ.get("APP_OUT", "var/out"))

if BROKER.startswith("redis://"):
    from dramatiq.brokers.redis import RedisBroker

    broker = RedisBroker(url=BROKER)                  # on Redis
else:
    from diskqueue.contrib.dramatiq import DiskQueueBroker

    broker = DiskQueueBroker(BROKER)                  # on a diskqueue directory
dramatiq.set_broker(broker)


def save(name: str, value: object) -> None:
    """Write one result atomically: a reader sees the whole file or none."""
    OUT.mkdir(parents=True, exist_ok=True)
    part = OUT / f".{name}.{os.getpid()}"
    part.write_text(json.dumps(value))
    os.replace(part, OUT / name)


@dramatiq.actor
def square(n: int) -> None:
    """Plain work."""
    save(f"square-{n}", n * n)


@dramatiq.actor(max_retries=3, min_backoff=100, max_backoff=200)
def flaky(n: int) -> None:
    """Fails on its first attempt; the Retries middleware runs it again later."""
    marker = OUT / f".flaky-{n}.tried"
    if not marker.exists():
        OUT.mkdir(parents=True, exist_ok=True)
        marker.touch()
        raise RuntimeError("first attempt fails")
    save(f"flaky-{n}", "retried")


@dramatiq.actor
def later(n: int, sent_ms: int) -> None:
    """Sent with a delay; records whether the delay was kept."""
    save(f"later-{n}", dramatiq.common.current_millis() - sent_ms >= 300)


def send(count: int) -> None:
    """Enqueue ``count`` squares, and a tenth as many flaky and delayed messages."""
    for n in range(count):
        square.send(n)
    for n in range(max(1, count // 10)):
        flaky.send(n)
        later.send_with_options(args=(n, dramatiq.common.current_millis()), delay=300)


def report() -> dict[str, object]:
    """Every result written so far, by name."""
    if not OUT.exists():
        return {}
    return {path.name: json.loads(path.read_text())
            for path in sorted(OUT.iterdir()) if not path.name.startswith(".")}


def expected(count: int) -> dict[str, object]:
    """What ``report()`` holds once the messages of ``send(count)`` have all run."""
    results: dict[str, object] = {f"square-{n}": n * n for n in range(count)}
    for n in range(max(1, count // 10)):
        results[f"flaky-{n}"] = "retried"
        results[f"later-{n}"] = True
    return dict(sorted(results.items()))


if __name__ == "__main__":
    if sys.argv[1:2] == ["send"]:
        send(int(sys.argv[2]))
    elif sys.argv[1:2] == ["report"]:
        print(json.dumps(report(), sort_keys=True))
    else:
        sys.exit(__doc__)
