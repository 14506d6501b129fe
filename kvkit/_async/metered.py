"""Measured services: one class decorator records every listed operation.

A service class lists its public operations once::

    @metered("queue", "push", "pop", ...)
    class AsyncQueueService: ...

and the client constructs its instances through its recorder
(``recorder.build(AsyncQueueService, "queue", backend.url, *args, **kwargs)``). The
decorator leaves the class as it is and builds a *measured variant* of it: a subclass
whose listed methods time each call and count it in the instance's meter. ``build``
constructs that variant when metrics are on and the plain class when they are off, so a
client with ``Settings.metrics=False`` runs the plain methods and pays nothing at all.
The recording itself (counters, buckets) is :mod:`kvkit._metrics`, shared by both
flavours.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from time import perf_counter
from typing import Any, TypeVar

from .._metrics import FAILED_OPEN, Hook, Meter

__all__ = ["metered"]

_C = TypeVar("_C", bound=type)


def metered(service: str, *ops: str, **renamed: str) -> Callable[[_C], _C]:
    """Class decorator: measure the methods ``ops``, and ``renamed`` (method name -> op name).

    ``renamed`` serves methods that implement a public operation under a private name
    (``_set="set"``: the public ``set`` and the legacy ``cache_set`` both go through it,
    so each call is counted once).

    Args:
        service: The ``service`` label (``"cache"``, ``"sessions"``, ``"queue"``, ...).
        *ops: Names of the methods to measure; the method name is the ``op`` label.
        **renamed: Further methods to measure under another ``op`` label.
    """

    def decorate(cls: _C) -> _C:
        if "_meter" not in vars(cls):
            cls._meter = None  # type: ignore[attr-defined]
        names = [*((name, name) for name in ops), *renamed.items()]
        namespace: dict[str, Any] = {name: _measured(vars(cls)[name], op) for name, op in names}
        # The variant shows as the class itself in reprs and tracebacks.
        namespace.update(
            __module__=cls.__module__, __qualname__=cls.__qualname__, __doc__=cls.__doc__
        )
        cls.metered_service = service  # type: ignore[attr-defined]
        cls.measured_variant = type(cls.__name__, (cls,), namespace)  # type: ignore[attr-defined]
        return cls

    return decorate


def _measured(fn: Callable[..., Awaitable[Any]], op: str) -> Callable[..., Awaitable[Any]]:
    @functools.wraps(fn)
    async def measured(self: Any, *args: Any, **kwargs: Any) -> Any:
        meter: Meter | None = self._meter
        if meter is None:
            return await fn(self, *args, **kwargs)
        # Read once: another thread may uninstrument the client meanwhile.
        hook = meter.hook
        if hook is not None:
            return await _hooked(hook, meter, op, fn, self, args, kwargs)
        start = perf_counter()
        try:
            result = await fn(self, *args, **kwargs)
        except Exception:
            meter.observe(op, perf_counter() - start, False)
            raise
        elapsed = perf_counter() - start
        if FAILED_OPEN.get() is None:
            meter.observe(op, elapsed, True)
        else:
            FAILED_OPEN.set(None)
            meter.observe(op, elapsed, False)
        return result

    return measured


async def _hooked(
    hook: Hook,
    meter: Meter,
    op: str,
    fn: Callable[..., Awaitable[Any]],
    obj: Any,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
) -> Any:
    """The measured call of an instrumented client: inside the hook's span."""
    with hook.span(meter, op) as span:
        start = perf_counter()
        try:
            result = await fn(obj, *args, **kwargs)
        except Exception as exc:
            elapsed = perf_counter() - start
            meter.observe(op, elapsed, False)
            hook.finish(meter, op, span, elapsed, exc)
            raise
        elapsed = perf_counter() - start
        error = FAILED_OPEN.get()
        if error is not None:
            FAILED_OPEN.set(None)
        meter.observe(op, elapsed, error is None)
        hook.finish(meter, op, span, elapsed, error)
        return result
