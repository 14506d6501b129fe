"""``queues`` rows: kvkit queues vs raw redis-py stream commands.

kvkit does more per message than the raw commands it is compared with, on purpose (the
queue's guarantees): message ids that survive redelivery (an id index), at-least-once leases with a
delivery count, acknowledged entries deleted so that the stream does not grow, an
idempotent push. The raw baselines are what a redis-py user writes for the bare minimum:

* push: ``XADD stream * payload <json>``; push_many: those XADDs in one pipeline;
* pop + ack: ``XREADGROUP ... COUNT n`` (parsed by redis-py), decode each payload, then
  ``XACK`` the entry ids (entries are never deleted: the raw stream grows).

Pop rows refill both queues before each timed slice (untimed), so that every pop finds
``count`` messages.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from typing import Any

import redis

from .common import CODECS, PREFIX, kvkit_async, kvkit_sync, redis_async, redis_sync
from .harness import Case, Env, register

JOB: dict[str, Any] = {"job": "send_welcome_email", "user_id": 123, "to": "alice@example.com"}
"""The payload of every message (a small job description)."""

BATCH = 1000
"""Size of ``push_many`` (the row measures ``push_many(1000)``)."""

POP = 100
"""Size of ``pop_many`` (the row measures ``pop_many(100)``)."""

GROUP = "bench"

_SLOT = "{bench}"
"""Hash tag of the raw keys (like kvkit's, whose queue keys are ``kvbench:queue:{bench}:*``)."""

RAW_STREAM = f"{PREFIX}:rawq:{_SLOT}:stream"


def _raw_payload(dumps: Callable[[Any], Any]) -> Any:
    return dumps(JOB)


# --------------------------------------------------------------------------- sync


def _sync_clients(env: Env, name: str) -> tuple[Any, Any, redis.Redis]:
    client = kvkit_sync(env)
    queue = client.queue(name, group=GROUP)
    queue.purge(dead=True)
    raw = redis_sync(env)
    raw.delete(RAW_STREAM)
    return client, queue, raw


def _sync_push(env: Env, many: bool) -> Case:
    dumps, _ = CODECS["json"]()
    client, queue, raw = _sync_clients(env, "push")
    batch = [JOB] * BATCH

    def kvkit_push() -> None:
        queue.push(JOB)

    def base_push() -> None:
        raw.xadd(RAW_STREAM, {"payload": dumps(JOB)})

    def kvkit_push_many() -> None:
        queue.push_many(batch)

    def base_push_many() -> None:
        pipe = raw.pipeline(transaction=False)
        for job in batch:
            pipe.xadd(RAW_STREAM, {"payload": dumps(job)})
        pipe.execute()

    def prepare(_: int) -> None:
        # Start every slice from empty queues: both streams stay small.
        queue.purge()
        raw.delete(RAW_STREAM)

    def check() -> None:
        if queue.stats().ready == 0 or raw.xlen(RAW_STREAM) == 0:
            raise RuntimeError("the push rows did not enqueue anything")

    def teardown() -> None:
        queue.purge(dead=True)
        raw.delete(RAW_STREAM)
        client.close()
        raw.close()

    if many:
        return Case(kvkit_push_many, base_push_many, teardown, check, prepare)
    return Case(kvkit_push, base_push, teardown, check, prepare)


register(
    "queues",
    "queue.push",
    mode="sync",
    baseline="redis-py XADD + json",
    ops=3000,
)(functools.partial(_sync_push, many=False))
register(
    "queues",
    f"queue.push_many({BATCH})",
    mode="sync",
    baseline=f"redis-py pipeline of {BATCH} XADD + json",
    target=0.9,
    ops=40,
    items=BATCH,
)(functools.partial(_sync_push, many=True))


def _sync_pop(env: Env, count: int, codec: str) -> Case:
    dumps, loads = CODECS[codec]()
    client, queue, raw = _sync_clients(env, f"pop{count}")
    raw.xgroup_create(RAW_STREAM, GROUP, id="0", mkstream=True)
    data = _raw_payload(dumps)
    filler = [JOB] * BATCH

    def prepare(ops: int) -> None:
        need = ops * count - queue.stats().ready
        while need > 0:
            queue.push_many(filler[: min(BATCH, need)])
            need -= BATCH
        need = ops * count - (raw.xinfo_groups(RAW_STREAM)[0]["lag"] or 0)
        while need > 0:
            pipe = raw.pipeline(transaction=False)
            for _ in range(min(BATCH, need)):
                pipe.xadd(RAW_STREAM, {"payload": data})
            pipe.execute()
            need -= BATCH

    if count == 1:

        def kvkit_op() -> None:
            message = queue.pop()
            assert message is not None
            message.ack()

    else:

        def kvkit_op() -> None:
            messages = queue.pop_many(count)
            queue.ack(*messages)

    def base_op() -> None:
        reply = raw.xreadgroup(GROUP, "consumer-1", {RAW_STREAM: ">"}, count=count)
        entries = reply[0][1]
        for _, fields in entries:
            loads(fields[b"payload"])
        raw.xack(RAW_STREAM, GROUP, *[eid for eid, _ in entries])

    def check() -> None:
        queue.push_many(filler[:count])
        messages = queue.pop_many(count)
        if len(messages) != count or messages[0].payload != JOB:
            raise RuntimeError("the pop rows did not find the messages they expected")
        queue.ack(*messages)
        stats = queue.stats()
        if stats.pending or stats.dead:
            raise RuntimeError(f"kvkit left messages behind: {stats}")

    def teardown() -> None:
        queue.purge(dead=True)
        raw.delete(RAW_STREAM)
        client.close()
        raw.close()

    return Case(kvkit_op, base_op, teardown, check, prepare)


for _codec, _target, _note in (
    ("json", 0.8, ""),
    (
        "orjson",
        None,
        "the baseline decodes with orjson, kvkit's own codec (the targets name no codec "
        "for this row; the cache rows' equivalent is 'vs the same codec')",
    ),
):
    register(
        "queues",
        f"queue.pop_many({POP}) + ack",
        mode="sync",
        baseline=f"redis-py XREADGROUP COUNT {POP} + XACK + {_codec}",
        target=_target,
        ops=200,
        items=POP,
        note=_note,
    )(functools.partial(_sync_pop, count=POP, codec=_codec))
register(
    "queues",
    "queue.pop + ack",
    mode="sync",
    baseline="redis-py XREADGROUP COUNT 1 + XACK + json",
    ops=2000,
)(functools.partial(_sync_pop, count=1, codec="json"))


# --------------------------------------------------------------------------- async


async def _async_clients(env: Env, name: str) -> tuple[Any, Any, Any]:
    client = kvkit_async(env)
    queue = client.queue(name, group=GROUP)
    await queue.purge(dead=True)
    raw = redis_async(env)
    await raw.delete(RAW_STREAM)
    return client, queue, raw


async def _async_push_many(env: Env) -> Case:
    client, queue, raw = await _async_clients(env, "push")
    batch = [JOB] * BATCH

    async def kvkit_push_many() -> None:
        await queue.push_many(batch)

    async def base_push_many() -> None:
        pipe = raw.pipeline(transaction=False)
        for job in batch:
            pipe.xadd(RAW_STREAM, {"payload": json.dumps(job)})
        await pipe.execute()

    async def prepare(_: int) -> None:
        await queue.purge()
        await raw.delete(RAW_STREAM)

    async def teardown() -> None:
        await queue.purge(dead=True)
        await raw.delete(RAW_STREAM)
        await client.aclose()
        await raw.aclose()

    return Case(kvkit_push_many, base_push_many, teardown, None, prepare)


register(
    "queues",
    f"queue.push_many({BATCH})",
    mode="async",
    baseline=f"redis.asyncio pipeline of {BATCH} XADD + json",
    target=0.9,
    ops=40,
    items=BATCH,
)(_async_push_many)


async def _async_pop_many(env: Env) -> Case:
    client, queue, raw = await _async_clients(env, "pop")
    await raw.xgroup_create(RAW_STREAM, GROUP, id="0", mkstream=True)
    data = json.dumps(JOB)
    filler = [JOB] * BATCH

    async def prepare(ops: int) -> None:
        need = ops * POP - (await queue.stats()).ready
        while need > 0:
            await queue.push_many(filler[: min(BATCH, need)])
            need -= BATCH
        need = ops * POP - ((await raw.xinfo_groups(RAW_STREAM))[0]["lag"] or 0)
        while need > 0:
            pipe = raw.pipeline(transaction=False)
            for _ in range(min(BATCH, need)):
                pipe.xadd(RAW_STREAM, {"payload": data})
            await pipe.execute()
            need -= BATCH

    async def kvkit_op() -> None:
        messages = await queue.pop_many(POP)
        await queue.ack(*messages)

    async def base_op() -> None:
        reply = await raw.xreadgroup(GROUP, "consumer-1", {RAW_STREAM: ">"}, count=POP)
        entries = reply[0][1]
        for _, fields in entries:
            json.loads(fields[b"payload"])
        await raw.xack(RAW_STREAM, GROUP, *[eid for eid, _ in entries])

    async def teardown() -> None:
        await queue.purge(dead=True)
        await raw.delete(RAW_STREAM)
        await client.aclose()
        await raw.aclose()

    return Case(kvkit_op, base_op, teardown, None, prepare)


register(
    "queues",
    f"queue.pop_many({POP}) + ack",
    mode="async",
    baseline=f"redis.asyncio XREADGROUP COUNT {POP} + XACK + json",
    target=0.8,
    ops=200,
    items=POP,
)(_async_pop_many)
