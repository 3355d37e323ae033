"""A task cancelled while it waits never loses an item nor leaves it reserved.

Thousands of tasks await ``get``/``dequeue``/``reserve``/``pop`` while producers put;
a canceller cancels them at random points (before they first run, while they wait,
just as an item is handed to them). At the end every item put is accounted for:
taken exactly once by a task that returned it, or still in the queue, and nothing is
left reserved. Once with this process holding the directory (the producers a thread
with a blocking handle and a task), once with the holder in another process.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import subprocess
import sys
import textwrap
import threading
from collections import Counter
from typing import Any

from faults import REPO_ROOT, child_env

import diskqueue as dq
from diskqueue.aio import AsyncPriorityQueue, AsyncQueue, AsyncStack

WAITERS = 3000
ITEMS = 2000


async def _consume(q: Any, how: str, got: list[Any]) -> None:
    """One waiting take; what it returned is recorded (then acked, for a reserve)."""
    if how == "get":
        got.append(await q.get())
    elif how == "timeout":
        try:
            got.append((await q.dequeue(block=True, timeout=random.random() / 20)).value)
        except dq.Empty:
            pass
    elif how == "reserve":
        item = await q.reserve(block=True, lease=60)
        got.append(item.value)
        await q.ack(item)
    elif how == "pop":
        got.append((await q.pop(block=True)).value)
    else:
        got.append((await q.dequeue(block=True)).value)


async def _storm(q: Any, kinds: list[str], produce: Any, seed: int) -> list[Any]:
    """Start WAITERS waiting tasks, cancel most of them at random points while
    ``produce()`` runs, let the rest finish; return what the tasks took."""
    rnd = random.Random(seed)
    got: list[Any] = []
    tasks = [asyncio.create_task(_consume(q, rnd.choice(kinds), got)) for _ in range(WAITERS)]
    producing = asyncio.create_task(produce())
    order = list(tasks)
    rnd.shuffle(order)
    for i, task in enumerate(order[: WAITERS * 9 // 10]):
        task.cancel()
        if i % 7 == 0:
            await asyncio.sleep(0)  # some land while a hand-over is under way
        if i % 97 == 0:
            await asyncio.sleep(rnd.random() / 500)
    await producing
    # The survivors take what is left; then the ones still waiting are cancelled.
    await asyncio.sleep(0.3)
    for task in tasks:
        task.cancel()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    for result in results:
        assert result is None or isinstance(result, asyncio.CancelledError), result
    return got


def _account(produced: list[Any], got: list[Any], left: list[Any]) -> None:
    counts = Counter(got + left)
    twice = [v for v, n in counts.items() if n > 1]
    assert not twice, f"came back twice: {twice[:10]}"
    missing = set(produced) - set(counts)
    assert not missing, f"{len(missing)} items lost, e.g. {sorted(missing)[:10]}"
    assert set(counts) == set(produced)


async def _drain(q: Any, take: str = "dequeue") -> list[Any]:
    left = []
    while True:
        try:
            left.append((await getattr(q, take)()).value)
        except dq.Empty:
            return left


def test_cancelled_waiters_lose_nothing_here(tmp_path: Any) -> None:
    path = str(tmp_path / "q")
    produced = list(range(ITEMS))

    async def main() -> tuple[list[Any], list[Any], int]:
        async with AsyncQueue(path) as q:
            blocking = dq.Queue(path)

            def thread_producer() -> None:
                for v in produced[: ITEMS // 2]:
                    blocking.put(v)

            async def produce() -> None:
                thread = threading.Thread(target=thread_producer)
                thread.start()
                for v in produced[ITEMS // 2:]:
                    await q.put(v)
                    if v % 50 == 0:
                        await asyncio.sleep(0.001)
                await asyncio.to_thread(thread.join)

            got = await _storm(q, ["get", "dequeue", "timeout", "reserve"], produce, 1)
            left = await _drain(q)
            in_flight = await q.in_flight()
            blocking.close()
            return got, left, in_flight

    got, left, in_flight = asyncio.run(main())
    assert in_flight == 0
    assert got, "no task took anything"
    _account(produced, got, left)


def test_cancelled_waiters_lose_nothing_stack_and_priority(tmp_path: Any) -> None:
    produced = list(range(ITEMS // 2))

    async def main() -> None:
        async with AsyncStack(str(tmp_path / "s")) as s:
            async def push() -> None:
                for v in produced:
                    await s.push(v)
                    if v % 20 == 0:
                        await asyncio.sleep(0.001)

            got = await _storm(s, ["pop", "get"], push, 2)
            _account(produced, got, await _drain(s, "pop"))
        async with AsyncPriorityQueue(str(tmp_path / "p")) as p:
            async def put() -> None:
                for v in produced:
                    await p.enqueue(v % 5, v)
                    if v % 20 == 0:
                        await asyncio.sleep(0.001)

            got = await _storm(p, ["dequeue", "reserve", "timeout"], put, 3)
            _account(produced, got, await _drain(p))
            assert await p.in_flight() == 0

    asyncio.run(main())


HOLDER = """
import sys, time
import diskqueue as dq
q = dq.Queue(sys.argv[1])
print("ready", flush=True)
sys.stdin.readline()
n = int(sys.argv[2])
for i in range(n):
    q.put(i)
    if i % 25 == 0:
        time.sleep(0.002)
print("done", flush=True)
sys.stdin.readline()
q.close()
"""


def test_cancelled_waiters_lose_nothing_with_the_holder_elsewhere(tmp_path: Any) -> None:
    path = str(tmp_path / "q")
    holder = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(HOLDER), path, str(ITEMS)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=child_env(),
        cwd=REPO_ROOT)
    assert holder.stdin is not None and holder.stdout is not None
    try:
        assert holder.stdout.readline().strip() == "ready"

        async def main() -> tuple[list[Any], list[Any], int]:
            async with AsyncQueue(path) as q:
                assert q.role == "client"

                async def produce() -> None:
                    assert holder.stdin is not None and holder.stdout is not None
                    holder.stdin.write("go\n")
                    holder.stdin.flush()
                    line = await asyncio.to_thread(holder.stdout.readline)
                    assert line.strip() == "done"

                got = await _storm(q, ["get", "dequeue", "timeout", "reserve"], produce, 4)
                return got, await _drain(q), await q.in_flight()

        got, left, in_flight = asyncio.run(main())
        assert in_flight == 0
        _account(list(range(ITEMS)), got, left)
        holder.stdin.write("bye\n")
        holder.stdin.flush()
        assert holder.wait(30) == 0
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()


def test_an_item_given_back_ignores_maxsize(tmp_path: Any) -> None:
    """A stack at its maxsize still takes back the top its cancelled waiter popped."""
    path = str(tmp_path / "s")

    async def main() -> None:
        async with AsyncStack(path, maxsize=1) as s:
            waiter = asyncio.create_task(s.pop(block=True))
            await asyncio.sleep(0.05)  # the dispatcher waits in pop
            with dq.Stack(path) as other:  # no maxsize on this handle
                other.push_many(["a", "b"])
                waiter.cancel()  # before the popped top reaches it
                with contextlib.suppress(asyncio.CancelledError):
                    got = await waiter
                    other.push(got.value)  # it won the race: put it back ourselves
                await asyncio.sleep(0.3)
                assert [i.value for i in other] == ["b", "a"]

    asyncio.run(main())
