"""URL parsing, option validation, the scheme registry and redaction."""

from __future__ import annotations

import pytest

import kvkit
from kvkit._urls import SchemeSpec, parse_url, redact_url, register_scheme, schemes


@pytest.mark.parametrize(
    ("url", "hosts", "db", "name", "path"),
    [
        ("memory://", (), 0, None, None),
        ("memory://shared", (), 0, "shared", None),
        ("fakeredis://", (), 0, None, None),
        ("fakeredis://f1", (), 0, "f1", None),
        ("redis://", (("localhost", 6379),), 0, None, None),
        ("redis://h", (("h", 6379),), 0, None, None),
        ("redis://h:7000/3", (("h", 7000),), 3, None, None),
        ("redis://[::1]:7000/1", (("::1", 7000),), 1, None, None),
        ("rediss://h:6380", (("h", 6380),), 0, None, None),
        ("unix:///tmp/r.sock", (), 0, None, "/tmp/r.sock"),
        ("unix:///tmp/r.sock?db=4", (), 4, None, "/tmp/r.sock"),
    ],
)
def test_parse_valid_urls(url, hosts, db, name, path):
    """Valid URLs parse into hosts, db, name and path."""
    parsed = parse_url(url)
    assert parsed.hosts == hosts
    assert parsed.db == db
    assert parsed.name == name
    assert parsed.path == path


def test_credentials_are_parsed_and_unquoted():
    """User and percent-encoded password are decoded."""
    parsed = parse_url("redis://app:p%40ss%3Aword@h/0")
    assert parsed.username == "app"
    assert parsed.password == "p@ss:word"


def test_password_only():
    """redis://:pw@host has a password and no user."""
    parsed = parse_url("redis://:pw@h")
    assert parsed.username is None
    assert parsed.password == "pw"


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("socket_timeout=1.5", {"socket_timeout": 1.5}),
        ("socket_connect_timeout=2", {"connect_timeout": 2.0}),
        ("connect_timeout=2", {"connect_timeout": 2.0}),
        ("max_connections=7", {"max_connections": 7}),
        ("retries=0", {"retries": 0}),
        ("health_check_interval=0", {"health_check_interval": 0.0}),
        ("client_name=web", {"client_name": "web"}),
    ],
)
def test_redis_options_are_converted(query, expected):
    """Query options are validated and converted to their types."""
    assert parse_url(f"redis://h?{query}").options == expected


def test_tls_options_only_on_rediss():
    """ssl_* options are accepted on rediss:// and rejected on redis://."""
    parsed = parse_url(
        "rediss://h?ssl_cert_reqs=none&ssl_ca_certs=/ca.pem&ssl_check_hostname=false"
    )
    assert parsed.options == {
        "ssl_cert_reqs": "none",
        "ssl_ca_certs": "/ca.pem",
        "ssl_check_hostname": False,
    }
    with pytest.raises(kvkit.ConfigError, match="unknown option 'ssl_cert_reqs'"):
        parse_url("redis://h?ssl_cert_reqs=none")


def test_memory_maxsize():
    """memory:// takes maxsize."""
    assert parse_url("memory://x?maxsize=10").options == {"maxsize": 10}


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("nope://h", "unknown URL scheme 'nope'"),
        ("redis:/h", "malformed URL"),
        ("localhost:6379", "malformed URL"),
        ("redis://h?bogus=1", "unknown option 'bogus'"),
        ("redis://h?socket_timeout=abc", "socket_timeout"),
        ("redis://h?socket_timeout=0", "socket_timeout"),
        ("redis://h?socket_timeout=-1", "socket_timeout"),
        ("redis://h?max_connections=0", "max_connections"),
        ("redis://h?max_connections=1.5", "max_connections"),
        ("redis://h?socket_timeout=1&socket_timeout=2", "given twice"),
        ("redis://h/notadb", "database must be a number"),
        ("redis://h/1/2", "unexpected path"),
        ("redis://h:0", "out of range"),
        ("redis://h:http", "invalid port"),
        ("redis://a:1,b:2", "one host"),
        ("rediss://h?ssl_cert_reqs=maybe", "ssl_cert_reqs"),
        ("rediss://h?ssl_check_hostname=perhaps", "ssl_check_hostname"),
        ("memory://x?maxsize=0", "maxsize"),
        ("memory://x/path", "unexpected path"),
        ("memory://:pw@x", "takes no credentials"),
        ("unix://host/tmp/s.sock", "no host"),
        ("unix://", "absolute socket path"),
        ("redis://h#frag", "fragment"),
        ("redis://h?=x", "unknown option"),
    ],
)
def test_bad_urls_raise_config_error(url, message):
    """Malformed URLs and options raise ConfigError saying what is wrong."""
    with pytest.raises(kvkit.ConfigError, match=message):
        parse_url(url)


