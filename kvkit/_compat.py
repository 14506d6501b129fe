"""Paired sync/async primitives.

The sync API is generated from the async source by ``scripts/unasync.py``, which renames
``AsyncX`` → ``X``, ``asleep`` → ``sleep`` and so on. Wherever sync and async code must
really differ (a blocking wait, the current event loop), the async source calls the
``Async``/``a``-prefixed half of a pair defined here, and the generated code calls the
other half: the difference lives in this one module, not in ``if`` branches in the logic.

Only generic pairs live here; pairs that work around a redis-py behaviour live beside the
Redis drivers, in :mod:`kvkit._redis_compat`.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import math
import os
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from ._loops import LoopLocal

__all__ = [
    "AsyncCancelCheck",
    "AsyncEvent",
    "AsyncGate",
    "AsyncMutex",
    "AsyncRepeater",
    "AsyncShield",
    "AsyncTimeLimit",
    "AsyncWorkers",
    "CancelCheck",
    "Event",
    "Gate",
    "Mutex",
    "Notifier",
    "Repeater",
    "Shield",
    "TimeLimit",
    "Workers",
    "acall",
    "acurrent_loop",
    "asleep",
    "await_notified",
    "call",
    "current_loop",
    "sleep",
    "wait_notified",
]

# --- mutexes and events ------------------------------------------------------------------
# In-process mutexes. Not called "Lock": kvkit.Lock / kvkit.AsyncLock are the public
# distributed locks, and the generator maps AsyncX -> X for both pairs alike.
AsyncMutex = asyncio.Lock
Mutex = threading.Lock
AsyncEvent = asyncio.Event
Event = threading.Event


# --- bounded admission (a pool bound for clients whose redis-py pool cannot wait) ---------
class AsyncGate:
    """At most ``size`` concurrent holders; a caller waits up to a timeout for a free slot.

    Created per event loop (asyncio primitives bind to the loop that first waits on them).
    """

    def __init__(self, size: int) -> None:
        self._semaphore = asyncio.Semaphore(size)

    async def acquire(self, timeout: float) -> bool:
        """Take a slot; return ``False`` if none was free within ``timeout`` seconds."""
        if not self._semaphore.locked():
            # Fast path: a free slot is taken without suspending and without a timer task.
            await self._semaphore.acquire()
            return True
        try:
            await asyncio.wait_for(self._semaphore.acquire(), timeout)
        except asyncio.TimeoutError:
            return False
        return True

    def release(self) -> None:
        """Give a slot back."""
        self._semaphore.release()


class Gate:
    """At most ``size`` concurrent holders; a thread waits up to a timeout for a free slot."""

    def __init__(self, size: int) -> None:
        self._semaphore = threading.BoundedSemaphore(size)

    def acquire(self, timeout: float) -> bool:
        """Take a slot; return ``False`` if none was free within ``timeout`` seconds."""
        return self._semaphore.acquire(timeout=timeout)

    def release(self) -> None:
        """Give a slot back."""
        self._semaphore.release()


# --- sleeping -----------------------------------------------------------------------------
async def asleep(seconds: float) -> None:
    """Sleep without blocking the event loop."""
    await asyncio.sleep(seconds)


def sleep(seconds: float) -> None:
    """Sleep, blocking the calling thread."""
    time.sleep(seconds)


# --- event loop identity ----------------------------------------------------------------
def acurrent_loop() -> object:
    """Return the running event loop (loop-bound resources are rebuilt when it changes)."""
    return asyncio.get_running_loop()


def current_loop() -> object:
    """Return ``None``: sync resources are not bound to an event loop."""
    return None


# --- calling user code that may or may not be a coroutine function ------------------------
async def acall(func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Call ``func`` and await the result when it is awaitable (sync or async factories)."""
    result = func(*args, **kwargs)
    if inspect.isawaitable(result):
        result = await result
    return result


