"""Which backends the conformance suite runs on, and how to reach each of them."""

from __future__ import annotations

import uuid

import pytest

import kvkit

BACKENDS = [
    pytest.param("memory", id="memory"),
    pytest.param("fakeredis", id="fakeredis"),
    pytest.param("redis", id="redis", marks=pytest.mark.redis),
    pytest.param("valkey", id="valkey", marks=pytest.mark.valkey),
    pytest.param("cluster", id="cluster", marks=pytest.mark.cluster),
    pytest.param("sentinel", id="sentinel", marks=pytest.mark.sentinel),
]


def settings_for(
    request: pytest.FixtureRequest, backend: str, **overrides: object
) -> kvkit.Settings:
    """Settings for an isolated client on ``backend`` (a unique prefix on shared servers)."""
    prefix = "t" + uuid.uuid4().hex[:12]
    if backend == "memory":
        url = "memory://"
    elif backend == "fakeredis":
        url = "fakeredis://"
    elif backend == "redis":
        url = request.getfixturevalue("redis_url")
    elif backend == "valkey":
        url = request.getfixturevalue("valkey_url")
    elif backend == "cluster":
        url = request.getfixturevalue("redis_cluster").url
    elif backend == "sentinel":
        url = request.getfixturevalue("sentinel_setup").url
    else:  # pragma: no cover - a typo in a parametrization
        raise AssertionError(backend)
    return kvkit.Settings(url=url, prefix=prefix, **overrides)  # type: ignore[arg-type]