@pytest.mark.parametrize("bad", [None, 5, b"redis://h", ""])
def test_non_str_url(bad):
    """A URL must be a non-empty str."""
    with pytest.raises(kvkit.ConfigError):
        parse_url(bad)


def test_unknown_scheme_lists_supported():
    """The error for an unknown scheme lists the supported ones."""
    with pytest.raises(kvkit.ConfigError) as info:
        parse_url("mongo://h")
    for scheme in ("memory://", "redis://", "rediss://", "unix://", "fakeredis://"):
        assert scheme in str(info.value)


def test_unknown_option_lists_supported():
    """The error for an unknown option lists the supported ones."""
    with pytest.raises(kvkit.ConfigError) as info:
        parse_url("redis://h?timeout=1")
    assert "socket_timeout" in str(info.value)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://:secret@h:6379/0", "redis://:***@h:6379/0"),
        ("redis://user:secret@h/0", "redis://***:***@h/0"),
        ("redis://user@h", "redis://***@h"),
        ("rediss://u:s@h?ssl_cert_reqs=none", "rediss://***:***@h?ssl_cert_reqs=none"),
        ("redis://h:6379", "redis://h:6379"),
        ("redis://u:p@ss@h", "redis://***:***@h"),
        ("garbage:secret@host", "***"),
    ],
)
def test_redaction(url, shown):
    """Credentials are replaced by *** and nothing else changes."""
    assert redact_url(url) == shown


@pytest.mark.parametrize(
    "url",
    [
        "redis://:hunter2@h/x",
        "redis://u:hunter2@h?bogus=1",
        "rediss://u:hunter2@h:99999",
        "nope://u:hunter2@h",
    ],
)
def test_errors_never_contain_the_password(url):
    """ConfigError messages show the redacted URL only."""
    with pytest.raises(kvkit.ConfigError) as info:
        parse_url(url)
    assert "hunter2" not in str(info.value)
    assert "hunter2" not in repr(info.value)


def test_parsed_url_repr_is_redacted():
    """repr/str of a parsed URL never show secrets."""
    parsed = parse_url("redis://u:hunter2@h")
    assert "hunter2" not in repr(parsed)
    assert "hunter2" not in str(parsed)


def test_pool_key_distinguishes_db_and_credentials():
    """Roles share a pool only for the same server, db and credentials."""
    assert parse_url("redis://h/0").pool_key == parse_url("redis://h:6379/0").pool_key
    assert parse_url("redis://h/0").pool_key != parse_url("redis://h/1").pool_key
    assert parse_url("redis://:a@h/0").pool_key != parse_url("redis://:b@h/0").pool_key


def test_registry_lists_builtin_schemes():
    """The built-in schemes are registered."""
    assert {"memory", "fakeredis", "redis", "rediss", "unix"} <= set(schemes())


def test_third_party_scheme_from_entry_point(monkeypatch):
    """A scheme published in the kvkit.backends entry-point group is found lazily."""
    import importlib.metadata

    from kvkit import _urls

    spec = SchemeSpec(
        scheme="acme",
        family="custom",
        options={},
        sync_factory="kvkit._sync.backends.memory:MemoryBackend",
        async_factory="kvkit._async.backends.memory:AsyncMemoryBackend",
    )

    class FakeEntryPoint:
        name = "acme"

        def load(self):
            return spec

    monkeypatch.setattr(_urls, "_entry_points_loaded", False)
    monkeypatch.setattr(importlib.metadata, "entry_points", lambda group: [FakeEntryPoint()])
    monkeypatch.delitem(_urls._REGISTRY, "acme", raising=False)
    try:
        parsed = parse_url("acme://h:1")
        assert parsed.spec is spec
        assert parsed.hosts == (("h", 1),)
        client = kvkit.Client("acme://h:1")
        client.cache.set("k", 1)
        assert client.cache.get("k") == 1
    finally:
        _urls._REGISTRY.pop("acme", None)


