"""The RateLimiter protocol on every backend (memory, fakeredis, real Redis, Cluster).

Time-dependent tests use short periods and assert bounds that hold under scheduling
jitter: every server here runs on this machine, so its clock is the test's clock.
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import ThreadPoolExecutor

import attrs
import pytest

import kvkit
from kvkit._compat import asleep
from tests.servers import free_port

ALGORITHMS = ["fixed_window", "sliding_window", "token_bucket"]


async def fresh_window(period: float, room: float = 0.3) -> None:
    """Wait until at least ``room`` seconds are left in the current fixed window."""
    left = period - time.time() % period
    if left < room:
        await asleep(left + 0.01)


@pytest.fixture
def limiter(client):
    """Factory: ``limiter(rate, algorithm=..., **options)`` on the test's client."""

    def make(rate="3/minute", algorithm="sliding_window", name="api", **options):
        return client.rate_limiter(name, rate, algorithm=algorithm, **options)

    return make


# -- the API ----------------------------------------------------------------------------------
@pytest.mark.parametrize("algorithm", ALGORITHMS)
async def test_limit_then_deny(limiter, algorithm):
    """`limit` hits are admitted, `remaining` falling; the next is denied with a retry time."""
    if algorithm == "fixed_window":
        await fresh_window(3600.0, room=5.0)
    lim = limiter("3/hour", algorithm)
    decisions = [await lim.hit("user-1") for _ in range(4)]
    assert [d.allowed for d in decisions] == [True, True, True, False]
    assert [d.remaining for d in decisions] == [2, 1, 0, 0]
    assert all(d.limit == 3 for d in decisions)
    assert all(d.retry_after is None for d in decisions[:3])
    denied = decisions[3]
    assert denied.retry_after is not None and 0 < denied.retry_after <= 3600
    assert 0 < denied.reset_after <= 3600
    if algorithm == "token_bucket":  # one unit comes back every 20 minutes
        assert 1190 < denied.retry_after <= 1200


@pytest.mark.parametrize("algorithm", ALGORITHMS)
async def test_decision_fields(limiter, algorithm):
    """A decision is a frozen attrs object with the documented field types."""
    decision = await limiter("5/hour", algorithm).hit("k")
    assert isinstance(decision, kvkit.RateLimitDecision)
    assert decision.allowed is True
    assert type(decision.limit) is int and type(decision.remaining) is int
    assert type(decision.reset_after) is float and 0 < decision.reset_after <= 3600
    assert decision.retry_after is None
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        decision.allowed = False  # type: ignore[misc]


@pytest.mark.parametrize("algorithm", ALGORITHMS)
async def test_denied_hit_consumes_nothing(limiter, algorithm):
    """A hit too big for what is left is denied and leaves the allowance as it was."""
    if algorithm == "fixed_window":
        await fresh_window(3600.0, room=5.0)
    lim = limiter("5/hour", algorithm)
    assert (await lim.hit("k", cost=3)).remaining == 2
    for _ in range(3):
        denied = await lim.hit("k", cost=3)
        assert not denied.allowed and denied.remaining == 2
    assert (await lim.hit("k", cost=2)).remaining == 0
    assert not (await lim.hit("k")).allowed


@pytest.mark.parametrize("algorithm", ALGORITHMS)
async def test_peek_does_not_consume(limiter, algorithm):
    """peek reports what a hit of 1 would get, any number of times, without using it."""
    if algorithm == "fixed_window":
        await fresh_window(3600.0, room=5.0)
    lim = limiter("2/hour", algorithm)
    fresh = await lim.peek("k")
    assert fresh.allowed and fresh.remaining == 2 and fresh.reset_after == 0.0
    await lim.hit("k")
    for _ in range(3):
        seen = await lim.peek("k")
        assert seen.allowed and seen.remaining == 1 and seen.reset_after > 0
    await lim.hit("k")
    empty = await lim.peek("k")
    assert not empty.allowed and empty.remaining == 0 and empty.retry_after > 0
    assert (await lim.hit("k")).allowed is False


@pytest.mark.parametrize("algorithm", ALGORITHMS)
async def test_reset_clears(limiter, algorithm):
    """After reset the key has its whole allowance again; other keys keep theirs."""
    lim = limiter("2/hour", algorithm)
    for key in ("a", "b"):
        await lim.hit(key)
        await lim.hit(key)
    assert await lim.reset("a") is None
    assert (await lim.hit("a")).remaining == 1
    assert not (await lim.hit("b")).allowed
    await lim.reset("never-hit")  # resetting nothing is fine


async def test_keys_and_names_are_independent(limiter):
    """Each key of a limiter, and each limiter name, has an allowance of its own."""
    one, two = limiter("1/hour", name="one"), limiter("1/hour", name="two")
    assert (await one.hit("k")).allowed
    assert (await one.hit("other")).allowed
    assert (await two.hit("k")).allowed
    assert not (await one.hit("k")).allowed


