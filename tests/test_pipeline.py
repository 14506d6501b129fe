"""The pipelining bookkeeping without I/O: packing, reply parsing, reply dispatch."""

from __future__ import annotations

import asyncio
import random

import pytest
from redis._parsers import Encoder
from redis.connection import PythonRespSerializer
from redis.exceptions import ConnectionError, NoScriptError, ReadOnlyError, ResponseError

from kvkit._pipeline import (
    HIREDIS,
    Push,
    PyReplyReader,
    ReplyQueue,
    command_key,
    pack_command,
    reply_reader,
)

ARGS = [
    ("GET", "kvkit:cache:user:1"),
    ("SET", "k", b"\x00\xffbytes", "PX", 300000),
    ("EVALSHA", "a" * 40, 1, "k", "", -5, 1.5),
    ("MGET", "ключ", "k2"),
]

# RESP2 and RESP3 replies, and what hiredis (and the pure-Python reader) return for them.
REPLIES = [
    (b"+OK\r\n", b"OK"),
    (b":-42\r\n", -42),
    (b"$5\r\nhello\r\n", b"hello"),
    (b"$0\r\n\r\n", b""),
    (b"$-1\r\n", None),
    (b"*-1\r\n", None),
    (b"*3\r\n$1\r\na\r\n$-1\r\n:7\r\n", [b"a", None, 7]),
    (b"*2\r\n*1\r\n+x\r\n*0\r\n", [[b"x"], []]),
    (b"_\r\n", None),
    (b"#t\r\n", True),
    (b",1.5\r\n", 1.5),
    (b"%1\r\n+a\r\n:1\r\n", {b"a": 1}),
    (b"~2\r\n:1\r\n:2\r\n", [1, 2]),
    (b"=8\r\ntxt:abcd\r\n", b"abcd"),
]


def _packer(args):
    encode = Encoder("utf-8", "strict", False).encode
    return b"".join(PythonRespSerializer(1 << 20, encode).pack(*args))


@pytest.mark.parametrize("args", ARGS)
def test_pack_command_matches_redis_py(args):
    """The packed bytes are exactly what redis-py would send for the same arguments."""
    assert pack_command(args) == _packer(args)


def test_pack_command_splits_multi_word_names_and_refuses_bad_types():
    """'SCRIPT LOAD' is two tokens (as in redis-py); bool and None are refused."""
    assert pack_command(("SCRIPT LOAD", "return 1")) == _packer((b"SCRIPT", b"LOAD", b"return 1"))
    for bad in (True, None, object()):
        with pytest.raises(TypeError):
            pack_command(("SET", "k", bad))


def test_command_key_routes_by_the_first_key():
    """Cluster routing: the first key of keyed commands, None for keyless ones."""
    assert command_key(("GET", "a")) == "a"
    assert command_key(("MGET", "a", "b")) == "a"
    assert command_key(("EVALSHA", "sha", 2, "k1", "k2", "arg")) == "k1"
    assert command_key(("EVALSHA", "sha", 0, "arg")) is None
    assert command_key(("XREADGROUP", "GROUP", "g", "c", "COUNT", 1, "STREAMS", "s", ">")) == "s"
    assert command_key(("SCRIPT LOAD", "return 1")) is None
    assert command_key(("PING",)) is None


def _readers():
    readers = [PyReplyReader]
    if HIREDIS:
        readers.append(reply_reader)
    return readers


@pytest.mark.parametrize("make", _readers())
def test_readers_parse_every_reply_type_split_anywhere(make):
    """Each reply parses to the same value fed whole or byte by byte, in sequence."""
    stream = b"".join(raw for raw, _ in REPLIES)
    expected = [value for _, value in REPLIES]
    for chunk in (len(stream), 1, 3, 7):
        reader = make()
        got = []
        for i in range(0, len(stream), chunk):
            reader.feed(stream[i : i + chunk])
            while (reply := reader.gets()) is not False:
                got.append(reply)
        assert got == expected


@pytest.mark.parametrize("make", _readers())
def test_readers_return_error_replies_as_redis_py_exceptions(make):
    """Error replies come out as the exception classes redis-py raises, not raised."""
    reader = make()
    reader.feed(b"-NOSCRIPT No matching script\r\n-ERR bad\r\n-READONLY replica\r\n")
    errors = [reader.gets(), reader.gets(), reader.gets()]
    assert [type(e) for e in errors] == [NoScriptError, ResponseError, ReadOnlyError]
    assert str(errors[1]) == "bad"
    assert reader.gets() is False


class _Waiter:
    def __init__(self, done=False):
        self._done = done
        self.result = self.error = None

    def done(self):
        return self._done

    def set_result(self, result):
        self._done, self.result = True, result

    def set_exception(self, exc):
        self._done, self.error = True, exc


def test_reply_queue_answers_in_order_and_drops_replies_of_done_waiters():
    """Reply n goes to waiter n; a cancelled waiter's reply is consumed, never passed on."""
    queue = ReplyQueue(PyReplyReader())
    waiters = [_Waiter(done=(i % 3 == 1)) for i in range(30)]
    for waiter in waiters:
        queue.push(waiter)
    stream = b"".join(b"$%d\r\n%d\r\n" % (len(str(i)), i) for i in range(30))
    pos = 0
    while pos < len(stream):  # arbitrary chunking, as TCP delivers it
        step = random.randint(1, 9)
        queue.feed(stream[pos : pos + step])
        pos += step
    for i, waiter in enumerate(waiters):
        expected = None if i % 3 == 1 else str(i).encode()
        assert waiter.result == expected
    assert len(queue) == 0 and queue.replies == 30


def test_reply_queue_skips_push_messages_and_flags_readonly():
    """A RESP3 push is no reply; a READONLY error marks the connection as a replica's."""
    queue = ReplyQueue(PyReplyReader())
    first, second = _Waiter(), _Waiter()
    queue.push(first)
    queue.push(second)
    queue.feed(b">2\r\n$21\r\ntracking-redir-broken\r\n:5\r\n+OK\r\n-READONLY no\r\n")
    assert first.result == b"OK"
    assert isinstance(second.error, ReadOnlyError)
    assert queue.readonly
    assert isinstance(Push([1]), list)


def test_reply_queue_refuses_a_reply_nobody_asked_for_and_fails_all():
    """An unexpected reply is a broken stream; fail_all fails every queued waiter."""
    queue = ReplyQueue(PyReplyReader())
    with pytest.raises(ConnectionError):
        queue.feed(b"+OK\r\n")
    waiters = [_Waiter(), _Waiter(done=True), _Waiter()]
    for waiter in waiters:
        queue.push(waiter)
    queue.fail_all(lambda: ConnectionError("gone"))
    assert isinstance(waiters[0].error, ConnectionError)
    assert waiters[1].error is None
    assert isinstance(waiters[2].error, ConnectionError)


def test_reply_queue_works_with_asyncio_futures():
    """asyncio futures are waiters: a cancelled one does not take the next reply."""

    async def scenario():
        loop = asyncio.get_running_loop()
        queue = ReplyQueue()
        futures = [loop.create_future() for _ in range(3)]
        for future in futures:
            queue.push(future)
        futures[1].cancel()
        queue.feed(b":1\r\n:2\r\n:3\r\n")
        return [f.cancelled() or f.result() for f in futures]

    assert asyncio.run(scenario()) == [1, True, 3]
