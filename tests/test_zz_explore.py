"""Differential test: random operation sequences run in lockstep on every backend.

One Hypothesis ``RuleBasedStateMachine`` holds four sync clients -- ``memory://``,
``fakeredis://``, a real ``redis://`` server and a real 3-master ``redis+cluster://``
Cluster (the suite's session servers) -- and applies every rule to all four, the way
fakeredis checks itself against real Redis. The observable results must be identical:
return values (ids mapped to logical handles, since ids are random), the kvkit exception
*type* raised, cache stats and queue stats. memory:// is the reference the others are
compared with; documented contracts (huge durations are ``InvalidArgument``, only kvkit
exceptions escape) are asserted on every backend on top of parity.

Time. Leases, delays and short TTLs fire at a moment that differs by a few ms between
backends (the four calls of a step run one after the other) and, on Redis, a little later
by design (the busy-consumer skip, ``_LAG``, and the reclaim scan of expired leases,
``lease_lag``). Every timed thing a step schedules is kept as an interval ``[lo, hi]`` during
which some backend may see it fired and another not. Before a step, the machine sleeps
past any interval that is about to be straddled; a step that nonetheless overlapped one
(a stall on a busy machine) is not compared, and the rest of that example does nothing
(the backends may now legitimately differ; ``reject()`` would make Hypothesis' replays
flaky instead). So every comparison is made where all backends agree on what has fired.

Order. ``pop_many`` results are compared as ordered lists (pushes keep their order,
expired leases come before new messages, and the backends must agree on the order of
redeliveries, issue 11 #33); ``dead_letters()`` is oldest first; ``get_many``,
``user_sessions`` and session data are compared as sets/mappings (no documented order).

Rules come in groups (cache, sessions, queues); each test runs the one machine with some
groups enabled, so that queue sequences are long enough to reach leases and redeliveries.
Sessions and deliveries are designated by drawn numbers, not Bundles: what exists depends
on results (and, for queues, on time), and Hypothesis needs its data draws not to.

Runtime is bounded by the settings of the two tests (about a minute in all when the
backends agree, on two busy cores). ``derandomize=True`` makes CI run the same sequences
every time and ``database=None`` keeps ``.hypothesis/`` out of the repository; to explore
new sequences locally, set ``derandomize=False`` (Hypothesis then prints a seed to replay).

Run: ``KVKIT_REQUIRE_REDIS=1 python -m pytest -p no:randomly tests/test_differential.py``.
"""

from __future__ import annotations

import datetime
import decimal
import math
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.configuration import set_hypothesis_home_dir
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

import kvkit
from kvkit._ttl import MAX_SECONDS
from tests.servers import RedisCluster, RedisServer

# The timeout leaves Hypothesis time to shrink a failure (minutes); a pass takes ~1 min.
pytestmark = [pytest.mark.redis, pytest.mark.cluster, pytest.mark.timeout(900)]

BACKENDS = ("memory", "fakeredis", "redis", "cluster")
REFERENCE = BACKENDS[0]

# -- timing -----------------------------------------------------------------------------------
# How much later than its nominal time a timed event (delay, TTL) may be seen on some
# backend: a busy Redis consumer skips the reclaim/promote script for at most 100 ms
# (never past a delay it knows of); plus clock granularity (1 ms).
_LAG = 0.15


def lease_lag(visibility: float) -> float:
    """How late an expired lease may be reclaimed on Redis, by design.

    The reclaim scan runs at most every ``min(1 s, visibility / 10)`` (see
    ``backends/redis_queue.py``), plus the busy-consumer skip and some slack; memory://
    reclaims at the exact expiry. Matters after ``extend(m, short)`` on a long lease.
    """
    return min(1.0, max(0.01, visibility / 10)) + _LAG


# A step (one call on each of the four backends) is expected to take less than this; an
# event due within it is waited out before the step starts.
_AHEAD = 0.1
SHORT = 0.2  # the short visibility timeout / delay / TTL (an "event" a test can outlive)

# -- queues: every backend gets the same queue objects ----------------------------------------
# (name, options). The two objects on "fast" are two consumers of one group (with their
# own max_deliveries: 1 dead-letters at the first expiry); the last one is a second
# consumer group ("g2", fan-out) on the queue "slow".
QUEUES: tuple[tuple[str, dict[str, Any]], ...] = (
    ("slow", {"visibility_timeout": 30.0, "max_deliveries": 3}),
    ("fast", {"visibility_timeout": SHORT, "max_deliveries": 1}),
    ("fast", {"visibility_timeout": SHORT, "max_deliveries": 3}),
    ("bounded", {"visibility_timeout": 30.0, "maxlen": 3}),
    ("slow", {"visibility_timeout": 30.0, "max_deliveries": 3, "group": "g2"}),
)
picks = st.integers(0, 11)  # which session / delivery a rule acts on (see _session)
# The short-lease queue "fast" (two consumers) is where timing matters: draw it most.
queue_index = st.sampled_from([0, 1, 1, 1, 2, 2, 3, 3, 4])

# -- inputs -----------------------------------------------------------------------------------
INT64_MAX = 2**63 - 1
INT64_MIN = -(2**63)

valid_keys = st.sampled_from(["a", "b", "n", "users:1", "ключ", "{t}x", "k" * 1024])
invalid_keys = st.sampled_from(["", "é" * 513, 7, None, b"a", "\ud800"])
keys = st.one_of(*[valid_keys] * 5, invalid_keys)