async def test_limiters_of_one_name_share_state(client, backend, limiter):
    """Two limiter objects with one name (of two clients, on servers) count the same hits."""
    first = limiter("2/hour", name="shared")
    # memory:// and fakeredis:// without a NAME are private to their client.
    private = backend in ("memory", "fakeredis")
    other = client if private else kvkit.AsyncClient(settings=client.settings)
    try:
        second = other.rate_limiter("shared", "2/hour")
        await first.hit("k")
        assert (await second.hit("k")).remaining == 0
        assert not (await first.hit("k")).allowed
    finally:
        if other is not client:
            await other.aclose()


async def test_limiter_attributes_and_protocol(limiter):
    """The limiter is a kvkit.AsyncRateLimiter and tells its name, rate and algorithm."""
    lim = limiter("10/2s", "token_bucket", name="burst", burst=5)
    assert isinstance(lim, kvkit.AsyncRateLimiter)
    assert (lim.name, lim.algorithm, lim.rate) == ("burst", "token_bucket", kvkit.Rate(10, 2))
    assert lim.limit == 15
    assert "burst" in repr(lim)


async def test_keys_of_any_text(limiter):
    """Keys may hold any text (colons, braces, unicode), within the key rules."""
    lim = limiter("1/hour")
    for key in ("a:b", "{tag}", "ü✓", "x" * 1024, "1.2.3.4"):
        assert (await lim.hit(key)).allowed
        assert not (await lim.hit(key)).allowed


# -- time: windows, logs and buckets ------------------------------------------------------------
async def test_fixed_window_resets_at_the_boundary(limiter):
    """A fixed window admits `limit` per window and starts over when the next one begins."""
    period = 0.5
    await fresh_window(period, room=0.35)
    lim = limiter("2/0.5s", "fixed_window")
    assert (await lim.hit("k")).allowed and (await lim.hit("k")).allowed
    denied = await lim.hit("k")
    assert not denied.allowed
    assert 0 < denied.retry_after <= period
    await asleep(denied.retry_after + 0.02)
    again = await lim.hit("k")
    assert again.allowed and again.remaining == 1


async def test_sliding_window_frees_each_hit_one_period_later(limiter):
    """Units come back one period after their own hit, not at a window boundary."""
    lim = limiter("2/0.6s", "sliding_window")
    first_at = time.time()
    assert (await lim.hit("k")).allowed
    await asleep(0.3)
    second_at = time.time()
    assert (await lim.hit("k")).allowed
    denied = await lim.hit("k")
    assert not denied.allowed
    # The first hit leaves the window 0.6 s after it was made (slack: reply latency).
    assert first_at + 0.6 - 0.05 <= time.time() + denied.retry_after <= second_at + 0.8
    await asleep(denied.retry_after + 0.02)
    seen = await lim.peek("k")  # the first hit has left; nothing has dropped it yet
    assert seen.allowed and seen.remaining == 1
    freed = await lim.hit("k")
    assert freed.allowed and freed.remaining == 0  # the second hit is still inside
    assert not (await lim.hit("k")).allowed


async def test_token_bucket_burst_then_sustained_rate(limiter):
    """limit + burst at once, then one unit per period/limit."""
    lim = limiter("2/0.6s", "token_bucket", burst=3)  # one unit every 0.3 s, 5 at once
    burst = [await lim.hit("k") for _ in range(6)]
    assert [d.allowed for d in burst] == [True] * 5 + [False]
    assert burst[4].remaining == 0 and burst[0].limit == 5
    retry = burst[5].retry_after
    assert retry is not None and 0 < retry <= 0.3
    for _ in range(2):  # sustained: exactly one unit per interval
        await asleep(retry + 0.01)
        assert (await lim.hit("k")).allowed
        denied = await lim.hit("k")
        assert not denied.allowed
        retry = denied.retry_after
        assert retry is not None and 0.1 < retry <= 0.3


async def test_token_bucket_without_burst_admits_limit_at_once(limiter):
    """With burst 0 a full bucket holds `limit` units."""
    lim = limiter("4/minute", "token_bucket")
    assert [(await lim.hit("k")).allowed for _ in range(5)] == [True] * 4 + [False]


@pytest.mark.parametrize("algorithm", ALGORITHMS)
async def test_concurrent_hits_admit_exactly_the_limit(limiter, algorithm):
    """Many concurrent callers on one key: exactly `limit` hits are admitted."""
    if algorithm == "fixed_window":
        await fresh_window(3600.0, room=5.0)
    lim = limiter("20/hour", algorithm)
    if True:  # ASYNC
        import asyncio

        results = await asyncio.gather(*(lim.hit("hot") for _ in range(60)))
    else:
        with ThreadPoolExecutor(12) as pool:
            results = list(pool.map(lambda _: lim.hit("hot"), range(60)))
    assert sum(d.allowed for d in results) == 20
    assert sorted(d.remaining for d in results if d.allowed) == list(range(20))


