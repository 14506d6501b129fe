"""Pipelined Redis I/O without the I/O: command packing, reply parsing, reply dispatch.

Auto-pipelining (``kvkit._autopipeline``) writes many callers' commands into one
connection and hands each reply to the caller whose command it answers. Everything here
is the bookkeeping of that, with no socket and no event loop, so it is written once and
tested on its own:

* :func:`pack_command` turns ``("GET", key)`` into RESP bytes (hiredis' C packer when
  installed, else the same bytes built in Python).
* :func:`reply_reader` returns an incremental reply parser (``feed(bytes)``, ``gets()``
  returning ``False`` until a whole reply is in): hiredis' ``Reader`` when installed, else
  :class:`PyReplyReader`. Error replies come out as redis-py exception *instances*
  (``NoScriptError``, ``ResponseError``...), exactly the classes redis-py itself raises.
* :class:`ReplyQueue` keeps the callers' waiters in the order their commands were written
  and gives reply *n* to waiter *n*. A waiter that is already done (its caller was
  cancelled) still consumes its reply, which is then dropped: a reply can never move to
  another caller, because the queue position, not the caller, decides who gets it.
"""

from __future__ import annotations

import collections
import copy
from collections.abc import Callable
from typing import Any, Protocol

from redis._parsers.base import BaseParser
from redis.exceptions import ConnectionError, InvalidResponse, ReadOnlyError

__all__ = [
    "HIREDIS",
    "HOLD",
    "LINGER",
    "Push",
    "PyReplyReader",
    "ReplyQueue",
    "Waiter",
    "command_key",
    "fresh_error",
    "pack_command",
    "parse_error",
    "reply_reader",
]

_hiredis: Any
try:
    import hiredis as _hiredis
except ImportError:  # pragma: no cover - exercised when kvkit[fast] is not installed
    _hiredis = None

HIREDIS = _hiredis is not None
"""Whether hiredis (C packer and parser) is installed."""

HOLD = 0.05
"""Seconds a busy pipeline keeps one borrowed connection before it rotates to another."""

LINGER = 0.005
"""Seconds an idle pipeline keeps its borrowed connection before giving it back.

Giving the connection back at the first idle moment costs a pool check-out (with its
liveness check) and two task switches per request in a server whose requests each make
one call: the usual case. Keeping it a few milliseconds covers the gap to the next
request; a pool user that needs the connection waits at most this long once the
pipeline falls idle (and at most about ``HOLD`` while it is busy).
"""


def parse_error(message: str) -> Exception:
    """The redis-py exception for an error reply (``NOSCRIPT ...`` → ``NoScriptError``)."""
    exc: Exception = BaseParser.parse_error(message)  # type: ignore[no-untyped-call]
    return exc


# --------------------------------------------------------------------------- packing


def _py_pack(args: tuple[Any, ...]) -> bytes:
    parts = [b"*%d\r\n" % len(args)]
    for arg in args:
        if isinstance(arg, bytes):
            data = arg
        elif isinstance(arg, str):
            data = arg.encode()
        elif isinstance(arg, bool):
            raise TypeError("a command argument must be str, bytes, int or float, not bool")
        elif isinstance(arg, int):
            data = b"%d" % arg
        elif isinstance(arg, float):
            data = repr(arg).encode()
        elif isinstance(arg, (bytearray, memoryview)):
            data = bytes(arg)
        else:
            raise TypeError(
                f"a command argument must be str, bytes, int or float, not {type(arg).__name__}"
            )
        parts += (b"$%d\r\n" % len(data), data, b"\r\n")
    return b"".join(parts)


def pack_command(args: tuple[Any, ...]) -> bytes:
    """Return the RESP request for ``args`` (``("GET", "k")``; ``"SCRIPT LOAD"`` splits).

    Raises:
        TypeError: an argument is not str, bytes, int or float.
    """
    first = args[0]
    if isinstance(first, str) and " " in first:
        # redis-py accepts multi-word command names ("SCRIPT LOAD"); so do we.
        args = (*first.split(), *args[1:])
    if _hiredis is not None:
        # hiredis refuses bool and None with a TypeError, as the Python packer does.
        return bytes(_hiredis.pack_command(args))
    return _py_pack(args)


