"""The no-I/O half of the cache service: how ``@cached`` turns a call into a key.

Shared by :mod:`kvkit._async.cache` and its generated sync twin.
"""

from __future__ import annotations

import hashlib
import inspect
from collections.abc import Callable
from typing import Any

from ._errors import InvalidArgument
from ._serde import Codec

__all__ = ["key_maker"]


def key_maker(
    func: Callable[..., Any], key: str | Callable[..., str] | None, codec: Codec
) -> Callable[..., str]:
    """Build the function that turns a call's arguments into a cache key.

    Args:
        func: The decorated function.
        key: A template (``"user:{user_id}"``), a callable returning the key, or ``None``
            for a key made of the function's name and encoded arguments.
        codec: The client's codec (encodes the arguments of the default key).

    Raises:
        InvalidArgument: ``key`` is none of these.
    """
    if callable(key):
        return key
    signature = inspect.signature(func)
    if isinstance(key, str):
        template = key

        def from_template(*args: Any, **kwargs: Any) -> str:
            bound = signature.bind(*args, **kwargs)
            bound.apply_defaults()
            return template.format(**bound.arguments)

        return from_template
    if key is not None:
        raise InvalidArgument(
            f"key must be None, a str template or a callable, not {type(key).__name__!r}"
        )
    base = f"{func.__module__}.{func.__qualname__}"

    def from_arguments(*args: Any, **kwargs: Any) -> str:
        bound = signature.bind(*args, **kwargs)
        bound.apply_defaults()
        arguments = dict(bound.arguments)
        # Methods: the instance is not part of the key (it rarely serializes, and the
        # cache is keyed on what the method computes from its arguments).
        if next(iter(signature.parameters), None) in ("self", "cls"):
            arguments.pop(next(iter(signature.parameters)))
        encoded = codec.encode(base, arguments)
        if len(encoded) <= 200:
            return f"{base}:{encoded.decode()}"
        return f"{base}:sha256:{hashlib.sha256(encoded).hexdigest()}"

    return from_arguments
