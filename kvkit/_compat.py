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
    "adrop_client",
    "acurrent_loop",
    "asleep",
    "call",
    "current_loop",
    "drop_client",
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


# --- dropping a redis client without awaiting ----------------------------------------------
def adrop_client(client: Any) -> None:
    """Release a redis.asyncio client that belongs to another (usually closed) event loop.

    Its connections cannot be awaited from the current loop, and closing their transports
    normally would schedule callbacks on a loop that may be closed. So their sockets are
    closed directly and the connections forgotten, which also keeps asyncio and redis-py
    from warning about unclosed transports when they are garbage collected.
    """
    pool = getattr(client, "connection_pool", None)
    if pool is None:
        return
    connections = list(getattr(pool, "_available_connections", ()))
    connections += list(getattr(pool, "_in_use_connections", ()))
    for conn in connections:
        writer = getattr(conn, "_writer", None)
        transport = getattr(writer, "transport", None)
        if transport is not None:
            loop = getattr(transport, "_loop", None)
            if loop is not None and not loop.is_closed():
                transport.abort()
            else:
                # The loop is gone: close the socket ourselves and mark the transport
                # closed, which is what its own close() would have done on the loop.
                sock = getattr(transport, "_sock", None)
                if sock is not None:
                    sock.close()
                    transport._sock = None
                transport._closing = True
        conn._reader = None
        conn._writer = None


def drop_client(client: Any) -> None:
    """Close a sync redis-py client (sync clients are not bound to an event loop)."""
    client.close()