def call(func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Call ``func`` (the sync API only accepts sync callables)."""
    return func(*args, **kwargs)


# --- waking waiters in threads and event loops alike --------------------------------------
class Notifier:
    """A wake-up signal that blocked threads and waiting event-loop tasks can share.

    Waiters read :attr:`version` *before* checking whatever they wait for, then wait with
    that version: a :meth:`notify` that happened in between makes the wait return at once,
    so no wake-up is ever lost. :meth:`notify` may be called from any thread; tasks of
    any event loop are woken with ``call_soon_threadsafe`` (no polling).
    """

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._futures: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = []
        self.version = 0

    def notify(self) -> None:
        """Wake every current waiter."""
        with self._cond:
            self.version += 1
            self._cond.notify_all()
            futures, self._futures = self._futures, []
        for loop, future in futures:
            # A closed loop raises RuntimeError: nobody is waiting there any more.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(_resolve, future)

    def wait(self, version: int, timeout: float | None) -> bool:
        """Block until notified after ``version`` or ``timeout`` s; return whether notified."""
        with self._cond:
            if self.version != version:
                return True
            self._cond.wait(timeout)
            return self.version != version

    async def wait_async(self, version: int, timeout: float | None) -> bool:
        """Like :meth:`wait`, without blocking the event loop."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        entry = (loop, future)
        with self._cond:
            if self.version != version:
                return True
            self._futures.append(entry)
        try:
            await asyncio.wait_for(future, timeout)
        except asyncio.TimeoutError:
            pass
        finally:
            with self._cond:
                if entry in self._futures:
                    self._futures.remove(entry)
        return self.version != version


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


async def await_notified(notifier: Notifier, version: int, timeout: float | None) -> bool:
    """Wait (in a task) until ``notifier`` fires after ``version``; see :class:`Notifier`."""
    return await notifier.wait_async(version, timeout)


def wait_notified(notifier: Notifier, version: int, timeout: float | None) -> bool:
    """Wait (blocking the thread) until ``notifier`` fires after ``version``."""
    return notifier.wait(version, timeout)


# --- running workers concurrently: tasks (async) / threads (sync) --------------------------
class AsyncWorkers:
    """Run coroutine functions concurrently, as tasks of the running event loop."""

    def __init__(self) -> None:
        self._tasks: list[asyncio.Future[Any]] = []

    def start(self, func: Callable[..., Any], *args: Any) -> None:
        """Start ``func(*args)`` as a task."""
        self._tasks.append(asyncio.ensure_future(func(*args)))

    async def join(self) -> None:
        """Wait for every worker; re-raise the first failure. Cancelling cancels them all."""
        results = await asyncio.gather(*self._tasks, return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result


class Workers:
    """Run functions concurrently, each in a daemon thread."""

    def __init__(self) -> None:
        self._threads: list[threading.Thread] = []
        self._errors: list[BaseException] = []

    def start(self, func: Callable[..., Any], *args: Any) -> None:
        """Start ``func(*args)`` in a new thread."""

        def run() -> None:
            try:
                func(*args)
            except BaseException as exc:  # handed to join(), which re-raises it
                self._errors.append(exc)

        thread = threading.Thread(target=run, name="kvkit-worker", daemon=True)
        thread.start()
        self._threads.append(thread)

    def join(self) -> None:
        """Wait for every worker; re-raise the first failure."""
        for thread in self._threads:
            thread.join()
        if self._errors:
            raise self._errors[0]


# --- repeating a call in the background ----------------------------------------------------
class AsyncRepeater:
    """Calls ``func(*args)`` every ``interval`` seconds until it returns False.

    Every repeater of an event loop waits on one timer of that loop (no task, no timer of
    its own), so starting and stopping one costs two dict operations: a repeater stopped
    before its first call (a lock released quickly) leaves nothing behind. Each call runs
    in a task. ``func`` handles its own errors (one that escapes ends the repeating and is
    reported by the event loop). :meth:`stop` may come before :meth:`start`, from any
    thread (from another thread it takes effect at the next due time).
    """

    def __init__(self, interval: float, func: Callable[..., Awaitable[bool]], *args: Any) -> None:
        self._interval = interval
        self._call = functools.partial(func, *args)
        self.stopped = False
        self._timers: _LoopTimers | None = None

    def start(self) -> None:
        """Start repeating on the running event loop."""
        if not self.stopped:
            self._timers = _loop_timers.get(asyncio.get_running_loop())
            self._timers.add(self, self._interval)

    def stop(self) -> None:
        """Stop repeating; a call in progress finishes (its outcome is not waited for)."""
        self.stopped = True
        if self._timers is not None:
            self._timers.remove(self)

    def due(self) -> None:
        """Make one call in a task (the loop's timer calls this when it is due)."""
        task = asyncio.ensure_future(self._once())
        _RUNNING.add(task)  # the loop itself keeps only weak references to tasks
        task.add_done_callback(_RUNNING.discard)

    async def _once(self) -> None:
        if await self._call() and not self.stopped and self._timers is not None:
            self._timers.add(self, self._interval)


_RUNNING: set[asyncio.Future[Any]] = set()


class _LoopTimers:
    """The one timer of an event loop, shared by all its repeaters."""

    def __init__(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._jobs: dict[AsyncRepeater, float] = {}  # -> due, in loop time
        self._timer: asyncio.TimerHandle | None = None
        self._timer_due = math.inf

    def add(self, job: AsyncRepeater, delay: float) -> None:
        due = self._loop.time() + delay
        self._jobs[job] = due
        if due < self._timer_due:
            self._arm(due)

    def remove(self, job: AsyncRepeater) -> None:
        # Only on the loop's own thread; from elsewhere ``job.stopped`` is enough. The
        # timer stays: when it fires early for nothing, it just waits for the next due.
        with contextlib.suppress(RuntimeError):
            if asyncio.get_running_loop() is self._loop:
                self._jobs.pop(job, None)

    def _arm(self, due: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = self._loop.call_at(due, self._fire)
        self._timer_due = due

    def _fire(self) -> None:
        # Armed only for a job due before the current timer: jobs of one interval come
        # in due order, so a busy loop re-arms once per interval, not once per job.
        self._timer, self._timer_due = None, math.inf
        now = self._loop.time()
        ready = [job for job, due in self._jobs.items() if due <= now]
        for job in ready:
            del self._jobs[job]
            if not job.stopped:
                job.due()
        if self._jobs:
            self._arm(min(self._jobs.values()))

    def close(self) -> None:
        """Forget everything (the loop has closed: nothing can run there any more)."""
        self._jobs.clear()


_loop_timers: LoopLocal[_LoopTimers] = LoopLocal(_LoopTimers, _LoopTimers.close)


class Repeater:
    """Calls ``func(*args)`` every ``interval`` seconds, in the background, until it returns False.

    Every repeater of the process runs on one daemon thread (started on first use, and
    again in a forked child), one call at a time: a thread per repeater would cost more
    than the short jobs it serves. ``func`` handles its own errors (one that escapes ends
    the repeating). :meth:`stop` may come before :meth:`start`, from any thread.
    """

    def __init__(self, interval: float, func: Callable[..., bool], *args: Any) -> None:
        self._interval = interval
        self._call = functools.partial(func, *args)
        self.stopped = False

    def start(self) -> None:
        """Start repeating on the shared background thread."""
        if not self.stopped:
            _scheduler.add(self, time.monotonic() + self._interval)

    def stop(self) -> None:
        """Stop repeating; a call in progress finishes (its outcome is not waited for)."""
        self.stopped = True
        _scheduler.remove(self)

    def due(self) -> float | None:
        """Make one call (on the background thread); the next due time, or None to stop."""
        try:
            again = self._call()
        except Exception:  # ends the repeating, like an error escaping the async twin's task
            return None
        return time.monotonic() + self._interval if again and not self.stopped else None


class _Scheduler:
    """The one background thread of every :class:`Repeater`: due times in a dict."""

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._jobs: dict[Repeater, float] = {}  # -> due, monotonic
        self._next = math.inf  # the due time the thread waits for (or was told about)
        self._running = False

    def add(self, job: Repeater, due: float) -> None:
        with self._cond:
            if not self._running:  # first use, or a forked child (threads do not survive)
                self._running = True
                thread = threading.Thread(target=self._run, name="kvkit-repeater", daemon=True)
                thread.start()
            self._jobs[job] = due
            # Wake the thread only for a job due before what it already waits for: jobs
            # of one interval come in due order, so a busy process wakes it once per
            # interval, not once per job.
            if due < self._next:
                self._next = due
                self._cond.notify()

    def forked(self) -> None:
        """In a forked child: no thread runs, and the parent's jobs are not ours."""
        self._cond = threading.Condition(threading.Lock())
        self._jobs = {}
        self._next = math.inf
        self._running = False

    def remove(self, job: Repeater) -> None:
        with self._cond:
            self._jobs.pop(job, None)

    def _run(self) -> None:
        while True:
            with self._cond:
                while True:
                    now = time.monotonic()
                    ready = [job for job, due in self._jobs.items() if due <= now]
                    if ready:
                        for job in ready:
                            del self._jobs[job]
                        break
                    if self._jobs:
                        self._next = min(self._jobs.values())
                    elif self._next <= now:
                        self._next = math.inf  # idle: the next add wakes the thread
                    self._cond.wait(None if math.isinf(self._next) else self._next - now)
            for job in ready:
                following = job.due()
                if following is not None:
                    with self._cond:
                        if not job.stopped:
                            self._jobs[job] = following


_scheduler = _Scheduler()
if hasattr(os, "register_at_fork"):  # not on Windows, which does not fork
    os.register_at_fork(after_in_child=_scheduler.forked)


# --- finishing a step whatever happens to its caller ---------------------------------------
class AsyncShield:
    """Run a step that must not stop halfway, even when the awaiting task is cancelled."""

    @staticmethod
    async def run(func: Callable[..., Awaitable[Any]], *args: Any) -> Any:
        """Run ``func(*args)`` as a task and await it shielded; return its result.

        A cancelled caller gets its ``CancelledError`` at once while the task goes on to
        its end; its outcome is then dropped (log inside ``func`` what must be seen).
        """
        task = asyncio.ensure_future(func(*args))
        task.add_done_callback(_retrieved)
        return await asyncio.shield(task)


def _retrieved(task: asyncio.Future[Any]) -> None:
    # Mark the outcome as seen, so that a step whose caller went away does not end in
    # asyncio's "exception was never retrieved".
    if not task.cancelled():
        task.exception()


class Shield:
    """Run a step that must not stop halfway (a thread cannot be cancelled: a plain call)."""

    @staticmethod
    def run(func: Callable[..., Any], *args: Any) -> Any:
        """Call ``func(*args)`` and return its result."""
        return func(*args)


# --- noticing a cancellation that was lost on the way ---------------------------------------
class AsyncCancelCheck:
    """Notices that the running task was asked to cancel, even if the error never came.

    On Python 3.11 ``asyncio.wait_for`` returns the inner result when the inner future
    finishes just as the task is cancelled: no ``CancelledError`` is raised, though the
    request stays counted (``Task.cancelling()``). redis-py sends every command under
    ``wait_for``, so an operation cancelled at that moment carries on as if nothing
    happened. Steps that must not outlive a cancellation check here between round trips.
    Create it in the task, before the steps.
    """

    def __init__(self) -> None:
        self._task = asyncio.current_task()
        self._start = self._requests()

    def _requests(self) -> int:
        cancelling = getattr(self._task, "cancelling", None)  # Python >= 3.11
        return int(cancelling()) if cancelling is not None else 0

    def check(self) -> None:
        """Raise ``CancelledError`` if a cancel was requested since this object was made."""
        if self._requests() > self._start:
            raise asyncio.CancelledError


class CancelCheck:
    """Threads cannot be cancelled: there is never anything to notice."""

    def check(self) -> None:
        """Do nothing."""


# --- running calls concurrently under one time limit (health checks) ------------------------
class AsyncTimeLimit:
    """Run coroutine functions concurrently, giving up on those not done in time."""

    @staticmethod
    async def gather(calls: Sequence[Callable[[], Awaitable[Any]]], timeout: float) -> list[Any]:
        """Run every call as a task; return each one's result or the exception it raised.

        A call still running after ``timeout`` seconds is cancelled and reported as a
        :class:`TimeoutError`. The calls' own exceptions are returned, never raised, and a
        ``TimeoutError`` the call raised itself is not mistaken for running out of time.
        """
        tasks = [asyncio.ensure_future(call()) for call in calls]
        try:
            if tasks:
                await asyncio.wait(tasks, timeout=timeout)
        finally:
            late = [task for task in tasks if not task.done()]
            for task in late:
                task.cancel()
            if late:
                await asyncio.wait(late)
        results: list[Any] = []
        for task in tasks:
            if task.cancelled():
                results.append(TimeoutError(f"no answer within {timeout:g} s"))
            else:
                exc = task.exception()
                results.append(task.result() if exc is None else exc)
        return results


class TimeLimit:
    """Run functions concurrently in threads, giving up on those not done in time."""

    @staticmethod
    def gather(calls: Sequence[Callable[[], Any]], timeout: float) -> list[Any]:
        """Run every call in a daemon thread; return each one's result or exception.

        A call still running after ``timeout`` seconds is reported as a
        :class:`TimeoutError`; its thread is abandoned and finishes on its own (threads
        cannot be cancelled, so callers bound the work itself with socket timeouts).
        """
        late = TimeoutError(f"no answer within {timeout:g} s")
        results: list[Any] = [late] * len(calls)
        lock = threading.Lock()
        finished = False

        def run(index: int, call: Callable[[], Any]) -> None:
            try:
                value = call()
            except Exception as exc:  # returned to the caller, like asyncio.gather's
                value = exc
            with lock:
                if not finished:
                    results[index] = value

        threads = [
            threading.Thread(target=run, args=(i, call), name="kvkit-timelimit", daemon=True)
            for i, call in enumerate(calls)
        ]
        deadline = time.monotonic() + timeout
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        with lock:
            finished = True
            return list(results)
