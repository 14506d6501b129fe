"""Key-space aliasing: namespaces and prefixes never share keys with anything else."""

from __future__ import annotations

import attrs
import pytest

import kvkit
from tests.backends import settings_for


async def test_parent_key_and_namespace_key_are_different_entries(cache):
    """Key 'users:1' and namespace('users')['1'] are two entries; the child's clear() spares it."""
    users = cache.namespace("users")
    await cache.set("users:1", "parent")
    await users.set("1", "child")
    assert await cache.get("users:1") == "parent"
    assert await users.get("1") == "child"
    assert await users.clear() == 1
    assert await cache.get("users:1") == "parent"
    assert await users.get("1") is None


async def test_namespace_clear_spares_lookalike_parent_keys(cache):
    """Parent keys that merely look like the namespace survive its clear()."""
    lookalikes = {"users": 1, "users:": 2, "users:1": 3, "users:a:b": 4, "usersx": 5}
    await cache.set_many(lookalikes)
    users = cache.namespace("users")
    await users.set_many({"1": "a", "a:b": "b"})
    assert await users.clear() == 2
    assert await cache.get_many(list(lookalikes)) == lookalikes


async def test_nested_namespaces_do_not_alias_keys(cache):
    """namespace('a').namespace('b')['k'], namespace('a')['b:k'] and 'a:b:k' are all distinct."""
    outer = cache.namespace("a")
    inner = outer.namespace("b")
    await cache.set("a:b:k", 1)
    await outer.set("b:k", 2)
    await inner.set("k", 3)
    assert (await cache.get("a:b:k"), await outer.get("b:k"), await inner.get("k")) == (1, 2, 3)
    assert await inner.clear() == 1
    assert await outer.get("b:k") == 2
    assert await outer.clear() == 1
    assert await cache.get("a:b:k") == 1


async def test_sibling_namespaces_with_common_start_are_separate(cache):
    """namespace('a').clear() leaves namespace('ab') alone."""
    a, ab = cache.namespace("a"), cache.namespace("ab")
    await a.set("k", 1)
    await ab.set("k", 2)
    assert await a.clear() == 1
    assert await ab.get("k") == 2


async def test_keys_starting_with_the_namespace_mark_are_rejected(cache):
    """'#' at the start of a cache key is reserved for namespaces: InvalidArgument, nothing sent."""
    calls = [
        lambda: cache.get("#users"),
        lambda: cache.set("#users", 1),
        lambda: cache.add("#users", 1),
        lambda: cache.exists("#users"),
        lambda: cache.delete("#users"),
        lambda: cache.incr("#users"),
        lambda: cache.touch("#users"),
        lambda: cache.ttl("#users"),
        lambda: cache.get_many(["ok", "#users"]),
        lambda: cache.set_many({"ok": 1, "#users": 1}),
        lambda: cache.delete_many(["ok", "#users"]),
        lambda: cache.get_or_set("#users", lambda: 1),
        lambda: cache.namespace("n").set("#k", 1),
    ]
    for call in calls:
        with pytest.raises(kvkit.InvalidArgument, match="must not start with '#'"):
            await call()
    assert not await cache.exists("ok")
    assert await cache.set("a#b", 1) is None  # only the first character is reserved


@pytest.mark.parametrize("name", ["a:b", ":", "x{y}", "{x}", "", 3])
async def test_ambiguous_namespace_names_are_rejected(cache, name):
    """Namespace names with ':' or hash-tag braces (or not a key at all) raise InvalidArgument."""
    with pytest.raises(kvkit.InvalidArgument):
        cache.namespace(name)


async def test_raw_layout_of_plain_and_namespaced_keys(client, backend):
    """Plain keys keep {prefix}:cache:{key}; namespaced keys live under {prefix}:cache:#{name}:."""
    if backend == "memory":
        pytest.skip("memory:// has no raw Redis keys")
    prefix = client.settings.prefix
    cache = client.cache
    await cache.set("users:1", "parent")
    await cache.namespace("users").set("1", "child")
    raw = client.redis()
    assert await raw.get(f"{prefix}:cache:users:1") == b'"parent"'
    assert await raw.get(f"{prefix}:cache:#users:1") == b'"child"'
    await cache.clear()


@pytest.mark.parametrize("prefix", ["kvkit:cache", "app:", ":x", "a:b:c"])
def test_prefix_with_a_colon_is_config_error(prefix):
    """A prefix is one key segment: a ':' could alias another client's roles (ConfigError)."""
    with pytest.raises(kvkit.ConfigError, match="without ':'"):
        kvkit.Settings(prefix=prefix)


async def test_cache_clear_spares_a_longer_prefix_sessions_and_queues(request, backend):
    """cache.clear() of prefix P leaves the sessions, queues and cache of prefix P-cache alone."""
    short = settings_for(request, backend)
    if backend == "memory":
        # Two clients share data only through a named memory store.
        short = attrs.evolve(short, url=f"memory://{short.prefix}")
    long = attrs.evolve(short, prefix=short.prefix + "-cache")
    async with kvkit.AsyncClient(settings=short) as a, kvkit.AsyncClient(settings=long) as b:
        sid = await b.sessions.create({"user": "ada"})
        await b.queue("jobs").push({"n": 1})
        await b.cache.set("k", 1)
        await a.cache.set("k", 2)
        assert await a.cache.clear() == 1
        assert await b.sessions.get(sid) == {"user": "ada"}
        assert (await b.queue("jobs").stats()).ready == 1
        assert await b.cache.get("k") == 1
        await b.sessions.delete(sid)
        await b.queue("jobs").purge()
        await b.cache.clear()
