"""The public surface: exports, error hierarchy, import cost and isolation."""

from __future__ import annotations

import importlib
import pickle
import subprocess
import sys
import traceback
import types
import typing

import kvkit


def test_all_is_exactly_the_public_surface():
    """kvkit.__all__ lists exactly the public names, and each exists."""
    public = {
        name
        for name, value in vars(kvkit).items()
        if not name.startswith("_") and not isinstance(value, types.ModuleType)
    } - {"annotations"}
    assert set(kvkit.__all__) - {"__version__"} == public
    for name in kvkit.__all__:
        assert getattr(kvkit, name) is not None


def test_error_hierarchy():
    """Errors derive from KVKitError and the builtin the spec names."""
    assert issubclass(kvkit.ConfigError, (kvkit.KVKitError, ValueError))
    assert issubclass(kvkit.InvalidArgument, ValueError)
    assert issubclass(kvkit.SerializationError, TypeError)
    assert issubclass(kvkit.DecodeError, ValueError)
    assert issubclass(kvkit.BackendUnavailable, (kvkit.BackendError, ConnectionError))
    assert issubclass(kvkit.BackendTimeout, (kvkit.BackendError, TimeoutError))
    assert issubclass(kvkit.AuthenticationError, kvkit.BackendError)
    for cls in (
        kvkit.ConfigError,
        kvkit.InvalidArgument,
        kvkit.SerializationError,
        kvkit.DecodeError,
        kvkit.BackendError,
    ):
        assert issubclass(cls, kvkit.KVKitError)


def test_import_pulls_in_no_optional_dependency():
    """import kvkit imports neither fakeredis, web frameworks nor redis itself."""
    code = (
        "import sys, kvkit; bad = [m for m in ('fakeredis', 'fastapi', 'flask', 'starlette', "
        "'orjson_never', 'redis', 'pickle_never') if m in sys.modules]; print(','.join(bad))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_constructing_a_client_does_no_io():
    """A client on an unreachable server constructs without connecting."""
    code = (
        "import sys, socket, kvkit\n"
        "def deny(*a, **k): raise AssertionError('I/O in constructor')\n"
        "socket.socket.connect = deny\n"
        "c = kvkit.Client('redis://127.0.0.1:1/0'); a = kvkit.AsyncClient('redis://127.0.0.1:1/0')\n"
        "c.cache; c.redis(); print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "ok"


def test_public_names_live_in_kvkit():
    """Every exported class claims module ``kvkit``, so reprs and tracebacks name kvkit.X."""
    for name in kvkit.__all__:
        value = getattr(kvkit, name)
        if isinstance(value, type):
            assert value.__module__ == "kvkit", name
            assert getattr(importlib.import_module(value.__module__), value.__qualname__) is value
    assert repr(kvkit.BackendUnavailable) == "<class 'kvkit.BackendUnavailable'>"


def test_traceback_names_the_public_path():
    """A raised kvkit error is shown as kvkit.BackendUnavailable, not kvkit._errors.…."""
    try:
        raise kvkit.BackendUnavailable("redis://h:6379/0: unavailable")
    except kvkit.BackendUnavailable as exc:
        text = "".join(traceback.format_exception(exc))
    assert "kvkit.BackendUnavailable: redis://h:6379/0: unavailable" in text
    assert "_errors" not in text


def test_errors_survive_pickling():
    """Errors cross process boundaries (multiprocessing, pytest-xdist) under their new path."""
    for cls in (kvkit.ConfigError, kvkit.BackendTimeout, kvkit.AuthenticationError):
        copy = pickle.loads(pickle.dumps(cls("boom")))
        assert type(copy) is cls and str(copy) == "boom"


def test_type_hints_still_resolve():
    """Moving __module__ keeps typing.get_type_hints() working on the attrs data classes."""
    for cls in (kvkit.Settings, kvkit.Message, kvkit.QueueStats, kvkit.Health, kvkit.Check):
        hints = typing.get_type_hints(cls)
        assert hints, cls
    assert typing.get_type_hints(kvkit.Message)["payload"] is typing.Any
    assert "Settings(url=" in repr(kvkit.Settings())


BACKENDS_ALL = {
    "AsyncBackend",
    "AsyncCacheDriver",
    "AsyncLimiterDriver",
    "AsyncLockDriver",
    "AsyncQueueDriver",
    "AsyncSessionDriver",
    "Backend",
    "CacheDriver",
    "IncrRefused",
    "LimiterDriver",
    "LockDriver",
    "ParsedURL",
    "QueueDriver",
    "RawMessage",
    "SchemeSpec",
    "SessionDriver",
    "SessionRecord",
    "register_scheme",
    "schemes",
}


def test_backends_module_is_the_extension_point():
    """kvkit.backends exports exactly the registry and the contracts a backend implements."""
    import kvkit.backends as backends

    assert set(backends.__all__) == BACKENDS_ALL
    assert len(backends.__all__) == len(BACKENDS_ALL)
    public = {
        name
        for name, value in vars(backends).items()
        if not name.startswith("_") and not isinstance(value, types.ModuleType)
    } - {"annotations"}
    assert public == BACKENDS_ALL
    for name in backends.__all__:
        value = getattr(backends, name)
        assert value.__doc__, name  # documented for implementers
        if isinstance(value, type):
            assert value.__module__ == "kvkit.backends", name
    assert repr(backends.AsyncBackend) == "<class 'kvkit.backends.AsyncBackend'>"


def test_backends_contracts_are_the_ones_kvkit_uses():
    """The public classes are the driver layer's own ABCs, not copies."""
    import kvkit.backends as backends
    from kvkit._async.backends import base as async_base
    from kvkit._async.backends.redis import AsyncRedisBackend
    from kvkit._sync.backends import base as sync_base
    from kvkit._sync.backends.memory import MemoryBackend

    for name in ("Backend", "CacheDriver", "SessionDriver", "QueueDriver"):
        assert getattr(backends, name) is getattr(sync_base, name)
        assert getattr(backends, "Async" + name) is getattr(async_base, "Async" + name)
    assert issubclass(AsyncRedisBackend, backends.AsyncBackend)
    assert issubclass(MemoryBackend, backends.Backend)
    assert issubclass(backends.IncrRefused, kvkit.InvalidArgument)


def test_importing_kvkit_does_not_import_the_extension_point():
    """import kvkit stays cheap: kvkit.backends loads only when imported itself."""
    code = "import sys, kvkit; print('kvkit.backends' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_readme_imports_nothing_private():
    """README examples import only public modules (kvkit, kvkit.backends, kvkit.ext.*)."""
    import re
    from pathlib import Path

    readme = (Path(kvkit.__file__).resolve().parent.parent / "README.md").read_text()
    code = "\n".join(re.findall(r"^```python\n(.*?)^```", readme, re.S | re.M))
    private = re.findall(r"\bkvkit(?:\.\w+)*\._\w+", code)
    assert private == []
    assert "from kvkit.backends import" in code
