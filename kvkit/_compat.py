"""Paired sync/async primitives.

The sync API is generated from the async source by ``scripts/unasync.py``, which renames
``AsyncX`` → ``X``, ``asleep`` → ``sleep`` and so on. Wherever sync and async code must
really differ (a blocking wait, the current event loop), the async source calls the
``Async``/``a``-prefixed half of a pair defined here, and the generated code calls the
other half: the difference lives in this one module, not in ``if`` branches in the logic.
"""

from __future__ import annotations

import asyncio
import inspect
import threading
import time
from collections.abc import Callable
from typing import Any

__all__ = [
    "AsyncEvent",
    "AsyncLock",
    "Event",
    "Lock",
    "acall",
    "acurrent_loop",
    "asleep",
    "call",
    "current_loop",
    "sleep",
]

# --- locks and events -------------------------------------------------------------------
AsyncLock = asyncio.Lock
Lock = threading.Lock
AsyncEvent = asyncio.Event
Event = threading.Event


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
