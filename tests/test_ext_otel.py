"""kvkit.ext.otel: one span per operation, no values or secrets; the metrics through OTel."""

from __future__ import annotations

import uuid

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

import kvkit
from kvkit.ext.otel import instrument

SECRET_KEY = "user:ada@example.com"
SECRET_VALUE = "s3cr3t-value-7f3a"


@pytest.fixture
def providers():
    """In-memory span exporter and metric reader behind fresh providers."""
    spans = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
    reader = InMemoryMetricReader()
    meter_provider = MeterProvider(metric_readers=[reader])
    yield spans, tracer_provider, reader, meter_provider
    meter_provider.shutdown()
    tracer_provider.shutdown()


def _metrics(reader):
    """``{name: [(attributes, point)]}`` of one collection."""
    out = {}
    for resource in reader.get_metrics_data().resource_metrics:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                out[metric.name] = [(dict(p.attributes), p) for p in metric.data.data_points]
    return out


def _url(request, backend):
    if backend == "redis":
        return request.getfixturevalue("redis_url")
    return {"memory": "memory://", "fakeredis": "fakeredis://"}[backend]


@pytest.mark.parametrize(
    "backend", ["memory", "fakeredis", pytest.param("redis", marks=pytest.mark.redis)]
)
def test_spans_per_operation_without_values(request, providers, backend):
    """Each operation is a CLIENT span with semantic attributes and nothing of the data."""
    spans, tracer_provider, _reader, meter_provider = providers
    prefix = "t" + uuid.uuid4().hex[:12]
    url = _url(request, backend)
    with kvkit.Client(settings=kvkit.Settings(url=url, prefix=prefix)) as client:
        instrument(client, tracer_provider=tracer_provider, meter_provider=meter_provider)
        client.cache.set(SECRET_KEY, SECRET_VALUE)
        assert client.cache.get(SECRET_KEY) == SECRET_VALUE
        sid = client.sessions.create({"token": SECRET_VALUE})
        client.sessions.get(sid)
        with pytest.raises(kvkit.SerializationError):
            client.cache.set(SECRET_KEY, object())
        client.queue("jobs").push({"secret": SECRET_VALUE})
        client.queue("jobs").purge()
    finished = spans.get_finished_spans()
    assert [s.name for s in finished] == [
        "cache.set",
        "cache.get",
        "sessions.create",
        "sessions.get",
        "cache.set",
        "queue.push",
        "queue.purge",
    ]
    system = "memory" if backend == "memory" else "redis"
    for span in finished:
        assert span.kind is SpanKind.CLIENT
        attributes = dict(span.attributes)
        assert attributes["db.system.name"] == system
        assert attributes["db.operation.name"] == span.name.split(".")[1]
        assert attributes["kvkit.service"] == span.name.split(".")[0]
        assert attributes["kvkit.backend"] == backend
        text = repr(attributes) + repr(span.events) + repr(span.status)
        for secret in (SECRET_KEY, SECRET_VALUE, sid, prefix, "password"):
            assert secret not in text
    if backend == "redis":
        host, port = url.split("//")[1].split("/")[0].rsplit(":", 1)
        assert finished[0].attributes["server.address"] == host
        assert finished[0].attributes["server.port"] == int(port)
        assert finished[0].attributes["db.namespace"] == "0"
    failed = finished[4]
    assert failed.status.status_code is StatusCode.ERROR
    assert failed.status.description is None  # the message names the key: not recorded
    assert failed.attributes["error.type"] == "kvkit.SerializationError"
    assert not failed.events
    assert all(s.status.status_code is StatusCode.UNSET for s in finished if s is not failed)


async def test_async_client_metrics(providers):
    """An AsyncClient: counters, histogram, hits/misses and queue gauges through OTel."""
    spans, tracer_provider, reader, meter_provider = providers
    name = "otel-" + uuid.uuid4().hex[:8]
    async with kvkit.AsyncClient(f"memory://{name}") as client:
        instrument(client, tracer_provider=tracer_provider, meter_provider=meter_provider)
        await client.cache.set("a", 1)
        await client.cache.get("a")
        await client.cache.get("b")
        queue = client.queue("mails", max_deliveries=1)
        await queue.push_many([1, 2])
        await (await queue.pop()).nack()
        # The gauges are read now, in a loop of the reader's own (a plain callback).
        metrics = _metrics(reader)
    ops = {(a["service"], a["op"], a["outcome"]): p.value for a, p in metrics["kvkit.operations"]}
    assert ops[("cache", "set", "ok")] == 1
    assert ops[("cache", "get", "ok")] == 2
    assert ops[("queue", "push_many", "ok")] == 1
    assert ops[("queue", "pop", "ok")] == 1
    assert all(a["backend"] == "memory" for a, _ in metrics["kvkit.operations"])
    durations = {(a["service"], a["op"]): p for a, p in metrics["kvkit.operation.duration"]}
    assert durations[("cache", "get")].count == 2
    assert next(iter(durations[("cache", "get")].explicit_bounds)) == 0.00001
    assert [p.value for _, p in metrics["kvkit.cache.hits"]] == [1]
    assert [p.value for _, p in metrics["kvkit.cache.misses"]] == [1]
    states = {
        a["state"]: p.value for a, p in metrics["kvkit.queue.messages"] if a["queue"] == "mails"
    }
    assert states == {"ready": 1, "pending": 0, "delayed": 0, "dead": 1}
    ages = {a["queue"]: p.value for a, p in metrics["kvkit.queue.oldest_ready_age"]}
    assert 0 <= ages["mails"] < 30
    assert [s.name for s in spans.get_finished_spans()][:3] == [
        "cache.set",
        "cache.get",
        "cache.get",
    ]


def test_uninstrument_and_refusals(providers):
    """uninstrument() stops the spans; a second instrument or metrics=False is refused."""
    spans, tracer_provider, _reader, meter_provider = providers
    client = kvkit.Client("memory://")
    instrumentation = instrument(
        client, tracer_provider=tracer_provider, meter_provider=meter_provider
    )
    with pytest.raises(kvkit.ConfigError):
        instrument(client, tracer_provider=tracer_provider, meter_provider=meter_provider)
    client.cache.get("x")
    instrumentation.uninstrument()
    client.cache.get("y")
    assert [s.name for s in spans.get_finished_spans()] == ["cache.get"]
    assert client.metrics_snapshot()["operations"][0]["count"] == 2  # recording goes on
    off = kvkit.Client(settings=kvkit.Settings(metrics=False))
    with pytest.raises(kvkit.ConfigError):
        instrument(off, tracer_provider=tracer_provider, meter_provider=meter_provider)