def test_register_scheme_replaces():
    """register_scheme() adds a scheme the parser then accepts."""
    spec = SchemeSpec(
        scheme="mem2",
        family="memory",
        options={},
        sync_factory="kvkit._sync.backends.memory:MemoryBackend",
        async_factory="kvkit._async.backends.memory:AsyncMemoryBackend",
    )
    register_scheme(spec)
    try:
        assert parse_url("mem2://x").name == "x"
    finally:
        from kvkit import _urls

        _urls._REGISTRY.pop("mem2")


# --------------------------------------------------------------- issue 11 #5: checked up front


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("redis://" + "a" * 64 + ".example.com/0", "1-63 characters"),
        ("redis://a..b/0", "1-63 characters"),
        ("redis://" + ".".join(["a" * 60] * 5) + "/0", "at most 253"),
        ("redis+cluster://ok:7000," + "b" * 70 + ":7001", "1-63 characters"),
        ("redis+sentinel://" + "c" * 64 + ":26379/mymaster", "1-63 characters"),
        ("redis://bad host/0", "invalid host name"),
        ("redis://[zz::1]:6379", "invalid IPv6"),
        ("redis://[::1]x", "invalid IPv6 host"),
        ("redis://h:65536", "out of range"),
        ("redis://h:+80", "invalid port"),
        ("redis://h:\u0668\u0660", "invalid port"),
        ("redis://h/-1", "database must be a number"),
        ("redis://h/1_0", "database must be a number"),
        ("redis://h/ 1", "database must be a number"),
        ("redis://h/2147483648", "0..2147483647"),
        ("unix:///tmp/s.sock?db=2147483648", "db"),
        ("unix:///tmp/s.sock?db=-1", "db"),
        ("redis://h?client_name=has%20space", "client_name"),
        ("redis://h?client_name=new%0Aline", "client_name"),
        ("redis://h?client_name=", "client_name"),
        ("redis://h?client_name=caf%C3%A9", "client_name"),
        ("redis://h?socket_timeout=nan", "socket_timeout"),
        ("redis://h?socket_timeout=inf", "socket_timeout"),
        ("redis://h?socket_timeout=1e300", "100 years"),
        ("redis://h?connect_timeout=-0.5", "connect_timeout"),
        ("redis://h?health_check_interval=-1", "health_check_interval"),
        ("redis://h?max_connections=1_000", "max_connections"),
        ("redis://h?max_connections=99999999999", "max_connections"),
        ("redis://h?retries=-1", "retries"),
        ("rediss://h?ssl_ca_certs=/ca%00.pem", "control characters"),
        ("memory://x?maxsize=-3", "maxsize"),
        ("redis://h\n/0", "control character"),
        ("redis+sentinel://h:26379/my master/0", "service name"),
        ("redis+sentinel://h:26379/m%00/0", "service name"),
        ("unix:///tmp/a%00b.sock", "socket path"),
    ],
)
def test_bad_components_raise_config_error_at_parse_time(url, message):
    """Hosts, ports, db, client_name and every option are validated without I/O."""
    with pytest.raises(kvkit.ConfigError, match=message):
        parse_url(url)


