"""``sessions`` rows: kvkit sessions vs the equivalent raw redis-py calls.

kvkit keeps a session in a hash (one field per data item, each encoded on its own, plus
metadata) and runs each operation as one Lua script: ``get`` reads the hash and slides
the idle TTL (capped by the absolute lifetime, kept in the hash); ``update`` merges
changes atomically and returns the new data. The raw baselines do the same data work in
one ``MULTI`` transaction, without the lifetime cap or the id checks:

* get: ``MULTI; HGETALL; PEXPIRE; EXEC`` + ``json.loads`` of each field;
* update: ``MULTI; HDEL; HSET; PEXPIRE; HGETALL; EXEC`` + decoding the new data.
"""

from __future__ import annotations

import functools
import json
from typing import Any

from .common import PREFIX, kvkit_async, kvkit_sync, redis_async, redis_sync
from .harness import Case, Env, register

SESSION: dict[str, Any] = {
    "user_id": 123,
    "csrf": "kYbVQ4bFzV1m8j3u2oXo3Q",
    "cart": [17, 42, 99],
    "theme": "dark",
    "flash": None,
}
"""A small web session."""

TTL_MS = 86_400_000
RAW_KEY = f"{PREFIX}:raws:{{abcdefgh}}session"
"""The raw session hash (kvkit's: ``kvbench:session:{TAG}SECRET``)."""

CHANGES = {"theme": "light", "last_page": "/cart"}
REMOVE = ("flash",)


def _raw_fields(data: dict[str, Any]) -> dict[str, str]:
    return {f"d:{k}": json.dumps(v) for k, v in data.items()}


def _raw_decode(raw: dict[bytes, bytes]) -> dict[str, Any]:
    return {k[2:].decode(): json.loads(v) for k, v in raw.items() if k.startswith(b"d:")}


def _sync(env: Env, op: str) -> Case:
    client = kvkit_sync(env)
    store = client.sessions
    raw = redis_sync(env)
    sid = store.create(SESSION)
    raw.delete(RAW_KEY)
    raw.hset(RAW_KEY, mapping=_raw_fields(SESSION))
    raw.pexpire(RAW_KEY, TTL_MS)

    def kvkit_get() -> Any:
        return store.get(sid)

    def base_get() -> Any:
        pipe = raw.pipeline()
        pipe.hgetall(RAW_KEY)
        pipe.pexpire(RAW_KEY, TTL_MS)
        return _raw_decode(pipe.execute()[0])

    def kvkit_update() -> Any:
        return store.update(sid, CHANGES, remove=REMOVE)

    def base_update() -> Any:
        pipe = raw.pipeline()
        pipe.hdel(RAW_KEY, *(f"d:{k}" for k in REMOVE))
        pipe.hset(RAW_KEY, mapping=_raw_fields(CHANGES))
        pipe.pexpire(RAW_KEY, TTL_MS)
        pipe.hgetall(RAW_KEY)
        return _raw_decode(pipe.execute()[-1])

    def check() -> None:
        if op == "get" and kvkit_get() != base_get():
            raise RuntimeError("the session get rows do not read the same data")
        if op == "update" and kvkit_update() != base_update():
            raise RuntimeError("the session update rows do not produce the same data")

    def teardown() -> None:
        store.delete(sid)
        raw.delete(RAW_KEY)
        client.close()
        raw.close()

    check()
    if op == "get":
        return Case(kvkit_get, base_get, teardown, check)
    return Case(kvkit_update, base_update, teardown, check)


async def _async(env: Env, op: str) -> Case:
    client = kvkit_async(env)
    store = client.sessions
    raw = redis_async(env)
    sid = await store.create(SESSION)
    await raw.delete(RAW_KEY)
    await raw.hset(RAW_KEY, mapping=_raw_fields(SESSION))
    await raw.pexpire(RAW_KEY, TTL_MS)

    async def kvkit_get() -> Any:
        return await store.get(sid)

    async def base_get() -> Any:
        pipe = raw.pipeline()
        pipe.hgetall(RAW_KEY)
        pipe.pexpire(RAW_KEY, TTL_MS)
        return _raw_decode((await pipe.execute())[0])

    async def kvkit_update() -> Any:
        return await store.update(sid, CHANGES, remove=REMOVE)

    async def base_update() -> Any:
        pipe = raw.pipeline()
        pipe.hdel(RAW_KEY, *(f"d:{k}" for k in REMOVE))
        pipe.hset(RAW_KEY, mapping=_raw_fields(CHANGES))
        pipe.pexpire(RAW_KEY, TTL_MS)
        pipe.hgetall(RAW_KEY)
        return _raw_decode((await pipe.execute())[-1])

    async def check() -> None:
        if op == "get" and await kvkit_get() != await base_get():
            raise RuntimeError("the session get rows do not read the same data")
        if op == "update" and await kvkit_update() != await base_update():
            raise RuntimeError("the session update rows do not produce the same data")

    async def teardown() -> None:
        await store.delete(sid)
        await raw.delete(RAW_KEY)
        await client.aclose()
        await raw.aclose()

    await check()
    if op == "get":
        return Case(kvkit_get, base_get, teardown, check)
    return Case(kvkit_update, base_update, teardown, check)


for _op, _base in (
    ("get", "MULTI HGETALL PEXPIRE EXEC + json"),
    ("update", "MULTI HDEL HSET PEXPIRE HGETALL EXEC + json"),
):
    register(
        "sessions",
        f"sessions.{_op}",
        mode="sync",
        baseline=f"redis-py {_base}",
        ops=3000,
    )(functools.partial(_sync, op=_op))
    register(
        "sessions",
        f"sessions.{_op}",
        mode="async",
        baseline=f"redis.asyncio {_base}",
        ops=3000,
    )(functools.partial(_async, op=_op))
