"""kvkit.ext.prometheus: metric names, label sets and counts; /metrics on FastAPI and Flask."""

from __future__ import annotations

import time
import uuid

import httpx
import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

import kvkit
from kvkit.ext.prometheus import KVKitCollector
from tests.appservers import run_app

# The names as the parser reports them (counters without their _total suffix).
FAMILIES = {
    "kvkit_operations": ("counter", {"service", "op", "backend", "outcome"}),
    "kvkit_operation_duration_seconds": ("histogram", {"service", "op", "backend"}),
    "kvkit_cache_hits": ("counter", set()),
    "kvkit_cache_misses": ("counter", set()),
    "kvkit_queue_messages": ("gauge", {"queue", "state"}),
    "kvkit_queue_oldest_ready_age_seconds": ("gauge", {"queue"}),
}


def _parse(text):
    return {family.name: family for family in text_string_to_metric_families(text)}


def _value(families, name, **labels):
    """The value of the sample ``name`` (a full sample name) with exactly ``labels``."""
    family_name = name.removesuffix("_total").removesuffix("_count").removesuffix("_sum")
    for family in families.values():
        for sample in family.samples:
            if sample.name == name and sample.labels == labels:
                return sample.value
    raise AssertionError(f"no sample {name}{labels} in {sorted(families)} ({family_name})")


def _check_names_and_labels(families):
    assert set(families) == set(FAMILIES)
    for name, (kind, labels) in FAMILIES.items():
        family = families[name]
        assert family.type == kind, name
        for sample in family.samples:
            assert set(sample.labels) - {"le"} == labels, (name, sample)
            if kind == "histogram" and sample.name.endswith("_bucket"):
                assert "le" in sample.labels
    assert {s.labels["state"] for s in families["kvkit_queue_messages"].samples} == {
        "ready",
        "pending",
        "delayed",
        "dead",
    }


def _url(request, backend):
    if backend == "redis":
        return request.getfixturevalue("redis_url")
    return {"memory": "memory://", "fakeredis": "fakeredis://"}[backend]


BACKENDS = [
    "memory",
    "fakeredis",
    pytest.param("redis", marks=pytest.mark.redis),
]


@pytest.mark.parametrize("backend", BACKENDS)
def test_sync_client_exposition(request, backend):
    """Names, types and label sets exactly as documented; counts are the operations done."""
    prefix = "t" + uuid.uuid4().hex[:12]
    with kvkit.Client(settings=kvkit.Settings(url=_url(request, backend), prefix=prefix)) as c:
        c.cache.set("a", 1)
        c.cache.get("a")
        c.cache.get("b")
        with pytest.raises(kvkit.InvalidArgument):
            c.cache.get("")
        queue = c.queue("jobs", max_deliveries=1)
        queue.push_many([1, 2, 3])
        queue.push(4, delay=60)
        queue.pop().nack()  # dead
        queue.pop()  # in flight
        registry = CollectorRegistry()
        KVKitCollector(c, registry=registry)
        families = _parse(generate_latest(registry).decode())
        queue.purge(dead=True)
    _check_names_and_labels(families)
    label = {"backend": backend}
    ops = "kvkit_operations_total"
    assert _value(families, ops, service="cache", op="get", outcome="ok", **label) == 2
    assert _value(families, ops, service="cache", op="get", outcome="error", **label) == 1
    assert _value(families, ops, service="cache", op="set", outcome="ok", **label) == 1
    assert _value(families, ops, service="queue", op="pop", outcome="ok", **label) == 2
    assert _value(families, ops, service="queue", op="nack", outcome="ok", **label) == 1
    # The scrape's own stats reads are not the application's operations.
    assert not any(s.labels.get("op") == "stats" for s in families["kvkit_operations"].samples)
    count = "kvkit_operation_duration_seconds_count"
    assert _value(families, count, service="cache", op="get", **label) == 3
    inf = "kvkit_operation_duration_seconds_bucket"
    assert _value(families, inf, service="cache", op="get", le="+Inf", **label) == 3
    assert _value(families, "kvkit_cache_hits_total") == 1
    assert _value(families, "kvkit_cache_misses_total") == 1
    gauge = "kvkit_queue_messages"
    assert _value(families, gauge, queue="jobs", state="ready") == 1
    assert _value(families, gauge, queue="jobs", state="pending") == 1
    assert _value(families, gauge, queue="jobs", state="delayed") == 1
    assert _value(families, gauge, queue="jobs", state="dead") == 1
    age = _value(families, "kvkit_queue_oldest_ready_age_seconds", queue="jobs")
    assert 0 <= age < 30