@pytest.mark.parametrize(
    ("url", "hosts", "db"),
    [
        ("redis://" + "a" * 63 + ".example.com/0", (("a" * 63 + ".example.com", 6379),), 0),
        ("redis://redis_1:6380/2", (("redis_1", 6380),), 2),  # docker-compose service names
        ("redis://cache.example.com.:6379/0", (("cache.example.com.", 6379),), 0),
        ("redis://bücher.example/1", (("bücher.example", 6379),), 1),
        ("redis://[fe80::1]:6379/0", (("fe80::1", 6379),), 0),
        ("redis://h/2147483647", (("h", 6379),), 2147483647),
        ("redis://h:65535/15", (("h", 65535),), 15),
    ],
)
def test_valid_edge_components_parse(url, hosts, db):
    """Valid edge cases: a 63-char label, underscores, FQDN dot, IDN, IPv6, the maximum db."""
    parsed = parse_url(url)
    assert (parsed.hosts, parsed.db) == (hosts, db)


def test_client_name_printable_ascii_is_accepted():
    """Any printable ASCII without spaces is a valid Redis client name."""
    assert parse_url("redis://h?client_name=web-1.worker_%2A").options == {
        "client_name": "web-1.worker_*"
    }


def test_a_long_label_fails_in_the_constructor_not_at_first_use():
    """The finding: a 64-char label used to raise a raw UnicodeError at first use."""
    with pytest.raises(kvkit.ConfigError):
        kvkit.Client("redis://" + "x" * 64 + ".example.com:6379/0")
    with pytest.raises(kvkit.ConfigError):
        kvkit.AsyncClient(settings=kvkit.Settings(url="redis://h/0?client_name=my app"))


# --------------------------------------------------------------- issue 11 #13: redaction


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://:pa/ss@h:6379/0", "redis://***"),
        ("redis://:pa#ss@h:6379/0", "redis://***"),
        ("redis://:pa?ss@h:6379/0", "redis://***"),
        ("redis://u:pa/s?s#x@h/0", "redis://***"),
        ("redis://:p@q/r@h/0", "redis://***"),
        ("redis://app:hunter2", "redis://***"),  # "@host" forgotten: no host to show
        ("redis://:hunter2", "redis://***"),
        ("redis://:a b@h/0", "redis://:***@h/0"),
        ("redis://:p:a:ss@h/0", "redis://:***@h/0"),
        ("redis://h/0?password=hunter2", "redis://h/0?password=***"),
        ("redis://h/0?username=app&password=p@ss", "redis://h/0?username=***&password=***"),
        ("redis://h/0?password=ab&cd=ef", "redis://h/0?password=***&***"),
        ("redis://h/0?socket_timeout=2&password=x", "redis://h/0?socket_timeout=2&password=***"),
        ("redis://h/0?client_name=a@b", "redis://***"),
        ("redis://:pw@h/0#frag", "redis://:***@h/0#***"),
        ("app:hunter2", "***"),
        ("user:pw@host://x", "***"),
        ("localhost:6379", "localhost:6379"),
    ],
)
def test_redaction_by_parsing(url, shown):
    """What the URL grammar cannot place is hidden whole; query credentials are hidden."""
    assert redact_url(url) == shown


@pytest.mark.parametrize(
    "url",
    [
        "redis://:hunter2/x@h:6379/0",
        "redis://:hun#ter2@h:6379/0",
        "redis://:hun?ter2@h:6379/0",
        "redis://app:hunter2",
        "redis://app:hunter2/0",
        "redis://h/0?password=hunter2&bogus=1",
        "redis://h/0?password=hun&ter2=1",
        "redis://h/0?password=hun&ter2",
        "redis://h/0?password=hunter2#x",
        "redis://h/0?password=",
        "redis://:hunter2@h/0?password=hunter2",
        "memory://x?password=hunter2",
        "redis://h?password=hunter2%00",
    ],
)
def test_no_secret_in_errors_for_misplaced_passwords(url):
    """The finding's forms (raw / # ?, ?password=) never reach an error message."""
    with pytest.raises(kvkit.ConfigError) as info:
        parse_url(url)
    for text in (str(info.value), repr(info.value)):
        assert "hunter2" not in text and "ter2" not in text, text


