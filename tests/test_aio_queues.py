"""Every method of the async structures, on real directories, next to blocking handles."""

from __future__ import annotations

import asyncio
import inspect
import threading
import time
from typing import Any

import pytest

import diskqueue as dq
from diskqueue.aio import (
    AsyncEmpty,
    AsyncFull,
    AsyncPrefixQueue,
    AsyncPriorityQueue,
    AsyncQueue,
    AsyncStack,
)

PAIRS = [(AsyncQueue, dq.Queue), (AsyncStack, dq.Stack),
         (AsyncPriorityQueue, dq.PriorityQueue), (AsyncPrefixQueue, dq.PrefixQueue)]


def run(coro: Any) -> Any:
    return asyncio.run(coro)


@pytest.mark.parametrize("acls,bcls", PAIRS, ids=lambda c: c.__name__)
def test_same_methods_and_arguments_as_the_blocking_class(acls: type, bcls: type) -> None:
    blocking = {n for n in dir(bcls) if not n.startswith("_") and callable(getattr(bcls, n))}
    # the stdlib face's methods keep asyncio.Queue's shape (sync *_nowait, qsize...)
    face = {"put", "get", "put_nowait", "get_nowait", "qsize", "empty", "full",
            "task_done", "join"}
    for name in sorted(blocking):
        assert hasattr(acls, name), f"{acls.__name__} lacks {name}"
        if name in face:
            continue
        method = getattr(acls, name)
        assert inspect.iscoroutinefunction(method), f"{acls.__name__}.{name} is not async"
        mine = list(inspect.signature(method).parameters)
        theirs = list(inspect.signature(getattr(bcls, name)).parameters)
        assert mine == theirs, (name, mine, theirs)
    assert (list(inspect.signature(acls).parameters)
            == list(inspect.signature(bcls).parameters))


def test_queue_methods(tmp_path: Any) -> None:
    async def main() -> None:
        async with AsyncQueue(tmp_path / "q") as q:
            assert q.role == "owner" and not q and len(q) == 0
            a = await q.enqueue("a")
            assert (a.id, a.value) == (1, "a")
            assert [i.value for i in await q.enqueue_many(["b", "c", "d"])] == ["b", "c", "d"]
            assert (await q.peek()).value == "a"
            assert (await q.peek_by_offset(2)).value == "c"
            assert (await q.peek_by_id(2)).value == "b"
            assert (await q.update(2, "B")).value == "B"
            assert (await q.dequeue()).value == "a"
            assert [i.value for i in await q.dequeue_many(2)] == ["B", "c"]
            item = await q.reserve(lease=5)
            assert (item.value, item.attempts) == ("d", 1)
            assert await q.in_flight() == 1
            await q.nack(item)
            item = await q.reserve()
            assert item.attempts == 2
            await q.ack(item)
            assert await q.in_flight() == 0 and len(q) == 0
            for call in (q.dequeue(), q.peek(), q.reserve(), q.dequeue_many(3)):
                with pytest.raises(AsyncEmpty):
                    await call
            await q.enqueue_many([1, 2])
            with pytest.raises(dq.OutOfBounds):
                await q.peek_by_id(99)
            await q.clear()
            assert len(q) == 0
            with pytest.raises(TypeError):
                await q.enqueue(object())
            with pytest.raises(ValueError):
                await q.reserve(lease=0)
        assert q.closed
        with pytest.raises(dq.Closed):
            len(q)
        with pytest.raises(dq.Closed):
            await q.enqueue(1)
        await q.close()  # idempotent
        q2 = AsyncQueue(tmp_path / "q")
        await q2.drop()
        assert not (tmp_path / "q").exists()

    run(main())


def test_stack_methods(tmp_path: Any) -> None:
    async def main() -> None:
        async with AsyncStack(tmp_path / "s") as s:
            await s.push(1)
            await s.push_many([2, 3])
            assert (await s.peek()).value == 3
            assert (await s.peek_by_offset(2)).value == 1
            assert (await s.peek_by_id(2)).value == 2
            await s.update(2, 20)
            assert (await s.pop()).value == 3
            assert [i.value for i in await s.pop_many(5)] == [20, 1]
            with pytest.raises(AsyncEmpty):
                await s.pop()
            task = asyncio.create_task(s.pop_many(3, block=True))
            await asyncio.sleep(0.05)
            await s.push_many([7, 8])
            assert [i.value for i in await task] == [8, 7]
            with pytest.raises(ValueError):
                await s.pop(block=True, raw=True)

    run(main())


