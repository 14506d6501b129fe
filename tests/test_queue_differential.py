"""Differential test: random queue operations on memory:// and a Redis backend in lockstep.

The memory engine is the reference. Every step applies one operation to a queue on each
backend and compares what they return (payloads, delivery counts, ack counts, stats, dead
letters), so that parity (issue 11, findings 28-33) is checked by random sequences, not
only by the examples in test_queue_parity.py.

Time is the one thing the backends cannot share, so the machine keeps it out of the
comparison: leases run out only in a ``wait`` step (the ones marked by ``expire`` are
shortened there, then the step outlasts them and the Redis reclaim scan interval); the
others are long. A delayed message is never looked at close to its due time: steps that
could promote it first wait until it is well past due.
"""

from __future__ import annotations

import os
import time
import uuid

import pytest
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    precondition,
    rule,
    run_state_machine_as_test,
)

import kvkit
from kvkit._sync.backends import redis_queue

# Long leases: only the ones a `wait` step shortens run out.
VIS = 30.0
SHORT = 0.005
# A wait outlasts SHORT and the reclaim scan interval (patched to SCAN_MS below).
SCAN_MS = 10
WAIT = 0.08
# Delayed messages: due DELAY after the push, never looked at within MARGIN of that.
DELAY = 0.3
MARGIN = 0.15
# At most this many messages per run: XAUTOCLAIM examines at most 10 * count pending
# entries per call, which memory:// does not mimic.
MAX_MESSAGES = 10
EXAMPLES = int(os.environ.get("KVKIT_DIFF_EXAMPLES", "12"))

OTHERS = [
    pytest.param("fakeredis", id="fakeredis"),
    pytest.param("redis", id="redis", marks=pytest.mark.redis),
    pytest.param("cluster", id="cluster", marks=pytest.mark.cluster),
]


def _url(request: pytest.FixtureRequest, backend: str) -> str:
    if backend == "fakeredis":
        return "fakeredis://"
    if backend == "redis":
        return str(request.getfixturevalue("redis_url"))
    return str(request.getfixturevalue("redis_cluster").url)


def _view(messages):
    return [(m.payload, m.deliveries) for m in messages]


def _counts(stats):
    # Not consumers (finding 35) nor oldest_pending_s (a time).
    return stats.ready, stats.pending, stats.delayed, stats.dead