boundary_ints = st.sampled_from(
    [0, 1, -1, 10, INT64_MAX, INT64_MAX - 1, INT64_MIN, INT64_MIN + 1, 2**63, -(2**63) - 1, 2**64]
)
values = st.one_of(
    boundary_ints,
    st.integers(-(2**65), 2**65),
    st.sampled_from(
        [
            "12",
            "x",
            "",
            1.5,
            -0.0,
            True,
            None,
            [1, "a"],
            {"k": [1, 2]},
            (1, 2),
            {1, 2},
            frozenset({"a"}),
            b"\x00\xff",
            datetime.datetime(2026, 12, 1, 12, 30, tzinfo=datetime.timezone.utc),
            datetime.date(2026, 12, 1),
            decimal.Decimal("1.10"),
            uuid.UUID(int=1),
        ]
    ),
)
unencodable = st.sampled_from([object(), {1: "non-str key"}])
deltas = st.one_of(
    boundary_ints,
    st.integers(-(2**64), 2**64),
    st.sampled_from([1.5, True, "1"]),  # not ints: InvalidArgument
)

# Durations above 100 years (kvkit._ttl.MAX_SECONDS) must be InvalidArgument everywhere.
HUGE = [MAX_SECONDS + 1, 10**13, 1e10, 1e16, 1e300, datetime.timedelta(days=365 * 200)]
good_ttls = st.sampled_from(
    [
        None,
        kvkit.FOREVER,
        1,
        60,
        3600.5,
        datetime.timedelta(minutes=5),
        "temp",
        "long",
        "default",
        MAX_SECONDS,
        SHORT,
    ]
)
bad_ttls = st.sampled_from(
    [0, -1, math.nan, math.inf, "bogus", True, 1j, datetime.timedelta(0), *HUGE]
)
ttls = st.one_of(*[good_ttls] * 4, bad_ttls)

users = st.sampled_from(["u1", "u2", "ü", "", 5])
session_data = st.one_of(
    *[st.dictionaries(st.sampled_from(["a", "b", "c"]), values, max_size=3)] * 6,
    st.sampled_from([["not", "a", "mapping"], {1: "non-str key"}, {"a": object()}]),
)
field_names = st.lists(st.sampled_from(["a", "b", "c", 3]), max_size=2)
_good_delays = st.sampled_from(
    [None, None, None, 0, SHORT, SHORT, 60, datetime.timedelta(seconds=SHORT)]
)
delays = st.one_of(*[_good_delays] * 10, st.sampled_from([-1, math.nan, math.inf, "soon", *HUGE]))
dedupe_ids = st.sampled_from([None, None, None, None, "d1", "d2"])
extend_seconds = st.sampled_from([None, None, SHORT / 2, SHORT / 2, 1, 0, -1, 31, 1e300, "x"])


# -- observable results -----------------------------------------------------------------------
def canon(value: Any) -> Any:
    """A comparable, order-insensitive-where-undocumented image of a returned value."""
    if isinstance(value, (list, tuple)):
        return (type(value).__name__, tuple(canon(v) for v in value))
    if isinstance(value, (set, frozenset)):
        return (type(value).__name__, tuple(sorted(repr(canon(v)) for v in value)))
    if isinstance(value, dict):
        return ("dict", tuple(sorted((repr(k), canon(v)) for k, v in value.items())))
    # repr keeps what == hides: 1 vs True vs 1.0, Decimal("1.10") vs Decimal("1.1").
    return (type(value).__name__, repr(value))


def presence(seconds: float | None) -> str:
    """A TTL answer reduced to what all backends must agree on (not the exact time)."""
    if seconds is None:
        return "missing"
    if seconds == math.inf:
        return "forever"
    return "expires" if seconds > 0 else f"bad:{seconds!r}"


class Raised:
    """The outcome of a call that raised: compared by exception type only."""

    def __init__(self, exc: BaseException) -> None:
        self.type = type(exc)
        self.text = f"{type(exc).__module__}.{type(exc).__qualname__}: {exc}"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Raised) and other.type is self.type

    def __hash__(self) -> int:
        return hash(self.type)

    def __repr__(self) -> str:
        return f"raised {self.text}"[:300]


class SessionRef:
    """One logical session: the id it has on each backend (ids are random)."""

    def __init__(self, name: str, ids: dict[str, Any]) -> None:
        self.name = name
        self.ids = ids

    def __repr__(self) -> str:
        return self.name


class Delivery:
    """One logical delivery of a message: the Message popped on each backend."""

    def __init__(self, name: str, queue: int, messages: dict[str, kvkit.Message]) -> None:
        self.name = name
        self.queue = queue
        self.messages = messages

    def __repr__(self) -> str:
        return self.name


class Backend:
    """One backend's client and the objects the machine drives on it."""

    def __init__(self, name: str, url: str, prefix: str) -> None:
        self.name = name
        self.client = kvkit.Client(settings=kvkit.Settings(url=url, prefix=prefix))
        root = self.client.cache
        self.views = [root, root.namespace("ns")]
        self.queues = [self.client.queue(n, **opts) for n, opts in QUEUES]
        # backend's session id -> logical name; message id -> logical message number
        self.session_names: dict[str, str] = {}
        self.message_numbers: dict[str, int] = {}
        self.message_ids: dict[int, str] = {}


