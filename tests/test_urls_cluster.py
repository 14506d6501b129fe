"""URL parsing and registry entries of Redis Cluster and Sentinel (no server needed)."""

from __future__ import annotations

import pytest

import kvkit
from kvkit._urls import parse_url, schemes


@pytest.mark.parametrize(
    ("url", "hosts"),
    [
        ("redis+cluster://h:7000", (("h", 7000),)),
        ("redis+cluster://a:7000,b:7001,c", (("a", 7000), ("b", 7001), ("c", 6379))),
        ("redis+cluster://a:7000/0", (("a", 7000),)),
        ("redis+cluster://[::1]:7000,b:7001", (("::1", 7000), ("b", 7001))),
        ("rediss+cluster://a:7000,b:7001", (("a", 7000), ("b", 7001))),
    ],
)
def test_cluster_urls_parse(url, hosts):
    """Cluster URLs take one or more host:port seeds and db 0."""
    parsed = parse_url(url)
    assert parsed.hosts == hosts
    assert parsed.db == 0
    assert parsed.spec.family == "cluster"


def test_cluster_tls_flag_and_options():
    """rediss+cluster:// speaks TLS and accepts the TLS options; redis+cluster:// does not."""
    parsed = parse_url("rediss+cluster://a:1,b:2?ssl_cert_reqs=none&ssl_ca_certs=/ca.pem")
    assert parsed.spec.tls is True
    assert parsed.options == {"ssl_cert_reqs": "none", "ssl_ca_certs": "/ca.pem"}
    assert parse_url("redis+cluster://a:1").spec.tls is False
    with pytest.raises(kvkit.ConfigError, match="ssl_cert_reqs"):
        parse_url("redis+cluster://a:1?ssl_cert_reqs=none")


@pytest.mark.parametrize("url", ["redis+cluster://a:1/1", "rediss+cluster://a:1,b:2/3"])
def test_cluster_db_other_than_zero_is_config_error(url):
    """Redis Cluster only has database 0."""
    with pytest.raises(kvkit.ConfigError, match="database 0"):
        parse_url(url)


@pytest.mark.parametrize(
    "url",
    [
        "redis+cluster://",
        "redis+cluster://a:1,,b:2",
        "redis+cluster://a:1,b:x",
        "redis+cluster://a:99999",
        "redis+cluster://a:1/0/1",
        "redis+cluster://a:1?unknown=1",
        "redis+cluster://a:1?db=2",
    ],
)
def test_bad_cluster_urls(url):
    """Missing hosts, bad ports, extra path segments and unknown options are ConfigErrors."""
    with pytest.raises(kvkit.ConfigError):
        parse_url(url)


def test_cluster_credentials_are_redacted():
    """User and password of a cluster URL never show in repr or errors."""
    parsed = parse_url("redis+cluster://app:s3cret@a:1,b:2?client_name=web")
    assert (parsed.username, parsed.password) == ("app", "s3cret")
    assert "s3cret" not in repr(parsed)
    assert parsed.redacted == "redis+cluster://***:***@a:1,b:2?client_name=web"
    with pytest.raises(kvkit.ConfigError) as info:
        parse_url("redis+cluster://app:s3cret@a:1,b:2/5")
    assert "s3cret" not in str(info.value)


@pytest.mark.parametrize(
    ("url", "hosts", "service", "db"),
    [
        ("redis+sentinel://s1:26380/mymaster", (("s1", 26380),), "mymaster", 0),
        ("redis+sentinel://s1/mymaster/2", (("s1", 26379),), "mymaster", 2),
        ("redis+sentinel://s1:1,s2:2/svc", (("s1", 1), ("s2", 2)), "svc", 0),
        ("redis+sentinel://:pw@s1:1/svc/0", (("s1", 1),), "svc", 0),
    ],
)
def test_sentinel_urls_parse(url, hosts, service, db):
    """Sentinel URLs: sentinel hosts (default port 26379), SERVICE and an optional db."""
    parsed = parse_url(url)
    assert parsed.hosts == hosts
    assert parsed.name == service
    assert parsed.db == db
    assert parsed.spec.family == "sentinel"


@pytest.mark.parametrize(
    "url",
    [
        "redis+sentinel://s1:1",
        "redis+sentinel://s1:1/",
        "redis+sentinel:///svc",
        "redis+sentinel://s1:1/svc/x",
        "redis+sentinel://s1:1/svc/0/1",
        "redis+sentinel://s1:1/svc?ssl_cert_reqs=none",
        "redis+sentinel://s1:1/svc?sentinel_auth=maybe",
    ],
)
def test_bad_sentinel_urls(url):
    """No SERVICE, no host, a bad db, TLS options or a bad flag are ConfigErrors."""
    with pytest.raises(kvkit.ConfigError):
        parse_url(url)


def test_sentinel_options():
    """sentinel_auth is a boolean option; the usual Redis options apply too."""
    parsed = parse_url("redis+sentinel://s1/svc?sentinel_auth=yes&max_connections=5")
    assert parsed.options == {"sentinel_auth": True, "max_connections": 5}
    assert "sentinel_auth" not in parse_url("redis+sentinel://s1/svc").options
    with pytest.raises(kvkit.ConfigError, match="sentinel_auth"):
        parse_url("redis://h?sentinel_auth=true")


def test_registry_lists_the_new_schemes():
    """The registry knows the cluster and sentinel schemes and names them in errors."""
    assert {"redis+cluster", "rediss+cluster", "redis+sentinel"} <= set(schemes())
    with pytest.raises(kvkit.ConfigError, match=r"redis\+cluster://"):
        parse_url("redis+nope://h")


@pytest.mark.parametrize(
    ("url", "sync_name", "async_name"),
    [
        ("redis+cluster://a:1", "ClusterBackend", "AsyncClusterBackend"),
        ("rediss+cluster://a:1", "ClusterBackend", "AsyncClusterBackend"),
        ("redis+sentinel://s:1/svc", "SentinelBackend", "AsyncSentinelBackend"),
    ],
)
def test_factories_load_without_io(url, sync_name, async_name):
    """Each scheme maps to a sync and an async backend class; clients build with no I/O."""
    spec = parse_url(url).spec
    assert spec.load(is_async=False).__name__ == sync_name
    assert spec.load(is_async=True).__name__ == async_name
    with kvkit.Client(url) as client:
        assert type(client.backend()).__name__ == sync_name
        assert client.backend().kind in ("cluster", "sentinel")


def test_roles_share_one_cluster_backend():
    """Roles on the same cluster URL share one backend (one set of pools)."""
    with kvkit.Client("redis+cluster://a:1,b:2") as client:
        assert client.backend("cache") is client.backend("sessions") is client.backend("queues")
