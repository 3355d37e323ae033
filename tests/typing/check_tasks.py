"""Typed tasks, as ``mypy --strict`` sees them. Checked (never run) by
tests/test_tasks_typing.py and by CI, with ``--warn-unused-ignores``: every call under
``must_pass`` type-checks, and every line under ``must_fail`` is an error whose code its
``type: ignore[...]`` names (an ignore that is not needed is an error too, so a check
that stopped catching a mistake fails).

``apply`` and ``map`` take the arguments as a tuple and a dict, which a ParamSpec cannot
describe: their arguments stay unchecked; their jobs are still typed.
"""

from __future__ import annotations

import asyncio
import datetime as dt

from diskqueue import Job, TaskQueue
from diskqueue.tasks import AsyncTaskFunction, TaskFunction

tasks = TaskQueue("data/typed")


@tasks.task
def add(x: int, y: int = 0) -> int:
    return x + y


@tasks.task(retries=3, queue="mail", timeout=30)
def send(to: str, *, subject: str) -> None:
    pass


@tasks.task
async def fetch(url: str) -> bytes:
    return url.encode()


@tasks.periodic(every=60)
def tick() -> str:
    return "tick"


def plain(day: dt.date) -> dt.date:
    return day


registered = tasks.task(plain, name="plain", retries=1)


def must_pass() -> None:
    job: Job[int] = add.delay(1, 2)
    total: int = job.result(timeout=1)
    add.delay(1, y=2)
    here: int = add(1, 2)
    later: Job[int] = add.apply(args=(1, 2), delay=5, priority=1)
    many: list[Job[int]] = add.map([(1, 2), 3])
    send.delay("a@example.com", subject="hi")
    sent: None = send.delay("b@example.com", subject="hi").result()
    body: bytes = fetch.delay("https://example.com").result()
    fetched: bytes = asyncio.run(fetch("https://example.com"))
    ticked: str = tick.delay().result()
    day: dt.date = registered.delay(dt.date.today()).result()
    as_task: TaskFunction[[int, int], int] = add
    as_async: AsyncTaskFunction[[str], bytes] = fetch
    print(total, here, later, many, sent, body, fetched, ticked, day, as_task, as_async)


def must_fail() -> None:
    add.delay("x")  # type: ignore[arg-type]
    add.delay(1, 2, 3)  # type: ignore[call-arg]
    add.delay(1, z=2)  # type: ignore[call-arg]
    add("x")  # type: ignore[arg-type]
    wrong: str = add.delay(1).result()  # type: ignore[assignment]
    send.delay("a@example.com")  # type: ignore[call-arg]
    send.delay("a@example.com", subject=1)  # type: ignore[arg-type]
    fetch.delay(1)  # type: ignore[arg-type]
    not_awaited: bytes = fetch("https://example.com")  # type: ignore[assignment]
    tick.delay(1)  # type: ignore[call-arg]
    registered.delay("today")  # type: ignore[arg-type]
    print(wrong, not_awaited)