def test_priority_methods(tmp_path: Any) -> None:
    async def main() -> None:
        async with AsyncPriorityQueue(tmp_path / "p", order="desc") as p:
            assert p.order == "desc"
            await p.enqueue(1, "low")
            await p.enqueue_many([(5, "high"), (3, "mid")])
            assert await p.priorities() == [5, 3, 1]
            assert await p.length(3) == 1
            assert (await p.peek()).value == "high"
            assert (await p.peek_by_offset(1)).value == "mid"
            assert (await p.peek_by_priority_id(1, 1)).value == "low"
            await p.update(1, 1, "LOW")
            assert (await p.dequeue_by_priority(3)).value == "mid"
            item = await p.reserve()
            assert (item.priority, item.value) == (5, "high")
            await p.ack(item)
            assert [i.value for i in await p.dequeue_many(3)] == ["LOW"]
            waiting = asyncio.create_task(p.dequeue_by_priority(9, block=True, timeout=5))
            await asyncio.sleep(0.05)
            await p.enqueue(2, "other")
            await p.enqueue(9, "nine")
            assert (await waiting).value == "nine"
            assert (await p.dequeue(block=True, timeout=1)).value == "other"
            with pytest.raises(AsyncEmpty):
                await p.dequeue_by_priority(9, block=True, timeout=0.05)

    run(main())


def test_prefix_methods(tmp_path: Any) -> None:
    async def main() -> None:
        async with AsyncPrefixQueue(tmp_path / "x") as x:
            await x.enqueue("a", 1)
            await x.enqueue_many(b"b", [2, 3])
            assert await x.prefixes() == [b"a", b"b"]
            assert await x.length("b") == 2 and len(x) == 3
            assert (await x.peek("b")).value == 2
            assert (await x.peek_by_offset("b", 1)).value == 3
            assert (await x.peek_by_id("a", 1)).value == 1
            await x.update("a", 1, 10)
            item = await x.reserve("a")
            assert (item.prefix, item.value) == (b"a", 10)
            await x.nack(item, front=False)
            assert (await x.dequeue("a")).value == 10
            assert [i.value for i in await x.dequeue_many("b", 5)] == [2, 3]
            waiting = [asyncio.create_task(x.dequeue(p, block=True, timeout=5))
                       for p in ("a", b"a", "c")]
            await asyncio.sleep(0.05)
            await x.enqueue("c", "C")
            await x.enqueue_many("a", ["A1", "A2"])
            assert [(await t).value for t in waiting] == ["A1", "A2", "C"]
            await x.enqueue_many("a", [1, 2])
            await x.enqueue("b", 3)
            assert [i.value async for i in x] == [1, 2, 3]
            with pytest.raises(TypeError):
                await x.dequeue(5, block=True)  # type: ignore[arg-type]

    run(main())


@pytest.mark.parametrize("acls,bcls", PAIRS[:3], ids=lambda c: c.__name__)
def test_async_and_blocking_handles_share_a_directory(tmp_path: Any, acls: type,
                                                      bcls: type) -> None:
    path = tmp_path / "d"
    put = (lambda h, v: h.enqueue(1, v)) if acls is AsyncPriorityQueue else (
        lambda h, v: h.push(v) if acls is AsyncStack else h.enqueue(v))

    async def main() -> None:
        async with acls(path) as a:
            b = bcls(path)
            await put(a, "from async")
            assert len(b) == 1 and b.peek().value == "from async"
            # a blocking put from another thread wakes a waiting task
            waiting = asyncio.create_task(a.get())
            await asyncio.sleep(0.05)
            threading.Thread(target=lambda: b.put((1, "x") if bcls is dq.PriorityQueue
                                                  else "x")).start()
            got = await asyncio.wait_for(waiting, 5)
            assert got in ("from async", (1, "from async"))
            assert (await a.get()) in ("x", (1, "x"))
            assert b.qsize() == 0
            b.close()

    run(main())


def test_waiting_takes_time_out_and_are_woken(tmp_path: Any) -> None:
    async def main() -> None:
        async with AsyncQueue(tmp_path / "q") as q:
            started = time.monotonic()
            with pytest.raises(asyncio.QueueEmpty):
                await q.dequeue(block=True, timeout=0.1)
            assert 0.09 <= time.monotonic() - started < 2
            tasks = [asyncio.create_task(q.dequeue(block=True)) for _ in range(5)]
            await asyncio.sleep(0.05)
            await q.enqueue_many(range(5))
            # the oldest waiter gets the oldest item
            assert [(await t).value for t in tasks] == list(range(5))
            reserving = asyncio.create_task(q.reserve(block=True, lease=30))
            many = asyncio.create_task(q.dequeue_many(10, block=True, timeout=5))
            await asyncio.sleep(0.05)
            await q.enqueue("r")
            await asyncio.sleep(0.05)
            await q.enqueue_many(["m1", "m2"])
            # two kinds of take, two dispatchers: either may come first
            r = await reserving
            assert r.attempts == 1
            await q.ack(r)
            got = await many
            assert all(i.attempts == 0 for i in got)
            rest = [i.value for i in await q.dequeue_many(5)] if len(q) else []
            assert sorted([r.value, *(i.value for i in got), *rest]) == ["m1", "m2", "r"]

    run(main())


def test_close_fails_the_waiters_and_gives_back(tmp_path: Any) -> None:
    async def main() -> None:
        q = AsyncQueue(tmp_path / "q")
        waiting = [asyncio.create_task(q.get()) for _ in range(3)]
        await asyncio.sleep(0.05)
        await q.close()
        for task in waiting:
            with pytest.raises(dq.Closed):
                await task
        with dq.Queue(tmp_path / "q") as b:
            assert b.in_flight() == 0

    run(main())