@pytest.mark.parametrize("backend", BACKENDS)
async def test_async_client_exposition(request, backend):
    """An AsyncClient's collector reads its queues in a loop of its own at scrape time."""
    prefix = "t" + uuid.uuid4().hex[:12]
    url = _url(request, backend)
    if backend == "memory":
        url = f"memory://{prefix}"  # the scrape's loop must see the same store
    async with kvkit.AsyncClient(settings=kvkit.Settings(url=url, prefix=prefix)) as client:
        await client.cache.get("nothing")
        await client.queue("emails").push("hi")
        registry = CollectorRegistry()
        KVKitCollector(client, registry=registry)
        # A plain function, as a scrape thread calls it (here it blocks this loop briefly).
        families = _parse(generate_latest(registry).decode())
        await client.queue("emails").purge()
    _check_names_and_labels(families)
    assert _value(families, "kvkit_cache_misses_total") == 1
    assert _value(families, "kvkit_queue_messages", queue="emails", state="ready") == 1


def test_unreachable_server_scrape_is_bounded():
    """Against a dead server a scrape ends within its time limit, queue gauges left out."""
    settings = kvkit.Settings(url="redis://127.0.0.1:1/0", retries=0, connect_timeout=0.3)
    with kvkit.Client(settings=settings) as client:
        client.queue("jobs")  # known, unreadable
        with pytest.raises(kvkit.BackendError):
            client.cache.get("k")
        registry = CollectorRegistry()
        KVKitCollector(client, registry=registry, timeout=1.0)
        started = time.monotonic()
        families = _parse(generate_latest(registry).decode())
        assert time.monotonic() - started < 3
    ops = "kvkit_operations_total"
    assert _value(families, ops, service="cache", op="get", backend="redis", outcome="error") == 1
    assert not families["kvkit_queue_messages"].samples


def test_collector_options():
    """queues=False leaves the gauges out; registry=None registers nowhere; bad options fail."""
    client = kvkit.Client("memory://")
    registry = CollectorRegistry()
    KVKitCollector(client, registry=registry, queues=False)
    assert set(_parse(generate_latest(registry).decode())) == set(FAMILIES) - {
        "kvkit_queue_messages",
        "kvkit_queue_oldest_ready_age_seconds",
    }
    KVKitCollector(client, registry=None).collect()
    with pytest.raises(kvkit.ConfigError):
        KVKitCollector(object(), registry=None)
    with pytest.raises(kvkit.ConfigError):
        KVKitCollector(client, registry=None, max_queues=0)


def _scrape_after_work(base):
    with httpx.Client(base_url=base, timeout=10) as http:
        for _ in range(3):
            assert http.post("/work").json() == {"found": [1, 2, None]}
        response = http.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return _parse(response.text)


def _check_app_metrics(families):
    _check_names_and_labels(families)
    ops = "kvkit_operations_total"
    assert _value(families, ops, service="cache", op="set", backend="redis", outcome="ok") == 6
    assert _value(families, ops, service="cache", op="get", backend="redis", outcome="ok") == 9
    assert _value(families, ops, service="queue", op="push", backend="redis", outcome="ok") == 3
    assert _value(families, "kvkit_cache_hits_total") == 6
    assert _value(families, "kvkit_cache_misses_total") == 3
    assert _value(families, "kvkit_queue_messages", queue="jobs", state="ready") == 3


@pytest.mark.redis
def test_fastapi_metrics_route_under_uvicorn(redis_url):
    """GET /metrics of a FastAPI app under uvicorn: the app's operations, its queues."""
    env = {"KVKIT_URL": redis_url, "KVKIT_PREFIX": "t" + uuid.uuid4().hex[:12]}
    args = ["-m", "uvicorn", "tests.obs_apps:fastapi_app", "--factory", "--port", "{port}"]
    with run_app([*args, "--no-access-log"], env=env) as server:
        _check_app_metrics(_scrape_after_work(server.base))


@pytest.mark.redis
def test_flask_metrics_blueprint_under_werkzeug(redis_url):
    """GET /metrics of a Flask app in a threaded Werkzeug server."""
    env = {"KVKIT_URL": redis_url, "KVKIT_PREFIX": "t" + uuid.uuid4().hex[:12]}
    with run_app(["-m", "tests.obs_apps", "--port", "{port}"], env=env) as server:
        _check_app_metrics(_scrape_after_work(server.base))