# Commands kvkit sends through ``command()`` whose first argument is their (first) key.
_KEY_FIRST = frozenset(
    ("GET", "SET", "MGET", "DEL", "UNLINK", "EXISTS", "PTTL", "PEXPIRE", "INCRBY", "HGETALL")
)


def command_key(args: tuple[Any, ...]) -> Any:
    """The key a command is routed by on Cluster, or ``None`` (keyless or unknown).

    Multi-key commands must keep their keys in one hash slot (the server refuses others),
    so their first key decides.
    """
    name = args[0].upper() if isinstance(args[0], str) else ""
    if name in _KEY_FIRST:
        return args[1] if len(args) > 1 else None
    if name in ("EVALSHA", "EVAL"):
        return args[3] if len(args) > 3 and int(args[2]) > 0 else None
    if name == "XREADGROUP":
        for index, arg in enumerate(args):
            if isinstance(arg, str) and arg.upper() == "STREAMS" and index + 1 < len(args):
                return args[index + 1]
    return None


# --------------------------------------------------------------------------- parsing

_NOT_ENOUGH = False  # what gets() returns until a whole reply has been fed


class Push(list):  # type: ignore[type-arg]
    """A RESP3 push message (``>``) from :class:`PyReplyReader`: no command's reply."""


# Out-of-band messages a reader may return between replies (never a command's reply).
PUSH_TYPES: tuple[type, ...] = (Push,) + (
    (_hiredis.PushNotification,) if getattr(_hiredis, "PushNotification", None) else ()
)


class PyReplyReader:
    """A pure-Python incremental RESP2/RESP3 parser with hiredis ``Reader``'s interface.

    ``feed(data)`` appends bytes; ``gets()`` returns the next whole reply, or ``False``
    while it is incomplete. Bulk strings come out as ``bytes``, nulls as ``None``, errors
    as the redis-py exception instances of :func:`parse_error`, maps as dicts, sets as
    lists, push messages (``>``) as :class:`Push` -- what hiredis returns.
    """

    __slots__ = ("_buf", "_pos")

    def __init__(self) -> None:
        self._buf = bytearray()
        self._pos = 0

    def feed(self, data: bytes) -> None:
        """Append bytes received from the server."""
        if self._pos:
            del self._buf[: self._pos]
            self._pos = 0
        self._buf += data

    def gets(self) -> Any:
        """Return the next complete reply, or ``False`` if more bytes are needed."""
        try:
            reply, pos = self._parse(self._pos)
        except _Incomplete:
            return _NOT_ENOUGH
        self._pos = pos
        return reply

    def _line(self, pos: int) -> tuple[bytes, int]:
        end = self._buf.find(b"\r\n", pos)
        if end < 0:
            raise _Incomplete
        return bytes(self._buf[pos:end]), end + 2

    def _parse(self, pos: int) -> tuple[Any, int]:
        if pos >= len(self._buf):
            raise _Incomplete
        kind = bytes(self._buf[pos : pos + 1])
        line, pos = self._line(pos + 1)
        if kind == b"$":
            size = int(line)
            if size < 0:
                return None, pos
            if len(self._buf) < pos + size + 2:
                raise _Incomplete
            return bytes(self._buf[pos : pos + size]), pos + size + 2
        if kind == b":":
            return int(line), pos
        if kind == b"+":
            return line, pos
        if kind == b"-":
            return parse_error(line.decode("utf-8", "replace")), pos
        if kind in (b"*", b">", b"~", b"%", b"|"):
            count = int(line)
            if count < 0:
                return None, pos
            if kind in (b"%", b"|"):
                count *= 2
            items = []
            for _ in range(count):
                item, pos = self._parse(pos)
                items.append(item)
            if kind == b"|":  # attributes annotate the reply that follows them
                return self._parse(pos)
            if kind == b"%":
                return dict(zip(items[::2], items[1::2], strict=True)), pos
            return (Push(items) if kind == b">" else items), pos
        if kind in (b"=", b"!"):
            size = int(line)
            if len(self._buf) < pos + size + 2:
                raise _Incomplete
            data = bytes(self._buf[pos : pos + size])
            if kind == b"!":
                return parse_error(data.decode("utf-8", "replace")), pos + size + 2
            return data[4:], pos + size + 2  # "txt:" / "mkd:" format prefix
        if kind == b"_":
            return None, pos
        if kind == b"#":
            return line == b"t", pos
        if kind == b",":
            return float(line), pos
        if kind == b"(":
            return int(line), pos
        raise InvalidResponse(f"protocol error, got {kind + line!r} as reply type byte")


