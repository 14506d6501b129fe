"""Micro-benchmark of kvkit's value codec against hand-written ``json``.

Run: ``python benchmarks/bench_serde.py`` (``--quick`` for a short run).

For each payload it prints ns per operation of:

* ``kvkit[orjson]`` - ``Codec().encode`` / ``Codec().decode`` (orjson, when installed),
* ``kvkit[json]``   - the same codec forced onto its stdlib ``json`` path,
* ``json``          - ``json.dumps(v).encode()`` / ``json.loads(b)``: what a redis-py user
  writes by hand. For payloads json cannot write it uses ``default=str``, which does
  *not* round-trip (a datetime comes back as a str): kvkit does more work there.

Each contender is timed once per round, rounds are interleaved, and the best round is
kept, so that machine noise hits every contender alike.
"""

from __future__ import annotations

import json
import sys
import timeit
import uuid
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

from kvkit._serde import HAVE_ORJSON, Codec

SMALL = {"id": 123, "name": "alice", "tags": ["a", "b"], "active": True, "score": 1.5}
WITH_DATETIME = {
    "id": 123,
    "name": "alice",
    "created": datetime(2024, 5, 1, 12, 30, 0, 123456, tzinfo=timezone.utc),
}
ROWS = [
    {"id": i, "name": f"user{i}", "email": f"user{i}@example.com", "score": i / 7, "ok": True}
    for i in range(100)
]
PAYLOADS: dict[str, Any] = {
    "small dict": SMALL,
    "str": "hello, world",
    "int": 1234567,
    "dict + datetime": WITH_DATETIME,
    "100 rows": ROWS,
    "uuid/tuple/set dict": {"id": uuid.UUID(int=7), "pt": (1, 2), "tags": {"a", "b"}},
}

Op = Callable[[], Any]


def _is_plain(v: Any) -> bool:
    if isinstance(v, dict):
        return all(type(k) is str and _is_plain(x) for k, x in v.items())
    if type(v) is list:
        return all(_is_plain(x) for x in v)
    return v is None or type(v) in (str, int, float, bool)


def _json_ops(value: Any) -> tuple[Op, Op, Op]:
    dumps, loads = json.dumps, json.loads
    default = None if _is_plain(value) else str
    data = dumps(value, default=default).encode()

    def encode() -> Any:
        return dumps(value, default=default).encode()

    def decode() -> Any:
        return loads(data)

    def both() -> Any:
        return loads(dumps(value, default=default).encode())

    return encode, decode, both


def _codec_ops(codec: Codec, value: Any) -> tuple[Op, Op, Op]:
    enc, dec = codec.encode, codec.decode
    data = enc("k", value)

    def encode() -> Any:
        return enc("k", value)

    def decode() -> Any:
        return dec("k", data)

    def both() -> Any:
        return dec("k", enc("k", value))

    return encode, decode, both


def _best_ns(ops: dict[str, Op], rounds: int, target_s: float) -> dict[str, float]:
    slowest = max(timeit.timeit(op, number=100) / 100 for op in ops.values())
    number = max(1, int(target_s / slowest))
    best = dict.fromkeys(ops, float("inf"))
    for _ in range(rounds):
        for name, op in ops.items():
            best[name] = min(best[name], timeit.timeit(op, number=number) / number * 1e9)
    return best


def bench(rounds: int, target_s: float) -> None:
    codecs = {"kvkit[json]": Codec(_force_stdlib=True)}
    if HAVE_ORJSON:
        codecs = {"kvkit[orjson]": Codec(), **codecs}
    names = [*codecs, "json"]
    print(f"python {sys.version.split()[0]}, orjson installed: {HAVE_ORJSON}")
    for title, which in (("encode + decode", 2), ("encode", 0), ("decode", 1)):
        print(f"\n{title}: ns per op (best of {rounds} interleaved rounds)")
        header = f"{'payload':<22}" + "".join(f"{n:>15}" for n in names)
        print(header + f"{'json / ' + names[0]:>24}")
        print("-" * (len(header) + 24))
        for label, value in PAYLOADS.items():
            ops = {name: _codec_ops(c, value)[which] for name, c in codecs.items()}
            ops["json"] = _json_ops(value)[which]
            best = _best_ns(ops, rounds, target_s)
            cells = "".join(f"{best[n]:>15.0f}" for n in names)
            print(f"{label:<22}{cells}{best['json'] / best[names[0]]:>23.2f}x")


if __name__ == "__main__":
    quick = "--quick" in sys.argv
    bench(rounds=3 if quick else 7, target_s=0.02 if quick else 0.1)
