"""Make public names claim the module users import them from (no I/O)."""

from __future__ import annotations

import inspect
import typing
from collections.abc import Iterable
from typing import Any

__all__ = ["publish"]


def publish(namespace: dict[str, Any], names: Iterable[str], module: str) -> None:
    """Show the classes ``names`` of ``namespace`` as ``module.X`` rather than their home.

    Tracebacks, ``repr`` of classes and error reports then name what users import (httpx
    does the same), rather than a private module such as ``kvkit._errors``. Pickling still
    works because every name is importable from ``module`` itself. Values that are not
    classes (``FOREVER``, functions) keep their module.

    Args:
        namespace: The public module's globals.
        names: The public names (its ``__all__``).
        module: The public module's name.
    """
    for name in names:
        value = namespace[name]
        if not isinstance(value, type) or not value.__module__.startswith("kvkit."):
            continue
        own = inspect.get_annotations(value)
        if own:
            # typing.get_type_hints() evaluates string annotations in the namespace of
            # __module__: resolve them in the defining module first, or hints such as
            # ``Any`` would stop resolving once the class claims to live elsewhere.
            try:
                hints = typing.get_type_hints(value)
            except NameError:  # names imported only under TYPE_CHECKING: leave as they are
                pass
            else:
                value.__annotations__ = {key: hints[key] for key in own}
        value.__module__ = module