def test_query_credentials_are_accepted_as_redis_py_does():
    """?password= and ?username= set the credentials (percent- and +-decoding as redis-py)."""
    parsed = parse_url("redis://h:6379/0?username=app&password=p%40ss%2Fw+rd")
    assert (parsed.username, parsed.password) == ("app", "p@ss/w rd")
    assert parsed.options == {}
    assert "p@ss" not in repr(parsed)
    assert parse_url("redis://h/0?password=p@ss").password == "p@ss"
    assert parse_url("rediss://h?password=x&ssl_cert_reqs=none").password == "x"
    assert parse_url("unix:///tmp/s.sock?db=1&password=x").password == "x"
    assert parse_url("redis+sentinel://h:1/m?password=x&sentinel_auth=true").password == "x"
    assert parse_url("redis://h?password=a").pool_key != parse_url("redis://h?password=b").pool_key
    with pytest.raises(kvkit.ConfigError, match="password given twice"):
        parse_url("redis://:a@h/0?password=b")


def test_percent_encoded_special_passwords_parse():
    """Encoded / ? # @ : % and spaces in a password round-trip."""
    parsed = parse_url("redis://us%2Fer:p%2F%3F%23%40%3A%25%20x@h/0")
    assert (parsed.username, parsed.password) == ("us/er", "p/?#@:% x")
    assert parsed.redacted == "redis://***:***@h/0"


# --------------------------------------------------------------- Valkey: one entry per scheme


@pytest.mark.parametrize(
    ("valkey", "redis"),
    [
        ("valkey://h", "redis://h"),
        ("valkey://", "redis://"),
        ("valkey://h:7000/3", "redis://h:7000/3"),
        ("valkey://[::1]:7000/1", "redis://[::1]:7000/1"),
        ("valkey://app:p%40ss@h/0", "redis://app:p%40ss@h/0"),
        ("valkey://h/0?username=u&password=p", "redis://h/0?username=u&password=p"),
        (
            "valkey://h?socket_timeout=1.5&client_name=web",
            "redis://h?socket_timeout=1.5&client_name=web",
        ),
        ("valkeys://h:6380", "rediss://h:6380"),
        (
            "valkeys://h?ssl_cert_reqs=none&ssl_ca_certs=/ca.pem&ssl_check_hostname=false",
            "rediss://h?ssl_cert_reqs=none&ssl_ca_certs=/ca.pem&ssl_check_hostname=false",
        ),
    ],
)
def test_valkey_urls_parse_as_their_redis_twins(valkey, redis):
    """valkey:// and valkeys:// parse exactly like redis:// and rediss://."""
    a, b = parse_url(valkey), parse_url(redis)
    assert (a.hosts, a.db, a.username, a.password, a.options) == (
        b.hosts,
        b.db,
        b.username,
        b.password,
        b.options,
    )
    assert a.redacted == b.redacted.replace("redis", "valkey", 1)


@pytest.mark.parametrize(("scheme", "twin"), [("valkey", "redis"), ("valkeys", "rediss")])
def test_valkey_schemes_are_one_entry_on_the_redis_driver(scheme, twin):
    """Each Valkey scheme is one registry entry naming the Redis backend classes."""
    spec, redis_spec = parse_url(f"{scheme}://h").spec, parse_url(f"{twin}://h").spec
    assert spec.scheme == scheme and scheme in schemes()
    assert (spec.family, spec.tls, spec.sync_factory, spec.async_factory) == (
        redis_spec.family,
        redis_spec.tls,
        redis_spec.sync_factory,
        redis_spec.async_factory,
    )
    assert spec.options.keys() == redis_spec.options.keys()
    with kvkit.Client(f"{scheme}://h:1/0") as client:  # no I/O
        assert type(client.backend()).__name__ == "RedisBackend"
        assert client.backend().kind == "redis"


def test_valkey_tls_options_only_on_valkeys():
    """ssl_* options are accepted on valkeys:// and rejected on valkey://, as for Redis."""
    assert parse_url("valkeys://h?ssl_cert_reqs=optional").options == {"ssl_cert_reqs": "optional"}
    with pytest.raises(kvkit.ConfigError, match="unknown option 'ssl_cert_reqs' for valkey://"):
        parse_url("valkey://h?ssl_cert_reqs=none")
    with pytest.raises(kvkit.ConfigError, match="one host"):
        parse_url("valkey://a:1,b:2")