# -- the machine ------------------------------------------------------------------------------
class Differential(RuleBasedStateMachine):
    """Applies every rule to all four backends and asserts they observe the same."""

    groups: frozenset[str] = frozenset({"cache", "sessions", "queues"})  # rule groups run
    urls: dict[str, str] = {}
    cleanup: Callable[[str], None] = staticmethod(lambda prefix: None)

    def __init__(self) -> None:
        super().__init__()
        self.prefix = "diff" + uuid.uuid4().hex[:10]
        self.backends = [Backend(b, self.urls[b], self.prefix) for b in BACKENDS]
        self.born = time.monotonic()
        self.events: list[tuple[float, float]] = []  # [lo, hi] of each pending timed event
        self.counter = 0  # message numbers (only pushes count: data draws depend on it)
        self.delivered = 0
        self.session_refs: list[SessionRef] = []
        self.deliveries: list[Delivery] = []  # the most recent deliveries
        self.void = False  # set when a stall made the backends' timelines diverge
        self.pushed: dict[str, list[int]] = {name: [] for name, _ in QUEUES}  # by queue name

    def teardown(self) -> None:
        for backend in self.backends:
            backend.client.close()
        self.cleanup(self.prefix)

    # -- the lockstep step ----------------------------------------------------------------------
    def _settle(self) -> None:
        """Sleep past any timed event that the next step could straddle."""
        while True:
            now = time.monotonic()
            self.events = [e for e in self.events if e[1] > now - 1.0]
            due = [hi for lo, hi in self.events if lo - _AHEAD <= now <= hi]
            if not due:
                return
            time.sleep(max(due) - now + 0.005)

    def step(
        self,
        what: str,
        op: Callable[[Backend], Any],
        show: Callable[[Backend, Any], Any] = lambda backend, value: canon(value),
        *,
        expect: type[BaseException] | None = None,
        timers: tuple[float, ...] = (),
        lag: float = _LAG,
    ) -> dict[str, Any] | None:
        """Run ``op`` on every backend; assert equal outcomes; return the raw values.

        Returns ``None`` (and does nothing) once a stall voided the example.

        Args:
            what: Description of the step, for the failure message.
            op: The operation, given one backend.
            show: Maps a backend's return value to what is compared.
            expect: The exception every backend must raise (a documented contract).
            timers: Durations (s) of the timed events this step schedules.
            lag: How much later than nominal a backend may see those events fire.
        """
        if self.void:
            return None
        self._settle()
        start = time.monotonic()
        seen: dict[str, Any] = {}
        raw: dict[str, Any] = {}
        for backend in self.backends:
            try:
                value = op(backend)
            except Exception as exc:
                seen[backend.name] = raw[backend.name] = Raised(exc)
            else:
                raw[backend.name] = value
                seen[backend.name] = show(backend, value)
        end = time.monotonic()
        if any(lo <= end and hi > start for lo, hi in self.events):
            # A stall made this step straddle a timed event: not comparable, and the
            # backends' states may differ from now on.
            event("voided by a stall")
            self.void = True
            return None
        self.events.extend((start + s, end + s + lag) for s in timers)
        table = "\n".join(f"    {name:9} {seen[name]!r}" for name in seen)
        reference = seen[REFERENCE]
        assert all(v == reference for v in seen.values()), f"{what}: backends differ\n{table}"
        for value in seen.values():
            if isinstance(value, Raised):
                assert issubclass(value.type, kvkit.KVKitError), (
                    f"{what}: a non-kvkit exception escaped\n{table}"
                )
        if expect is not None:
            assert isinstance(reference, Raised) and issubclass(reference.type, expect), (
                f"{what}: expected {expect.__name__} on every backend\n{table}"
            )
        return raw

    @staticmethod
    def _timer(ttl: Any) -> tuple[float, ...]:
        if isinstance(ttl, datetime.timedelta):
            ttl = ttl.total_seconds()
        return (float(ttl),) if type(ttl) in (int, float) and 0 < ttl < 5 else ()

    @staticmethod
    def _huge(duration: Any) -> bool:
        if isinstance(duration, datetime.timedelta):
            duration = duration.total_seconds()
        return (
            type(duration) in (int, float)
            and not isinstance(duration, bool)
            and math.isfinite(duration)
            and duration > MAX_SECONDS
        )

    def _expect_ttl(self, ttl: Any) -> type[BaseException] | None:
        return kvkit.InvalidArgument if self._huge(ttl) else None

    @staticmethod
    def _valid_data(data: Any) -> bool:
        """Whether session data is encodable (else its error comes before the TTL's)."""
        return isinstance(data, dict) and all(
            isinstance(k, str) and type(v) is not object for k, v in data.items()
        )

    # -- cache ----------------------------------------------------------------------------------
    @precondition(lambda self: "cache" in self.groups)
    @rule(view=st.integers(0, 1), add=st.booleans(), key=keys, value=values, ttl=ttls)
    def cache_set(self, view: int, add: bool, key: Any, value: Any, ttl: Any) -> None:
        """cache.set, or cache.add (set if absent)."""
        method = "add" if add else "set"
        self.step(
            f"views[{view}].{method}({key!r}, {value!r}, ttl={ttl!r})",
            lambda b: getattr(b.views[view], method)(key, value, ttl),
            expect=self._expect_ttl(ttl),
            timers=self._timer(ttl),
        )

    @precondition(lambda self: "cache" in self.groups)
    @rule(view=st.integers(0, 1), key=valid_keys, value=unencodable)
    def cache_set_unencodable(self, view: int, key: str, value: Any) -> None:
        """cache.set of a value JSON cannot hold is a SerializationError."""
        self.step(
            f"views[{view}].set({key!r}, <unencodable>)",
            lambda b: b.views[view].set(key, value),
            expect=kvkit.SerializationError,
        )

    @precondition(lambda self: "cache" in self.groups)
    @rule(view=st.integers(0, 1), key=keys)
    def cache_get(self, view: int, key: Any) -> None:
        """cache.get."""
        self.step(f"views[{view}].get({key!r})", lambda b: b.views[view].get(key, "<default>"))

    @precondition(lambda self: "cache" in self.groups)
    @rule(view=st.integers(0, 1), key=keys)
    def cache_exists(self, view: int, key: Any) -> None:
        """cache.exists."""
        self.step(f"views[{view}].exists({key!r})", lambda b: b.views[view].exists(key))

    @precondition(lambda self: "cache" in self.groups)
    @rule(view=st.integers(0, 1), key=keys)
    def cache_delete(self, view: int, key: Any) -> None:
        """cache.delete."""
        self.step(f"views[{view}].delete({key!r})", lambda b: b.views[view].delete(key))

    @precondition(lambda self: "cache" in self.groups)
    @rule(view=st.integers(0, 1), key=keys)
    def cache_ttl(self, view: int, key: Any) -> None:
        """cache.ttl: missing / forever / expires."""
        self.step(
            f"views[{view}].ttl({key!r})",
            lambda b: b.views[view].ttl(key),
            lambda b, v: presence(v),
        )

    @precondition(lambda self: "cache" in self.groups)
    @rule(view=st.integers(0, 1), key=keys, ttl=ttls)
    def cache_touch(self, view: int, key: Any, ttl: Any) -> None:
        """cache.touch."""
        self.step(
            f"views[{view}].touch({key!r}, ttl={ttl!r})",
            lambda b: b.views[view].touch(key, ttl),
            expect=self._expect_ttl(ttl),
            timers=self._timer(ttl),
        )

    @precondition(lambda self: "cache" in self.groups)
    @rule(view=st.integers(0, 1), names=st.lists(keys, max_size=4))
    def cache_get_many(self, view: int, names: list[Any]) -> None:
        """cache.get_many (a mapping: no order)."""
        self.step(f"views[{view}].get_many({names!r})", lambda b: b.views[view].get_many(names))

    @precondition(lambda self: "cache" in self.groups)
    @rule(
        view=st.integers(0, 1),
        mapping=st.dictionaries(keys.filter(lambda k: isinstance(k, str)), values, max_size=4),
        ttl=ttls,
    )
    def cache_set_many(self, view: int, mapping: dict[str, Any], ttl: Any) -> None:
        """cache.set_many."""
        self.step(
            f"views[{view}].set_many({mapping!r}, ttl={ttl!r})",
            lambda b: b.views[view].set_many(mapping, ttl),
            expect=self._expect_ttl(ttl) if mapping else None,
            timers=self._timer(ttl),
        )

    @precondition(lambda self: "cache" in self.groups)
    @rule(view=st.integers(0, 1), names=st.lists(keys, max_size=4))
    def cache_delete_many(self, view: int, names: list[Any]) -> None:
        """cache.delete_many."""
        self.step(
            f"views[{view}].delete_many({names!r})", lambda b: b.views[view].delete_many(names)
        )

    @precondition(lambda self: "cache" in self.groups)
    @rule(view=st.integers(0, 1), key=keys, delta=deltas, ttl=ttls)
    def cache_incr(self, view: int, key: Any, delta: Any, ttl: Any) -> None:
        """cache.incr, including results near and past the signed 64-bit range."""
        self.step(
            f"views[{view}].incr({key!r}, {delta!r}, ttl={ttl!r})",
            lambda b: b.views[view].incr(key, delta, ttl),
            expect=self._expect_ttl(ttl),
            timers=self._timer(ttl),
        )

    @precondition(lambda self: "cache" in self.groups)
    @rule(view=st.integers(0, 1), key=keys, value=values)
    def cache_get_or_set(self, view: int, key: Any, value: Any) -> None:
        """cache.get_or_set."""
        self.step(
            f"views[{view}].get_or_set({key!r}, lambda: {value!r})",
            lambda b: b.views[view].get_or_set(key, lambda: value),
        )

    @precondition(lambda self: "cache" in self.groups)
    @rule(view=st.integers(0, 1))
    def cache_clear(self, view: int) -> None:
        """cache.clear (the root view clears the namespace's keys too)."""
        self.step(f"views[{view}].clear()", lambda b: b.views[view].clear())

    @precondition(lambda self: "cache" in self.groups)
    @rule(name=st.sampled_from(["", "a{b}", "}", 3, "x" * 1025]))
    def cache_bad_namespace(self, name: Any) -> None:
        """cache.namespace with an invalid name."""
        self.step(
            f"cache.namespace({name!r})",
            lambda b: b.client.cache.namespace(name),
            expect=kvkit.InvalidArgument,
        )

    @invariant()
    def cache_stats_agree(self) -> None:
        """The cache views' counters (hits, misses, sets, deletes, errors) agree."""
        if self.void:
            return
        for view in (0, 1):
            stats = {b.name: b.views[view].stats.to_dict() for b in self.backends}
            reference = stats[REFERENCE]
            assert all(s == reference for s in stats.values()), f"views[{view}].stats: {stats}"

    # -- sessions -------------------------------------------------------------------------------
    def _new_session(self, raw: dict[str, Any] | None) -> None:
        """Register the ids a create/rotate returned as one logical session."""
        if raw is None or any(not isinstance(v, str) for v in raw.values()):
            return
        ref = SessionRef(f"s{len(self.session_refs) + 1}", dict(raw))
        self.session_refs.append(ref)
        for backend in self.backends:
            backend.session_names[raw[backend.name]] = ref.name

    # A well-formed id no store created, a malformed one, and a non-str one.
    BOGUS_IDS = ("A" * 47, "not-an-id", 42)

    def _session(self, pick: int) -> Any:
        """The session ``pick`` designates: a bogus id, or one created so far.

        Rules draw a plain number, not from a Bundle: what exists depends on earlier
        results, and Hypothesis needs the drawn data not to (replays must be stable).
        """
        if pick < len(self.BOGUS_IDS) or not self.session_refs:
            return self.BOGUS_IDS[pick % len(self.BOGUS_IDS)]
        return self.session_refs[pick % len(self.session_refs)]

    @staticmethod
    def _show_id(backend: Backend, value: Any) -> Any:
        if isinstance(value, str):
            ok = len(value) == 47 and value.replace("-", "").replace("_", "").isalnum()
            return "<well-formed id>" if ok else f"<bad id {value!r}>"
        return canon(value)

    @precondition(lambda self: "sessions" in self.groups)
    @rule(data=session_data, ttl=ttls, user=st.one_of(st.none(), users))
    def session_create(self, data: Any, ttl: Any, user: Any) -> None:
        """sessions.create."""
        raw = self.step(
            f"sessions.create({data!r}, ttl={ttl!r}, user_id={user!r})",
            lambda b: b.client.sessions.create(data, ttl=ttl, user_id=user),
            self._show_id,
            expect=self._expect_ttl(ttl) if self._valid_data(data) else None,
        )
        self._new_session(raw)

    def _sid(self, ref: Any, backend: Backend) -> Any:
        return ref.ids[backend.name] if isinstance(ref, SessionRef) else ref

    @precondition(lambda self: "sessions" in self.groups)
    @rule(pick=picks)
    def session_get(self, pick: int) -> None:
        """sessions.get."""
        ref = self._session(pick)
        self.step(f"sessions.get({ref!r})", lambda b: b.client.sessions.get(self._sid(ref, b)))

    @precondition(lambda self: "sessions" in self.groups)
    @rule(pick=picks, data=session_data)
    def session_set(self, pick: int, data: Any) -> None:
        """sessions.set (never creates)."""
        ref = self._session(pick)
        self.step(
            f"sessions.set({ref!r}, {data!r})",
            lambda b: b.client.sessions.set(self._sid(ref, b), data),
        )

    @precondition(lambda self: "sessions" in self.groups)
    @rule(pick=picks, changes=st.one_of(st.none(), session_data), remove=field_names)
    def session_update(self, pick: int, changes: Any, remove: list[Any]) -> None:
        """sessions.update with changes and remove."""
        ref = self._session(pick)
        self.step(
            f"sessions.update({ref!r}, {changes!r}, remove={remove!r})",
            lambda b: b.client.sessions.update(self._sid(ref, b), changes, remove=remove),
        )

    @precondition(lambda self: "sessions" in self.groups)
    @rule(pick=picks)
    def session_delete(self, pick: int) -> None:
        """sessions.delete."""
        ref = self._session(pick)
        self.step(
            f"sessions.delete({ref!r})", lambda b: b.client.sessions.delete(self._sid(ref, b))
        )

    @precondition(lambda self: "sessions" in self.groups)
    @rule(pick=picks, ttl=ttls)
    def session_touch(self, pick: int, ttl: Any) -> None:
        """sessions.touch (optionally with a new idle TTL)."""
        ref = self._session(pick)
        self.step(
            f"sessions.touch({ref!r}, ttl={ttl!r})",
            lambda b: b.client.sessions.touch(self._sid(ref, b), ttl),
            expect=self._expect_ttl(ttl),
        )

    @precondition(lambda self: "sessions" in self.groups)
    @rule(pick=picks)
    def session_rotate(self, pick: int) -> None:
        """sessions.rotate: the new id is a new logical session, the old one is dead."""
        ref = self._session(pick)
        raw = self.step(
            f"sessions.rotate({ref!r})",
            lambda b: b.client.sessions.rotate(self._sid(ref, b)),
            self._show_id,
        )
        self._new_session(raw)

    @precondition(lambda self: "sessions" in self.groups)
    @rule(pick=picks)
    def session_exists_and_ttl(self, pick: int) -> None:
        """sessions.exists and sessions.ttl (presence only)."""
        ref = self._session(pick)
        self.step(
            f"sessions.exists({ref!r})", lambda b: b.client.sessions.exists(self._sid(ref, b))
        )
        self.step(
            f"sessions.ttl({ref!r})",
            lambda b: b.client.sessions.ttl(self._sid(ref, b)),
            lambda b, v: presence(v),
        )

    @precondition(lambda self: "sessions" in self.groups)
    @rule(user=users)
    def session_user_sessions(self, user: Any) -> None:
        """sessions.user_sessions (a set of logical sessions)."""
        self.step(
            f"sessions.user_sessions({user!r})",
            lambda b: b.client.sessions.user_sessions(user),
            lambda b, ids: sorted(b.session_names.get(i, f"<unknown {i!r}>") for i in ids),
        )

    @precondition(lambda self: "sessions" in self.groups)
    @rule(user=users)
    def session_delete_user(self, user: Any) -> None:
        """sessions.delete_user."""
        self.step(f"sessions.delete_user({user!r})", lambda b: b.client.sessions.delete_user(user))

    # -- queues ---------------------------------------------------------------------------------
    def _payload(self, number: int) -> Any:
        # Unique per push, so deliveries are matched across backends by payload; some
        # payloads are tagged types, to exercise the codec on the queue path too.
        return (number, "t") if number % 3 == 0 else number

    def _show_message_id(self, number: int) -> Callable[[Backend, Any], Any]:
        """Map a returned message id to its logical number (a dedupe hit: the original's)."""

        def show(backend: Backend, message_id: Any) -> Any:
            if not isinstance(message_id, str):
                return canon(message_id)
            known = backend.message_numbers.setdefault(message_id, number)
            backend.message_ids.setdefault(known, message_id)
            return f"message {known}"

        return show

    def _push(self, q: int, delay: Any, dedupe: Any) -> None:
        """queue.push, with delays (short, long, invalid, huge) and dedupe ids."""
        self.counter += 1
        number, payload = self.counter, self._payload(self.counter)
        self.pushed[QUEUES[q][0]].append(number)
        self.step(
            f"queues[{q}].push({payload!r}, delay={delay!r}, dedupe_id={dedupe!r})",
            lambda b: b.queues[q].push(payload, delay=delay, dedupe_id=dedupe),
            self._show_message_id(number),
            expect=kvkit.InvalidArgument if self._huge(delay) else None,
            timers=self._timer(delay),
        )
        self._stats(q)

    def _push_many(self, q: int, n: int, delay: Any) -> None:
        """queue.push_many: ids in order, delivered in order (also when delayed)."""
        numbers = list(range(self.counter + 1, self.counter + 1 + n))
        self.counter += n
        self.pushed[QUEUES[q][0]].extend(numbers)
        payloads = [self._payload(i) for i in numbers]

        def show(backend: Backend, ids: Any) -> Any:
            if not isinstance(ids, list):
                return canon(ids)
            return [
                self._show_message_id(i)(backend, m) for i, m in zip(numbers, ids, strict=False)
            ]

        self.step(
            f"queues[{q}].push_many({payloads!r}, delay={delay!r})",
            lambda b: b.queues[q].push_many(payloads, delay=delay),
            show,
            expect=kvkit.InvalidArgument if self._huge(delay) else None,
            timers=self._timer(delay),
        )
        self._stats(q)

    @staticmethod
    def _show_messages(backend: Backend, messages: Any) -> Any:
        if not isinstance(messages, list):
            return canon(messages)
        return [(canon(m.payload), m.deliveries) for m in messages]

    def _pop(self, q: int, count: int) -> None:
        vis = QUEUES[q][1]["visibility_timeout"]
        raw = self.step(
            f"queues[{q}].pop_many({count})" if count != 1 else f"queues[{q}].pop()",
            (lambda b: b.queues[q].pop_many(count))
            if count != 1
            else (lambda b: [m] if (m := b.queues[q].pop()) else []),
            self._show_messages,
            timers=(vis,),
            lag=lease_lag(vis),
        )
        self._stats(q)
        if raw is None:
            return
        out = []
        for i in range(len(raw[REFERENCE])):
            self.delivered += 1
            messages = {b.name: raw[b.name][i] for b in self.backends}
            out.append(Delivery(f"d{self.delivered}", q, messages))
        self.deliveries = (self.deliveries + out)[-8:]

    def _ack(self, delivery: Delivery, by_id: bool) -> None:
        """queue.ack of a Message or of its id."""
        q = delivery.queue
        self.step(
            f"queues[{q}].ack({delivery!r}{'.id' if by_id else ''})",
            lambda b: b.queues[q].ack(
                delivery.messages[b.name].id if by_id else delivery.messages[b.name]
            ),
        )
        self._stats(q)

    def _nack(self, delivery: Delivery, delay: Any) -> None:
        """queue.nack (immediate or delayed redelivery, or dead-lettering)."""
        q = delivery.queue
        self.step(
            f"queues[{q}].nack({delivery!r}, delay={delay!r})",
            lambda b: b.queues[q].nack(delivery.messages[b.name], delay=delay),
            expect=kvkit.InvalidArgument if self._huge(delay) else None,
            timers=self._timer(delay),
        )
        self._stats(q)

    def _extend(self, delivery: Delivery, seconds: Any) -> None:
        """queue.extend (renews the lease for ``seconds``, at most the visibility timeout)."""
        q = delivery.queue
        vis = QUEUES[q][1]["visibility_timeout"]
        length = vis if seconds is None else seconds
        self.step(
            f"queues[{q}].extend({delivery!r}, {seconds!r})",
            lambda b: b.queues[q].extend(delivery.messages[b.name], seconds),
            timers=self._timer(length) or (vis,),
            lag=lease_lag(vis),
        )
        self._stats(q)

    def _stats(self, q: int) -> None:
        """queue.stats(): every count, consumers, and whether anything is in flight.

        Compared after every step that changes a queue, so that a count that drifts
        apart (ready vs pending, consumers) is seen where it happens.
        """
        # An in-flight message cannot be older than the example (plus a visibility timeout:
        # extend(m, s) makes a lease look (visibility - s) old, on every backend).
        age_bound = time.monotonic() - self.born + 31.0

        def show(backend: Backend, stats: Any) -> Any:
            if not isinstance(stats, kvkit.QueueStats):
                return canon(stats)
            oldest = stats.oldest_pending_s
            sane = oldest is None or 0 <= oldest <= age_bound
            return (
                f"ready={stats.ready} pending={stats.pending} delayed={stats.delayed} "
                f"dead={stats.dead} consumers={stats.consumers} "
                f"in_flight={oldest is not None}{'' if sane else f' oldest_pending_s={oldest}'}"
            )

        self.step(f"queues[{q}].stats()", lambda b: b.queues[q].stats(), show)

    def _dead_letters(self, q: int, count: int) -> None:
        """queue.dead_letters (oldest first)."""
        self.step(
            f"queues[{q}].dead_letters({count})",
            lambda b: b.queues[q].dead_letters(count),
            lambda b, dead: [(canon(m.payload), m.deliveries, m.reason) for m in dead],
        )

    def _requeue_dead(self, q: int, data: st.DataObject) -> None:
        """queue.requeue_dead (all, or chosen messages, or an unknown id)."""
        numbers = data.draw(
            st.one_of(
                st.none(), st.lists(st.sampled_from([0, *self.pushed[QUEUES[q][0]]]), max_size=3)
            )
        )

        def op(b: Backend) -> Any:
            if numbers is None:
                return b.queues[q].requeue_dead()
            return b.queues[q].requeue_dead([b.message_ids.get(n, "0" * 24) for n in numbers])

        self.step(f"queues[{q}].requeue_dead({numbers!r})", op)
        self._stats(q)

    def _purge(self, q: int, dead: bool) -> None:
        """queue.purge (optionally the dead letters too)."""
        self.step(f"queues[{q}].purge(dead={dead})", lambda b: b.queues[q].purge(dead=dead))
        self._stats(q)

    @precondition(lambda self: "queues" in self.groups)
    @rule(q=queue_index, many=st.booleans(), n=st.integers(1, 4), delay=delays, dedupe=dedupe_ids)
    def queue_produce(self, q: int, many: bool, n: int, delay: Any, dedupe: Any) -> None:
        """queue.push or queue.push_many."""
        if many:
            self._push_many(q, n, delay)
        else:
            self._push(q, delay, dedupe)

    @precondition(lambda self: "queues" in self.groups)
    @rule(q=queue_index, count=st.sampled_from([1, 1, 2, 3, 5]))
    def queue_consume(self, q: int, count: int) -> None:
        """queue.pop / pop_many (ordered: reclaimed leases first, then new messages)."""
        self._pop(q, count)

    @precondition(lambda self: "queues" in self.groups)
    @rule(
        pick=picks,
        how=st.sampled_from(["ack", "ack by id", "nack", "extend"]),
        delay=delays,
        seconds=extend_seconds,
    )
    def queue_settle(self, pick: int, how: str, delay: Any, seconds: Any) -> None:
        """ack (a Message or its id), nack or extend one of the recent deliveries."""
        if not self.deliveries:
            return
        delivery = self.deliveries[pick % len(self.deliveries)]
        if how == "nack":
            self._nack(delivery, delay)
        elif how == "extend":
            self._extend(delivery, seconds)
        else:
            self._ack(delivery, how == "ack by id")

    @precondition(lambda self: "queues" in self.groups)
    @rule(
        q=queue_index,
        how=st.sampled_from(["dead_letters", "requeue_dead", "purge", "bad input"]),
        data=st.data(),
    )
    def queue_admin(self, q: int, how: str, data: st.DataObject) -> None:
        """dead_letters, requeue_dead, purge, or a call with invalid input."""
        if how == "bad input":
            self._bad_input(data.draw(st.sampled_from(self.BAD_QUEUE_CALLS), label="call"))
        elif how == "dead_letters":
            self._dead_letters(q, data.draw(st.sampled_from([1, 2, 100]), label="count"))
        elif how == "requeue_dead":
            self._requeue_dead(q, data)
        else:
            self._purge(q, data.draw(st.booleans(), label="dead"))

    # Invalid input to the queue API: (description, call on a backend, expected error).
    BAD_QUEUE_CALLS: tuple[tuple[str, Callable[[Backend], Any], type[Exception]], ...] = (
        ("pop_many(0)", lambda b: b.queues[0].pop_many(0), kvkit.InvalidArgument),
        ("pop_many(True)", lambda b: b.queues[0].pop_many(True), kvkit.InvalidArgument),
        ("pop(timeout=-1)", lambda b: b.queues[1].pop(timeout=-1), kvkit.InvalidArgument),
        ("push_many('abc')", lambda b: b.queues[0].push_many("abc"), kvkit.InvalidArgument),
        ("push_many(5)", lambda b: b.queues[0].push_many(5), kvkit.InvalidArgument),
        ("push(object())", lambda b: b.queues[1].push(object()), kvkit.SerializationError),
        (
            "push_many([1, object()])",
            lambda b: b.queues[1].push_many([1, object()]),
            kvkit.SerializationError,
        ),
        (
            "push(1, dedupe_id='')",
            lambda b: b.queues[0].push(1, dedupe_id=""),
            kvkit.InvalidArgument,
        ),
        ("ack(42)", lambda b: b.queues[0].ack(42), kvkit.InvalidArgument),
        ("nack(42)", lambda b: b.queues[0].nack(42), kvkit.InvalidArgument),
        ("dead_letters(0)", lambda b: b.queues[0].dead_letters(0), kvkit.InvalidArgument),
        ("requeue_dead('id')", lambda b: b.queues[0].requeue_dead("id"), kvkit.InvalidArgument),
        (
            "queue('x', visibility_timeout=1e300)",
            lambda b: b.client.queue("x", visibility_timeout=1e300),
            kvkit.InvalidArgument,
        ),
        (
            "queue('x', visibility_timeout=MAX_SECONDS + 1)",
            lambda b: b.client.queue("x", visibility_timeout=MAX_SECONDS + 1),
            kvkit.InvalidArgument,
        ),
        (
            "queue('x', visibility_timeout=0)",
            lambda b: b.client.queue("x", visibility_timeout=0),
            kvkit.InvalidArgument,
        ),
        (
            "queue('x', max_deliveries=0)",
            lambda b: b.client.queue("x", max_deliveries=0),
            kvkit.InvalidArgument,
        ),
        ("queue('x', maxlen=0)", lambda b: b.client.queue("x", maxlen=0), kvkit.InvalidArgument),
        ("queue('x', group='')", lambda b: b.client.queue("x", group=""), kvkit.InvalidArgument),
        ("queue('x{y}')", lambda b: b.client.queue("x{y}"), kvkit.InvalidArgument),
        ("queue('x', bogus=1)", lambda b: b.client.queue("x", bogus=1), kvkit.KVKitError),
    )

    def _bad_input(self, call: Any) -> None:
        """Invalid queue input raises the same typed error everywhere; unknown ids are no-ops."""
        what, op, error = call
        self.step(what, op, lambda b, value: type(value).__name__, expect=error)
        junk = "0" * 24  # a well-formed id nobody pushed
        self.step(
            f"ack/nack/extend({junk!r})",
            lambda b: (b.queues[1].ack(junk), b.queues[1].nack(junk), b.queues[1].extend(junk)),
        )

    @rule()
    def wait_for_timers(self) -> None:
        """Sleep until every short lease, delay and TTL scheduled so far has fired."""
        now = time.monotonic()
        soon = [hi for lo, hi in self.events if lo < now + 5.0]
        if soon:
            time.sleep(max(0.0, max(soon) - now) + 0.01)