class _Incomplete(Exception):
    """More bytes are needed (internal to :class:`PyReplyReader`)."""


def reply_reader() -> Any:
    """Return a fresh incremental reply parser (hiredis when installed)."""
    if _hiredis is not None:
        return _hiredis.Reader(protocolError=InvalidResponse, replyError=parse_error)
    return PyReplyReader()


# --------------------------------------------------------------------------- dispatch


class Waiter(Protocol):
    """What :class:`ReplyQueue` needs of a caller's waiter (an asyncio or thread future)."""

    def done(self) -> bool: ...
    def set_result(self, result: Any, /) -> None: ...
    def set_exception(self, exception: BaseException, /) -> None: ...


class ReplyQueue:
    """The waiters of the commands written on one connection, in write order.

    Reply *n* read from the connection answers command *n*; :meth:`feed` gives each reply
    to the waiter at the head and drops it if that waiter is done already (a caller that
    was cancelled). When the connection fails, :meth:`fail_all` fails every waiter still
    queued: none of them can be answered any more.
    """

    __slots__ = ("_reader", "_waiters", "readonly", "replies")

    def __init__(self, reader: Any = None) -> None:
        self._reader = reader if reader is not None else reply_reader()
        self._waiters: collections.deque[Waiter] = collections.deque()
        # Replies dispatched so far (a timeout sees whether the connection progresses).
        self.replies = 0
        # Whether a READONLY error came back: the connection reached a replica (e.g. a
        # failed-over master) and must be dropped, not reused.
        self.readonly = False

    def __len__(self) -> int:
        return len(self._waiters)

    def push(self, waiter: Waiter) -> None:
        """Queue the waiter of a command that is about to be written."""
        self._waiters.append(waiter)

    def feed(self, data: bytes) -> None:
        """Parse ``data`` and dispatch every reply it completes, in order.

        Raises:
            InvalidResponse: the bytes are not RESP (the connection must be dropped).
            ConnectionError: a reply arrived with no command waiting for it.
        """
        reader = self._reader
        reader.feed(data)
        waiters = self._waiters
        while True:
            reply = reader.gets()
            if reply is False:
                return
            if isinstance(reply, PUSH_TYPES):
                # Out of band (RESP3), e.g. "tracking-redir-broken": no command's reply.
                # The near cache learns of a lost invalidation channel from the channel.
                continue
            if not waiters:
                raise ConnectionError("a reply arrived that no command was waiting for")
            waiter = waiters.popleft()
            self.replies += 1
            if isinstance(reply, ReadOnlyError):
                self.readonly = True
            if waiter.done():
                continue  # its caller is gone: the reply is dropped, never passed on
            if isinstance(reply, Exception):
                waiter.set_exception(reply)
            else:
                waiter.set_result(reply)

    def fail_all(self, make_error: Callable[[], BaseException]) -> None:
        """Fail every queued waiter with a fresh ``make_error()`` (the connection is gone)."""
        waiters = self._waiters
        while waiters:
            waiter = waiters.popleft()
            if not waiter.done():
                waiter.set_exception(make_error())


def fresh_error(exc: BaseException) -> BaseException:
    """A copy of ``exc`` for one more waiter of a failed connection.

    One instance raised in many callers would accumulate all their tracebacks.
    """
    if not isinstance(exc, Exception):
        return ConnectionError("the connection could not be obtained")
    clone = copy.copy(exc)
    clone.__cause__ = exc.__cause__
    clone.__traceback__ = None
    return clone