def test_valkeys_connects_with_verified_tls():
    """A valkeys:// backend builds TLS connections, verified unless told otherwise."""
    from redis.connection import SSLConnection

    with kvkit.Client("valkeys://h:6380/0") as client:
        kwargs = client.backend()._pool_kwargs()
    assert kwargs["connection_class"] is SSLConnection
    assert (kwargs["ssl_cert_reqs"], kwargs["ssl_check_hostname"]) == ("required", True)
    with kvkit.Client("valkey://h:6380/0") as client:
        assert client.backend()._pool_kwargs()["connection_class"] is not SSLConnection


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("valkey://:secret@h:6379/0", "valkey://:***@h:6379/0"),
        ("valkeys://u:s@h?ssl_cert_reqs=none", "valkeys://***:***@h?ssl_cert_reqs=none"),
        ("valkey://h/0?password=hunter2", "valkey://h/0?password=***"),
        ("valkey://:pa/ss@h:6379/0", "valkey://***"),
    ],
)
def test_valkey_redaction(url, shown):
    """Valkey URLs hide their credentials like Redis URLs."""
    assert redact_url(url) == shown


def test_valkey_errors_never_contain_the_password():
    """A bad Valkey URL's error shows the redacted URL only."""
    for url in (
        "valkey://:hunter2@h/x",
        "valkeys://u:hunter2@h:99999",
        "valkey://h?password=hunter2&x=1",
    ):
        with pytest.raises(kvkit.ConfigError) as info:
            parse_url(url)
        assert "hunter2" not in str(info.value)


# --------------------------------------------------------------- register_scheme() checks its input


def _spec(**changes):
    fields = {
        "scheme": "acme2",
        "family": "custom",
        "options": {},
        "sync_factory": "kvkit._sync.backends.memory:MemoryBackend",
        "async_factory": "kvkit._async.backends.memory:AsyncMemoryBackend",
    }
    return SchemeSpec(**{**fields, **changes})


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("acme://", "takes a SchemeSpec"),
        (_spec(scheme="Acme"), "invalid scheme 'Acme'"),
        (_spec(scheme="1acme"), "invalid scheme"),
        (_spec(scheme="ac me"), "invalid scheme"),
        (_spec(family="mongo"), "unknown family 'mongo'"),
        (_spec(sync_factory="acme.backend"), "must be 'module:attr'"),
        (_spec(async_factory=":AcmeBackend"), "must be 'module:attr'"),
        (_spec(async_factory=42), "must be a class or 'module:attr'"),
    ],
)
def test_register_scheme_rejects_bad_specs(spec, message):
    """A scheme that could never be parsed or loaded fails at registration (ConfigError)."""
    with pytest.raises(kvkit.ConfigError, match=message):
        register_scheme(spec)
    assert "acme2" not in schemes() and "Acme" not in schemes()


def test_scheme_with_classes_as_factories():
    """A SchemeSpec may name its backend classes directly instead of 'module:attr'."""
    from kvkit._async.backends.memory import AsyncMemoryBackend
    from kvkit._sync.backends.memory import MemoryBackend

    register_scheme(_spec(sync_factory=MemoryBackend, async_factory=AsyncMemoryBackend))
    try:
        spec = parse_url("acme2://h:1").spec
        assert spec.load(is_async=False) is MemoryBackend
        assert spec.load(is_async=True) is AsyncMemoryBackend
    finally:
        from kvkit import _urls

        _urls._REGISTRY.pop("acme2")


def test_entry_point_must_be_named_after_its_scheme(monkeypatch):
    """An entry point whose SchemeSpec is for another scheme is a ConfigError, not a mix-up."""
    import importlib.metadata

    from kvkit import _urls

    class FakeEntryPoint:
        name = "acme3"

        def load(self):
            return _spec(scheme="other")

    monkeypatch.setattr(_urls, "_entry_points_loaded", False)
    monkeypatch.setattr(importlib.metadata, "entry_points", lambda group: [FakeEntryPoint()])
    with pytest.raises(kvkit.ConfigError, match="named after"):
        parse_url("acme3://h")
    assert "other" not in schemes()