# -- the test ---------------------------------------------------------------------------------
def _cleaner(redis_server: RedisServer, cluster: RedisCluster) -> Callable[[str], None]:
    """A function deleting every key of one example's prefix on the real servers."""

    def cleanup(prefix: str) -> None:
        for server in (redis_server, *cluster.nodes):
            with server.client() as raw:
                doomed = list(raw.scan_iter(match=f"{prefix}:*", count=1000))
                for key in doomed:
                    raw.delete(key)

    return cleanup


@pytest.fixture
def bind(
    redis_url: str,
    redis_server: RedisServer,
    redis_cluster: RedisCluster,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Callable[[str, set[str]], type[Differential]]]:
    """Make a `Differential` subclass bound to the suite's servers, running rule ``groups``."""
    # Even with database=None, Hypothesis caches constants it scans from source files
    # under ./.hypothesis: keep that out of the repository too.
    set_hypothesis_home_dir(tmp_path_factory.mktemp("hypothesis"))

    def make(name: str, groups: set[str]) -> type[Differential]:
        urls = {
            "memory": "memory://",
            "fakeredis": "fakeredis://",
            "redis": redis_url,
            "cluster": redis_cluster.url,
        }
        attributes = {
            "groups": frozenset(groups),
            "urls": urls,
            "cleanup": staticmethod(_cleaner(redis_server, redis_cluster)),
        }
        return type(name, (Differential,), attributes)

    yield make
    set_hypothesis_home_dir(None)


def _settings(max_examples: int, steps: int) -> settings:
    return settings(
        max_examples=max_examples,
        stateful_step_count=steps,
        deadline=None,
        database=None,  # no .hypothesis/ directory in the repository
        derandomize=False,
        suppress_health_check=[
            HealthCheck.filter_too_much,
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
        ],
    )


def test_cache_and_sessions_agree(bind: Callable[[str, set[str]], type[Differential]]) -> None:
    """Cache and session operations observe the same results on all four backends."""
    machine = bind("CacheSessionDifferential", {"cache", "sessions"})
    run_state_machine_as_test(machine, settings=_settings(60, 30))


def test_queues_agree(bind: Callable[[str, set[str]], type[Differential]]) -> None:
    """Queue operations (with leases, delays, dead letters) agree on all four backends."""
    machine = bind("QueueDifferential", {"queues"})
    run_state_machine_as_test(machine, settings=_settings(40, 50))