# -- validation and failure ---------------------------------------------------------------------
def dead_url() -> str:
    """A Redis URL where nothing listens: any I/O fails at once."""
    return f"redis://127.0.0.1:{free_port()}/0"


@pytest.mark.parametrize(
    "rate",
    ["", "5", "5/", "/minute", "0/minute", "-1/minute", "5/week", "5/0s", "5/-2s", "x/second",
     "5 per minute", "5/minutes", "1.5/second", 5, None, (5, 60)],
)  # fmt: skip
async def test_bad_rates_are_refused(rate):
    """Bad rate strings, N <= 0 and other types raise InvalidArgument; nothing is sent."""
    async with kvkit.AsyncClient(dead_url()) as client:
        with pytest.raises(kvkit.InvalidArgument):
            client.rate_limiter("api", rate)


@pytest.mark.parametrize(
    ("name", "options"),
    [
        ("", {}),
        ("a:b", {}),
        ("{tag}", {}),
        (7, {}),
        ("api", {"algorithm": "leaky"}),
        ("api", {"algorithm": "sliding_window", "burst": 2}),
        ("api", {"algorithm": "token_bucket", "burst": -1}),
        ("api", {"algorithm": "token_bucket", "burst": 1.5}),
    ],
)
async def test_bad_limiter_definitions_are_refused(name, options):
    """Bad names, unknown algorithms and misplaced or bad bursts raise InvalidArgument."""
    async with kvkit.AsyncClient(dead_url()) as client:
        with pytest.raises(kvkit.InvalidArgument):
            client.rate_limiter(name, "5/minute", **options)


@pytest.mark.parametrize(
    ("key", "cost"),
    [("", 1), (None, 1), (5, 1), ("x" * 1025, 1), ("k", 0), ("k", -1), ("k", 1.0), ("k", True),
     ("k", 6), ("k", "1")],
)  # fmt: skip
async def test_bad_hits_are_refused_before_any_io(key, cost):
    """Bad keys and costs (< 1, > limit, not int) raise InvalidArgument, not a backend error."""
    async with kvkit.AsyncClient(dead_url()) as client:
        lim = client.rate_limiter("api", "5/minute", fail_open=True)
        with pytest.raises(kvkit.InvalidArgument):
            await lim.hit(key, cost=cost)
        if key != "k":  # a bad key: peek and reset refuse it too
            with pytest.raises(kvkit.InvalidArgument):
                await lim.peek(key)
            with pytest.raises(kvkit.InvalidArgument):
                await lim.reset(key)


async def test_cost_up_to_limit_plus_burst():
    """The token bucket accepts a cost up to limit + burst, and no more."""
    async with kvkit.AsyncClient("memory://") as client:
        lim = client.rate_limiter("api", "5/minute", algorithm="token_bucket", burst=2)
        assert (await lim.hit("k", cost=7)).allowed
        with pytest.raises(kvkit.InvalidArgument):
            await lim.hit("k", cost=8)


async def test_backend_errors_propagate_by_default():
    """Without fail_open a stopped server raises BackendError from hit, peek and reset."""
    settings = kvkit.Settings(url=dead_url(), retries=0)
    async with kvkit.AsyncClient(settings=settings) as client:
        lim = client.rate_limiter("api", "5/minute")
        for call in (lim.hit, lim.peek, lim.reset):
            with pytest.raises(kvkit.BackendUnavailable):
                await call("k")


async def test_fail_open_allows_and_warns_without_the_key(caplog):
    """fail_open on a stopped server: allowed decisions, a warning that never shows the key."""
    settings = kvkit.Settings(url=dead_url(), retries=0)
    secret_key = "user-4242@example.com"
    async with kvkit.AsyncClient(settings=settings) as client:
        lim = client.rate_limiter("login", "5/minute", fail_open=True)
        with caplog.at_level(logging.WARNING, logger="kvkit.ratelimit"):
            hit = await lim.hit(secret_key, cost=2)
            peek = await lim.peek(secret_key)
        for decision in (hit, peek):
            assert decision.allowed and decision.retry_after is None
            assert decision.limit == 5
        warnings = [r for r in caplog.records if r.name == "kvkit.ratelimit"]
        assert len(warnings) == 2 and all(r.levelno == logging.WARNING for r in warnings)
        text = "\n".join(r.getMessage() for r in warnings)
        assert "login" in text and "failed open" in text
        assert secret_key not in text
        with pytest.raises(kvkit.BackendError):  # an operator's reset never fails silently
            await lim.reset(secret_key)
