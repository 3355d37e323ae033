"""CPython's tests of asyncio.Queue (Lib/test/test_asyncio/test_queues.py, 3.12), ported
to run against AsyncQueue, AsyncStack and AsyncPriorityQueue on real directories.

What changed, and why:
- Each queue is a directory; ``make()`` opens one and the test closes it.
- Where CPython lets one loop step pass (``await asyncio.sleep(0)``) for a put to reach
  a waiting get, or a get to make room for a waiting put, this port lets the wake-up
  happen (``settle()``): a put reaches a waiting get through the dispatcher's thread,
  and a put waits for room by looking again after a millisecond or more.
- Left out: the tests of ``repr``/``str`` and ``_format`` (they read ``_getters``,
  ``_putters``, ``_queue``), ``test_get_with_putters`` (it appends to ``_putters``),
  ``test_generic_alias`` and ``test_float_maxsize`` (``maxsize`` is an int here, as in
  every diskqueue structure). The two tests that checked ``_getters``/``_putters``
  after a cancellation check instead that the cancelled task took nothing.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import unittest
from typing import Any

from diskqueue.aio import AsyncPriorityQueue, AsyncQueue, AsyncStack


async def settle() -> None:
    await asyncio.sleep(0.05)


class DiskCase(unittest.IsolatedAsyncioTestCase):
    q_class: Any = AsyncQueue

    def setUp(self) -> None:
        self.root = tempfile.mkdtemp(prefix="dq-aio-")
        self.addCleanup(shutil.rmtree, self.root, ignore_errors=True)
        self.handles: list[Any] = []

    async def asyncTearDown(self) -> None:
        for handle in self.handles:
            await handle.close()

    def make(self, maxsize: int = 0, cls: Any = None) -> Any:
        handle = (cls or self.q_class)(tempfile.mkdtemp(dir=self.root), maxsize=maxsize)
        self.handles.append(handle)
        return handle


class QueueBasicTests(DiskCase):

    async def test_empty(self) -> None:
        q = self.make()
        self.assertTrue(q.empty())
        await q.put(1)
        self.assertFalse(q.empty())
        self.assertEqual(1, await q.get())
        self.assertTrue(q.empty())

    async def test_full(self) -> None:
        q = self.make()
        self.assertFalse(q.full())

        q = self.make(maxsize=1)
        await q.put(1)
        self.assertTrue(q.full())

    async def test_order(self) -> None:
        q = self.make()
        for i in [1, 3, 2]:
            await q.put(i)

        items = [await q.get() for _ in range(3)]
        self.assertEqual([1, 3, 2], items)

    async def test_maxsize(self) -> None:
        q = self.make(maxsize=2)
        self.assertEqual(2, q.maxsize)
        have_been_put = []

        async def putter() -> bool:
            for i in range(3):
                await q.put(i)
                have_been_put.append(i)
            return True

        t = asyncio.create_task(putter())
        for _ in range(2):
            await asyncio.sleep(0)

        # The putter is blocked after putting two items.
        self.assertEqual([0, 1], have_been_put)
        self.assertEqual(0, await q.get())

        # Let the putter resume and put last item.
        await settle()
        self.assertEqual([0, 1, 2], have_been_put)
        self.assertEqual(1, await q.get())
        self.assertEqual(2, await q.get())

        self.assertTrue(t.done())
        self.assertTrue(t.result())


class QueueGetTests(DiskCase):

    async def test_blocking_get(self) -> None:
        q = self.make()
        q.put_nowait(1)

        self.assertEqual(1, await q.get())

    async def test_blocking_get_wait(self) -> None:
        loop = asyncio.get_running_loop()
        q = self.make()
        started = asyncio.Event()
        finished = False

        async def queue_get() -> Any:
            nonlocal finished
            started.set()
            res = await q.get()
            finished = True
            return res

        queue_get_task = asyncio.create_task(queue_get())
        await started.wait()
        self.assertFalse(finished)
        loop.call_later(0.01, q.put_nowait, 1)
        res = await queue_get_task
        self.assertTrue(finished)
        self.assertEqual(1, res)

    async def test_nonblocking_get(self) -> None:
        q = self.make()
        q.put_nowait(1)
        self.assertEqual(1, q.get_nowait())

    async def test_nonblocking_get_exception(self) -> None:
        q = self.make()
        self.assertRaises(asyncio.QueueEmpty, q.get_nowait)

    async def test_get_cancelled_race(self) -> None:
        q = self.make()

        t1 = asyncio.create_task(q.get())
        t2 = asyncio.create_task(q.get())

        await asyncio.sleep(0)
        t1.cancel()
        await asyncio.sleep(0)
        self.assertTrue(t1.done())
        await q.put('a')
        await asyncio.sleep(0)
        self.assertEqual('a', await t2)

    async def test_get_with_waiting_putters(self) -> None:
        q = self.make(maxsize=1)
        asyncio.create_task(q.put('a'))
        asyncio.create_task(q.put('b'))
        self.assertEqual(await q.get(), 'a')
        self.assertEqual(await q.get(), 'b')

    async def test_why_are_getters_waiting(self) -> None:
        async def consumer(queue: Any, num_expected: int) -> None:
            for _ in range(num_expected):
                await queue.get()

        async def producer(queue: Any, num_items: int) -> None:
            for i in range(num_items):
                await queue.put(i)

        producer_num_items = 5

        q = self.make(1)
        await asyncio.wait_for(asyncio.gather(producer(q, producer_num_items),
                                              consumer(q, producer_num_items)), 30)

    async def test_cancelled_getters_take_nothing(self) -> None:
        # was test_cancelled_getters_not_being_held_in_self_getters
        queue = self.make(maxsize=5)

        with self.assertRaises(asyncio.TimeoutError):
            await asyncio.wait_for(queue.get(), 0.1)

        # the getter that timed out must not swallow the next put
        queue.put_nowait("precious")
        await settle()
        self.assertEqual(queue.qsize(), 1)
        self.assertEqual(queue.get_nowait(), "precious")


class QueuePutTests(DiskCase):

    async def test_blocking_put(self) -> None:
        q = self.make()

        # No maxsize, won't block.
        await q.put(1)
        self.assertEqual(1, await q.get())

    async def test_blocking_put_wait(self) -> None:
        q = self.make(maxsize=1)
        started = asyncio.Event()
        finished = False

        async def queue_put() -> None:
            nonlocal finished
            started.set()
            await q.put(1)
            await q.put(2)
            finished = True

        loop = asyncio.get_running_loop()
        loop.call_later(0.01, q.get_nowait)
        queue_put_task = asyncio.create_task(queue_put())
        await started.wait()
        self.assertFalse(finished)
        await queue_put_task
        self.assertTrue(finished)

    async def test_nonblocking_put(self) -> None:
        q = self.make()
        q.put_nowait(1)
        self.assertEqual(1, q.get_nowait())

    async def test_get_cancel_drop_one_pending_reader(self) -> None:
        q = self.make()

        reader = asyncio.create_task(q.get())

        await asyncio.sleep(0)

        q.put_nowait(1)
        q.put_nowait(2)
        reader.cancel()

        try:
            await reader
        except asyncio.CancelledError:
            # try again
            reader = asyncio.create_task(q.get())
            await reader

        result = reader.result()
        # if we get 2, it means 1 got dropped!
        self.assertEqual(1, result)

    async def test_get_cancel_drop_many_pending_readers(self) -> None:
        q = self.make()

        reader1 = asyncio.create_task(q.get())
        reader2 = asyncio.create_task(q.get())
        reader3 = asyncio.create_task(q.get())

        await asyncio.sleep(0)

        q.put_nowait(1)
        q.put_nowait(2)
        reader1.cancel()

        with self.assertRaises(asyncio.CancelledError):
            await reader1

        await reader3
        await reader2

        # It is undefined in which order concurrent readers receive results.
        self.assertEqual({reader2.result(), reader3.result()}, {1, 2})

    async def test_put_cancel_drop(self) -> None:
        q = self.make(1)

        q.put_nowait(1)

        # putting a second item in the queue has to block (qsize=1)
        writer = asyncio.create_task(q.put(2))
        await asyncio.sleep(0)

        value1 = q.get_nowait()
        self.assertEqual(value1, 1)

        writer.cancel()
        try:
            await writer
        except asyncio.CancelledError:
            # try again
            writer = asyncio.create_task(q.put(2))
            await writer

        value2 = q.get_nowait()
        self.assertEqual(value2, 2)
        self.assertEqual(q.qsize(), 0)

    async def test_nonblocking_put_exception(self) -> None:
        q = self.make(maxsize=1)
        q.put_nowait(1)
        self.assertRaises(asyncio.QueueFull, q.put_nowait, 2)

    async def test_put_cancelled(self) -> None:
        q = self.make()

        async def queue_put() -> bool:
            await q.put(1)
            return True

        t = asyncio.create_task(queue_put())

        self.assertEqual(1, await q.get())
        self.assertTrue(t.done())
        self.assertTrue(t.result())

    async def test_put_cancelled_race(self) -> None:
        q = self.make(maxsize=1)

        put_a = asyncio.create_task(q.put('a'))
        put_b = asyncio.create_task(q.put('b'))
        put_c = asyncio.create_task(q.put('X'))

        await asyncio.sleep(0)
        self.assertTrue(put_a.done())
        self.assertFalse(put_b.done())

        put_c.cancel()
        await asyncio.sleep(0)
        self.assertTrue(put_c.done())
        self.assertEqual(q.get_nowait(), 'a')
        await settle()
        self.assertEqual(q.get_nowait(), 'b')

        await put_b

    async def test_put_with_waiting_getters(self) -> None:
        q = self.make()
        t = asyncio.create_task(q.get())
        await asyncio.sleep(0)
        await q.put('a')
        self.assertEqual(await t, 'a')

    async def test_why_are_putters_waiting(self) -> None:
        queue = self.make(2)

        async def putter(item: int) -> None:
            await queue.put(item)

        async def getter() -> None:
            await asyncio.sleep(0)
            num = queue.qsize()
            for _ in range(num):
                queue.get_nowait()

        await asyncio.wait_for(asyncio.gather(getter(), putter(0), putter(1), putter(2),
                                              putter(3)), 30)

    async def test_cancelled_puts_store_nothing(self) -> None:
        # was test_cancelled_puts_not_being_held_in_self_putters
        queue = self.make(maxsize=1)
        queue.put_nowait(1)

        put_task = asyncio.create_task(queue.put(2))
        await asyncio.sleep(0)

        put_task.cancel()
        with self.assertRaises(asyncio.CancelledError):
            await put_task
        self.assertEqual(queue.get_nowait(), 1)
        await settle()
        self.assertTrue(queue.empty())

    async def test_cancelled_put_silence_value_error_exception(self) -> None:
        queue = self.make(1)
        queue.put_nowait(1)

        put_task = asyncio.create_task(queue.put(1))
        await asyncio.sleep(0)

        queue.get_nowait()
        put_task.cancel()

        with self.assertRaises(asyncio.CancelledError):
            await put_task


class LifoQueueTests(DiskCase):
    q_class = AsyncStack

    async def test_order(self) -> None:
        q = self.make()
        for i in [1, 3, 2]:
            await q.put(i)

        items = [await q.get() for _ in range(3)]
        self.assertEqual([2, 3, 1], items)


class PriorityQueueTests(DiskCase):
    q_class = AsyncPriorityQueue

    async def test_order(self) -> None:
        q = self.make()
        for i in [1, 3, 2]:
            await q.put(i)

        items = [await q.get() for _ in range(3)]
        self.assertEqual([1, 2, 3], items)


class _QueueJoinTestMixin(DiskCase):

    async def test_task_done_underflow(self) -> None:
        q = self.make()
        self.assertRaises(ValueError, q.task_done)

    async def test_task_done(self) -> None:
        q = self.make()
        for i in range(100):
            q.put_nowait(i)

        accumulator = 0

        # Two workers get items from the queue and call task_done after each.
        # Join the queue and assert all items have been processed.
        running = True

        async def worker() -> None:
            nonlocal accumulator

            while running:
                item = await q.get()
                accumulator += item
                q.task_done()

        tasks = [asyncio.create_task(worker()) for _ in range(2)]

        await asyncio.wait_for(q.join(), 30)
        self.assertEqual(sum(range(100)), accumulator)

        # close running generators
        running = False
        for _ in range(len(tasks)):
            q.put_nowait(0)
        await asyncio.wait_for(asyncio.gather(*tasks), 30)

    async def test_join_empty_queue(self) -> None:
        q = self.make()

        # Test that a queue join()s successfully, and before anything else
        # (done twice for insurance).

        await q.join()
        await q.join()


class QueueJoinTests(_QueueJoinTestMixin):
    q_class = AsyncQueue


class LifoQueueJoinTests(_QueueJoinTestMixin):
    q_class = AsyncStack


class PriorityQueueJoinTests(_QueueJoinTestMixin):
    q_class = AsyncPriorityQueue


del _QueueJoinTestMixin  # run only through the three classes above