def test_async_for_until_empty_or_for_ever(tmp_path: Any) -> None:
    async def main() -> None:
        async with AsyncQueue(tmp_path / "q") as q:
            await q.enqueue_many([1, 2, 3])
            assert [i.value async for i in q] == [1, 2, 3]
            assert len(q) == 0

            async def later() -> None:
                await asyncio.sleep(0.05)
                await q.enqueue_many(["a", "b"])

            feeder = asyncio.create_task(later())
            seen = []
            async for item in q.consume(wait=True):
                seen.append(item.value)
                if len(seen) == 2:
                    break
            await feeder
            assert seen == ["a", "b"]
            assert [i async for i in q.consume(wait=True, timeout=0.05)] == []

    run(main())


def test_idle_means_no_thread(tmp_path: Any) -> None:
    async def main() -> None:
        async with AsyncQueue(tmp_path / "q") as q:
            before = threading.active_count()
            with pytest.raises(AsyncEmpty):
                await q.dequeue(block=True, timeout=0.05)
            deadline = time.monotonic() + 3
            while threading.active_count() > before and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            assert threading.active_count() == before
            assert not [t for t in threading.enumerate() if t.name.startswith("diskqueue.aio")]

    run(main())


def test_face_errors_are_asyncio_errors(tmp_path: Any) -> None:
    async def main() -> None:
        async with AsyncQueue(tmp_path / "q", maxsize=1) as q:
            q.put_nowait(1)
            with pytest.raises(asyncio.QueueFull):
                q.put_nowait(2)
            with pytest.raises(dq.Full):
                q.put_nowait(2)
            assert q.full() and q.qsize() == 1 and not q.empty()
            putting = asyncio.create_task(q.put(2))
            await asyncio.sleep(0.05)
            assert not putting.done()
            assert q.get_nowait() == 1
            await asyncio.wait_for(putting, 5)
            assert q.get_nowait() == 2
            with pytest.raises(asyncio.QueueEmpty):
                q.get_nowait()
            with pytest.raises(dq.Empty):
                q.get_nowait()
            assert AsyncFull.__mro__.index(asyncio.QueueFull) > 0

    run(main())


def test_priority_face_reads_what_the_blocking_face_put(tmp_path: Any) -> None:
    path = tmp_path / "p"
    with dq.PriorityQueue(path) as b:
        b.put(5)
        b.put((1, "a"))
        b.put([2, "x", "y"])
        b.put((3, "t", "tie"))

    async def main() -> None:
        async with AsyncPriorityQueue(path) as p:
            assert p.get_nowait() == (1, "a")
            assert await p.get() == [2, "x", "y"]
            assert await p.get() == (3, "t", "tie")
            assert await p.get() == 5
            # a get that waits is handed the item through the dispatcher
            waiting = asyncio.create_task(p.get())
            await asyncio.sleep(0.05)
            threading.Thread(target=lambda: dq.PriorityQueue(path).put((7, "late"))).start()
            assert await asyncio.wait_for(waiting, 5) == (7, "late")
            with pytest.raises(TypeError):
                await p.put("no priority")
            assert await p.in_flight() == 0 and len(p) == 0

    run(main())


def test_an_undecodable_item_reaches_the_waiting_task_and_stays(tmp_path: Any) -> None:
    path = tmp_path / "q"

    async def main() -> None:
        async with AsyncQueue(path, codec="json") as q:
            waiting = asyncio.create_task(q.dequeue(block=True, timeout=5))
            await asyncio.sleep(0.05)
            with dq.Queue(path, codec="raw") as raw:
                raw.enqueue(b"\xff not json")
            with pytest.raises(dq.Undecodable):
                await waiting
            assert len(q) == 1 and await q.in_flight() == 0
            item = await q.dequeue(raw=True)
            assert item.value == b"\xff not json"

    run(main())


FORKS_WHILE_WAITING = r"""
import asyncio, os, sys, threading, time
import diskqueue as dq
from diskqueue.aio import AsyncQueue

path = sys.argv[1]
q = AsyncQueue(path)
waiting = threading.Event()

def loop_thread():
    async def wait():
        waiting.set()
        try:
            await q.dequeue(block=True, timeout=2)
        except dq.Empty:
            pass
    asyncio.run(wait())

t = threading.Thread(target=loop_thread)
t.start()
waiting.wait()
time.sleep(0.2)  # the dispatcher's thread is in its take now
pid = os.fork()
if pid == 0:  # the parent's dispatcher thread did not come along
    async def child():
        return await q.dequeue(block=True, timeout=10)
    try:
        item = asyncio.run(child())
        os._exit(0 if item.value == "for the child" else 2)
    except BaseException as exc:
        os.write(2, repr(exc).encode())
        os._exit(3)
t.join()
dq.Queue(path).put("for the child")
_, status = os.waitpid(pid, 0)
print("child", os.waitstatus_to_exitcode(status), flush=True)
"""


def test_a_forked_child_waits_with_its_own_thread(tmp_path: Any) -> None:
    from faults import run_py

    res = run_py(FORKS_WHILE_WAITING, str(tmp_path / "q"), timeout=60)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "child 0", res.stderr