@pytest.mark.slow
@pytest.mark.parametrize("other", OTHERS)
def test_random_queue_operations_agree_with_memory(request, monkeypatch, other):
    """memory:// and the other backend return the same for the same random operations."""
    # Redis notices expired leases within the scan interval; make it shorter than a wait.
    monkeypatch.setattr(redis_queue, "_SCAN_MAX_MS", SCAN_MS)
    prefix = "t" + uuid.uuid4().hex[:12]
    with (
        kvkit.Client(settings=kvkit.Settings(url="memory://", prefix=prefix)) as memory,
        kvkit.Client(settings=kvkit.Settings(url=_url(request, other), prefix=prefix)) as real,
    ):

        class Lockstep(RuleBasedStateMachine):
            """One queue per backend, the same operations on both."""

            @initialize(maxlen=st.sampled_from([None, 3, 6]))
            def start(self, maxlen):
                """Fresh queues (a new name per run)."""
                name = uuid.uuid4().hex[:8]
                options = {"visibility_timeout": VIS, "max_deliveries": 3, "maxlen": maxlen}
                self.queues = (memory.queue(name, **options), real.queue(name, **options))
                self.held = []  # (memory message, other message) pairs
                self.marked = []  # pairs whose lease the next wait shortens
                self.pushed = 0
                self.dues = []  # (earliest, latest) monotonic due time of delayed pushes

            def teardown(self):
                """Purge both queues."""
                for queue in getattr(self, "queues", ()):
                    queue.purge(dead=True)

            def _settle(self):
                """Wait until no delayed message is due about now (backends differ there)."""
                # (Only sleeps: the machine's state must not depend on the clock.)
                now = time.monotonic()
                for earliest, latest in self.dues:
                    if earliest - MARGIN <= now < latest + MARGIN:
                        time.sleep(latest + MARGIN - now)
                        now = time.monotonic()

            def _both(self, op):
                results = [op(queue) for queue in self.queues]
                return results[0], results[1]

            # Few rules with arguments rather than many without: Hypothesis picks a rule
            # uniformly, and pushes and lease operations are where the differences lie.
            @precondition(lambda self: self.pushed < MAX_MESSAGES)
            @rule(
                payloads=st.lists(st.integers(0, 99), min_size=1, max_size=3),
                batch=st.booleans(),
                delayed=st.booleans(),
            )
            def push(self, payloads, batch, delayed):
                """Push (one by one or as one batch), maybe delayed."""
                self._settle()
                delay = DELAY if delayed else None
                # The backends' due times lie between these two (the pushes take a while).
                before = time.monotonic()
                if batch:
                    self._both(lambda q: q.push_many(payloads, delay=delay))
                else:
                    for payload in payloads:
                        self._both(lambda q, p=payload: q.push(p, delay=delay))
                self.pushed += len(payloads)
                if delayed:
                    self.dues.append((before + DELAY, time.monotonic() + DELAY))

            @rule(count=st.integers(1, 4))
            def pop_many(self, count):
                """Pop: the same messages in the same order, with the same deliveries."""
                self._settle()
                mine, theirs = self._both(lambda q: q.pop_many(count))
                assert _view(mine) == _view(theirs)
                self.held.extend(zip(mine, theirs, strict=True))

            @rule(index=st.integers(0, 99), op=st.sampled_from(["ack", "nack", "extend", "expire"]))
            def settle(self, index, op):
                """Ack, nack or extend a held message, or mark it to expire at the next wait."""
                # No precondition on `held`: what a pop returns depends on the backends,
                # and which rules Hypothesis may draw must not.
                if not self.held:
                    return
                pair = self.held[index % len(self.held)]
                if op == "expire":
                    self.marked.append(pair)
                    return
                self._settle()
                if op == "extend":
                    assert self.queues[0].extend(pair[0]) == self.queues[1].extend(pair[1])
                    return
                self.held.remove(pair)
                if op == "ack":
                    assert self.queues[0].ack(pair[0]) == self.queues[1].ack(pair[1])
                else:
                    self.queues[0].nack(pair[0])
                    self.queues[1].nack(pair[1])

            @rule(until_due=st.booleans())
            def wait(self, until_due):
                """Let the marked leases run out (and maybe the delayed messages come due)."""
                for pair in self.marked:
                    mine = self.queues[0].extend(pair[0], SHORT)
                    assert mine == self.queues[1].extend(pair[1], SHORT)
                self.marked = []
                time.sleep(WAIT)
                if until_due and self.dues:
                    latest = max(due[1] for due in self.dues)
                    time.sleep(max(0.0, latest + MARGIN - time.monotonic()))
                    self.dues = []

            @rule(what=st.sampled_from(["stats", "dead_letters", "requeue_dead"]))
            def inspect(self, what):
                """Stats (not consumers nor times), dead letters, requeue_dead() agree."""
                self._settle()
                mine, theirs = self._both(lambda q: getattr(q, what)())
                if what == "stats":
                    assert _counts(mine) == _counts(theirs)
                elif what == "dead_letters":
                    assert _view(mine) == _view(theirs)
                else:
                    assert mine == theirs

        run_state_machine_as_test(
            Lockstep,
            settings=settings(
                max_examples=EXAMPLES,
                stateful_step_count=40,
                deadline=None,
                database=None,
                # No shrinking: replays sleep, and the steps of a failure are printed.
                phases=[Phase.explicit, Phase.generate],
                suppress_health_check=[HealthCheck.too_slow],
            ),
        )
