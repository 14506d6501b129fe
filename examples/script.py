"""kvkit in a plain script: cache, sessions, queues and the original RedisService methods.

    python examples/script.py                              # memory:// (no server needed)
    python examples/script.py redis://localhost:6379/0     # a Redis server
    KVKIT_URL=redis://localhost:6379/0 python examples/script.py

Every other setting comes from the KVKIT_* environment variables (KVKIT_PREFIX, ...).
The script checks what it prints and exits with status 1 if anything is off.
"""

from __future__ import annotations

import os
import sys
import time

import kvkit


def main(argv: list[str]) -> int:
    url = argv[1] if len(argv) > 1 else os.environ.get("KVKIT_URL") or "memory://"
    with kvkit.Client(url, settings=kvkit.Settings.from_env()) as client:
        print(f"client: {client!r}")
        health = client.health()
        print(f"health: {health.status}")
        if not health.ok:
            for check in health.checks:
                print(f"  {check.role}: {check.error}")
            return 1

        # -- cache ------------------------------------------------------------------------
        cache = client.cache.namespace("example")
        cache.set("user:1", {"name": "Ada", "langs": ["en", "fr"]}, ttl=60)
        print("cache.get:", cache.get("user:1"))

        calls = 0

        def slow_report() -> dict[str, int]:
            nonlocal calls
            calls += 1
            time.sleep(0.05)
            return {"total": 42}

        first = cache.get_or_set("report", slow_report, ttl=30)
        second = cache.get_or_set("report", slow_report, ttl=30)
        print(f"get_or_set: {first} then {second}, factory ran {calls} time(s)")
        assert first == second == {"total": 42}
        assert calls == 1

        @cache.cached(ttl=30, key="square:{n}")
        def square(n: int) -> int:
            return n * n

        print("cached square(12):", square(12), square(12))
        print("incr:", cache.incr("hits"), cache.incr("hits"))

        # -- sessions ---------------------------------------------------------------------
        sessions = client.sessions
        sid = sessions.create({"user_id": 1, "cart": []}, user_id="1")
        sessions.update(sid, {"cart": ["book"]})
        print("session:", sessions.get(sid))
        new_sid = sessions.rotate(sid)  # e.g. on login: the old id stops working at once
        assert new_sid is not None
        assert sessions.get(sid) is None
        print("rotated, data kept:", sessions.get(new_sid))
        print("sessions of user 1:", len(sessions.user_sessions("1")))
        sessions.delete_user("1")

        # -- queues -----------------------------------------------------------------------
        emails = client.queue("example-emails", visibility_timeout=10)
        emails.purge(dead=True)
        ids = emails.push_many([{"to": f"user{i}@example.com"} for i in range(3)])
        print(f"pushed {len(ids)} messages")
        with emails.process() as message:  # acked when the block succeeds
            assert message is not None
            print("processed:", message.payload)
        handled = emails.consume(lambda m: print("consumed:", m.payload), max_messages=2)
        print(f"consume() handled {handled}; stats: {emails.stats().to_dict()}")

        # -- the original RedisService API --------------------------------------------------
        client.cache_set("legacy:greeting", "hello", expire=60)
        print("cache_get:", client.cache_get("legacy:greeting"))
        client.session_set("legacy-session-1", {"user_id": 7}, expire=3600)
        print("session_get:", client.session_get("legacy-session-1"))
        message_id = client.queue_push("example-jobs", {"job": "resize", "id": 3})
        print(f"queue_push: {message_id}; queue_pop: {client.queue_pop('example-jobs')}")

        # -- tidy up (the script may run against a shared server) ----------------------------
        cache.clear()
        client.cache_delete("legacy:greeting")
        client.session_delete("legacy-session-1")
        emails.purge(dead=True)
        client.queue("example-jobs").purge(dead=True)
    print("ok")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
