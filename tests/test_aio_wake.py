"""In the process that holds the directory, a waiting task is woken by the engine itself.

No thread takes for it: a put on the loop's thread wakes the task directly, a put from
another thread through ``call_soon_threadsafe``, and the task takes the item itself once
it runs. So a task woken and cancelled before it ran took nothing and passes its
wake-up on; a woken task that finds the item gone waits again at the front; a lease
that ends wakes a task (also a lease made after it started waiting); and a directory
closed under a waiting task fails it with ``Closed``. A put by a client process, which
the holder's socket server makes in this process, wakes a task the same way.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
import time
from typing import Any

import pytest
from faults import REPO_ROOT, child_env

import diskqueue as dq
from diskqueue.aio import AsyncPriorityQueue, AsyncQueue, AsyncStack


def aio_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("diskqueue.aio")]


async def settle() -> None:
    """Let every ready task run (a woken task runs within a few loop turns)."""
    for _ in range(5):
        await asyncio.sleep(0)


@pytest.mark.parametrize("cls", [AsyncQueue, AsyncStack, AsyncPriorityQueue],
                         ids=lambda c: c.__name__)
def test_puts_here_and_from_a_thread_wake_a_task_without_a_thread(tmp_path: Any,
                                                                  cls: type) -> None:
    async def main() -> None:
        async with cls(tmp_path / "q") as q:
            before = threading.active_count()
            waiting = asyncio.create_task(q.get())
            await settle()
            assert not waiting.done()
            await q.put((1, "here") if cls is AsyncPriorityQueue else "here")
            assert await asyncio.wait_for(waiting, 5) in ("here", (1, "here"))

            waiting = asyncio.create_task(q.get())
            await settle()
            assert not waiting.done() and not aio_threads()
            assert threading.active_count() == before
            blocking = q.blocking
            value = (1, "thread") if cls is AsyncPriorityQueue else "thread"
            putter = threading.Thread(target=blocking.put, args=(value,))
            putter.start()
            assert await asyncio.wait_for(waiting, 5) == value
            putter.join()
            assert not aio_threads() and len(q) == 0

    asyncio.run(main())


def test_a_task_woken_and_cancelled_before_it_ran_passes_the_wake_up_on(tmp_path: Any
                                                                         ) -> None:
    async def main() -> None:
        async with AsyncQueue(tmp_path / "q") as q:
            first = asyncio.create_task(q.get())
            second = asyncio.create_task(q.get())
            await settle()
            await q.put("only")  # wakes `first`, which has not run yet
            first.cancel()
            assert await asyncio.wait_for(second, 5) == "only"
            with pytest.raises(asyncio.CancelledError):
                await first
            assert len(q) == 0 and await q.in_flight() == 0

    asyncio.run(main())


def test_a_woken_task_that_finds_nothing_waits_again_at_the_front(tmp_path: Any) -> None:
    async def main() -> None:
        async with AsyncQueue(tmp_path / "q") as q:
            first = asyncio.create_task(q.get())
            second = asyncio.create_task(q.get())
            await settle()
            await q.put("taken by another")  # wakes `first`...
            assert q.blocking.get(block=False) == "taken by another"  # ...too late
            await settle()
            assert not first.done() and not second.done()
            await q.put("next")
            await settle()
            assert first.done() and not second.done()
            assert first.result() == "next"
            second.cancel()

    asyncio.run(main())


def test_an_ended_lease_wakes_a_waiting_task(tmp_path: Any) -> None:
    async def main() -> None:
        async with AsyncQueue(tmp_path / "q") as q:
            # a lease that runs when the task starts to wait
            await q.put("a")
            await q.reserve(lease=0.3)
            started = time.monotonic()
            assert await asyncio.wait_for(q.get(), 5) == "a"
            assert 0.25 <= time.monotonic() - started < 3

            # a lease made after the task started to wait: the put wakes the task, the
            # reserve takes the item before it runs, and its lease ends later
            waiting = asyncio.create_task(q.get())
            await settle()
            b = q.blocking
            b.put("b")
            b.reserve(lease=0.3)
            started = time.monotonic()
            await asyncio.sleep(0.1)
            assert not waiting.done()
            assert await asyncio.wait_for(waiting, 5) == "b"
            assert 0.25 <= time.monotonic() - started < 3
            assert await q.in_flight() == 0

    asyncio.run(main())


def test_a_directory_dropped_under_a_waiting_task_fails_it(tmp_path: Any) -> None:
    async def main() -> None:
        q = AsyncQueue(tmp_path / "q")
        waiting = asyncio.create_task(q.dequeue(block=True, timeout=30))
        await settle()
        dq.Queue(tmp_path / "q").drop()
        with pytest.raises(dq.Closed):
            await asyncio.wait_for(waiting, 5)
        await q.close()

    asyncio.run(main())


def test_a_timed_out_wait_leaves_no_watch_behind(tmp_path: Any) -> None:
    async def main() -> None:
        async with AsyncQueue(tmp_path / "q") as q:
            for _ in range(3):
                with pytest.raises(dq.Empty):
                    await q.dequeue(block=True, timeout=0.05)
            # nobody waits: the next take goes straight to the queue
            await q.put(1)
            assert (await q.dequeue(block=True)).value == 1
            assert not aio_threads()

    asyncio.run(main())


def test_one_handle_waits_on_one_loop_after_another(tmp_path: Any) -> None:
    q = AsyncQueue(tmp_path / "q")

    async def wait_for(value: int) -> Any:
        waiting = asyncio.create_task(q.get())
        await settle()
        threading.Thread(target=q.blocking.put, args=(value,)).start()
        return await asyncio.wait_for(waiting, 5)

    assert asyncio.run(wait_for(1)) == 1
    loop = asyncio.new_event_loop()
    assert loop.run_until_complete(wait_for(2)) == 2
    loop.close()  # with the end of its watch still scheduled on it
    assert asyncio.run(wait_for(3)) == 3
    asyncio.run(q.close())


CLIENT_PUTS = """
import sys
import diskqueue as dq
q = dq.Queue(sys.argv[1])
assert q.role == "client", q.role
for line in sys.stdin:
    q.put(line.strip())
q.close()
"""


def test_a_put_by_a_client_process_wakes_a_task_of_the_holder(tmp_path: Any) -> None:
    path = str(tmp_path / "q")

    async def main() -> None:
        async with AsyncQueue(path) as q:
            assert q.role == "owner"
            client = subprocess.Popen([sys.executable, "-c", CLIENT_PUTS, path],
                                      stdin=subprocess.PIPE, text=True, env=child_env(),
                                      cwd=REPO_ROOT)
            assert client.stdin is not None
            try:
                for i in range(5):
                    waiting = asyncio.create_task(q.get())
                    await settle()
                    client.stdin.write(f"m{i}\n")
                    client.stdin.flush()
                    assert await asyncio.wait_for(waiting, 30) == f"m{i}"
                    assert not aio_threads()
            finally:
                client.stdin.close()
                assert client.wait(30) == 0

    asyncio.run(main())
