"""Distributed locks: ``client.lock(name)`` and ``client.locks()``.

A lock is held by one owner at a time across every process that shares the backend, with
a TTL so that a holder that dies blocks the others for at most ``ttl``. Each acquisition
gets a fencing token, strictly increasing per lock name, that the holder can hand to the
resource it protects so that writes of a holder whose lock expired can be refused.

Policy lives here (arguments, waiting, renewal, what a lost lock means); the atomic steps
are the driver's (one Lua script each on Redis, one mutex hold in memory), and the no-I/O
parts (checks, key layout, values, replies) are in :mod:`kvkit._lock_base`.

Waiting for a held lock polls the backend with jittered exponential backoff from 2 ms to
100 ms (never past the holder's remaining TTL). Polling rather than pub/sub: a notification
needs a subscribed connection per waiter, Redis expiry events are not delivered when a key
expires but when the server gets round to deleting it, and on Cluster they stay on the node
of the key. Polling costs at most ten commands a second per waiter and hands a freed lock
over within about 100 ms; waiters on the same lock object in this process are woken at
once, without polling.
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from typing import Any

from .._compat import (
    AsyncCancelCheck,
    AsyncRepeater,
    AsyncShield,
    Notifier,
    asleep,
    await_notified,
)
from .._errors import InvalidArgument, KVKitError, LockNotOwned, LockTimeout
from .._lock_base import (
    LockInfo,
    check_flag,
    fence_key,
    holder_info,
    lock_key,
    lock_ms,
    lock_seconds,
    name_from_key,
    new_owner,
    poll_delay,
    renew_interval,
    validate_lock_name,
)
from .backends.base import AsyncLockDriver
from .metered import metered

__all__ = ["AsyncLockService", "held_locks"]

log = logging.getLogger("kvkit.lock")


class _LocalGate:
    """One holder at a time per lock object, among the callers of this process.

    A lock object may be shared (a module-level lock used by every request): its holder
    state (owner id, token, renewal) belongs to one hold at a time. Local contenders wait
    here and are woken as soon as the holder releases, instead of polling the server. A
    thread mutex with a :class:`Notifier` serves every caller alike, whatever runs it; the
    notifier is made by the first caller that has to wait (most lock objects never wait).
    """

    __slots__ = ("_mutex", "_released")

    def __init__(self) -> None:
        self._mutex = threading.Lock()
        self._released: Notifier | None = None

    async def acquire(self, deadline: float | None) -> bool:
        """Take the gate before ``deadline`` (monotonic; ``None``: no limit)."""
        if self._mutex.acquire(blocking=False):
            return True
        released = self._notifier()
        while True:
            # The version is read before trying the mutex: a release in between changes
            # it, so the wait below returns at once (no lost wake-up).
            version = released.version
            if self._mutex.acquire(blocking=False):
                return True
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                return False
            await await_notified(released, version, remaining)

    def _notifier(self) -> Notifier:
        with _GATE_SETUP:
            if self._released is None:
                self._released = Notifier()
            return self._released

    def release(self) -> None:
        """Give the gate back and wake the local waiters, if any."""
        self._mutex.release()
        # Read after the release: a waiter makes the notifier before trying the mutex.
        released = self._released
        if released is not None:
            released.notify()


_GATE_SETUP = threading.Lock()


class _Hold:
    """One acquisition: who holds the lock, its token, and its renewal."""

    __slots__ = ("owner", "released", "renewal", "token")

    def __init__(self, owner: str, token: int) -> None:
        self.owner = owner
        self.token = token
        self.released = False
        self.renewal: AsyncRepeater | None = None


async def _renew(
    driver: AsyncLockDriver,
    key: str,
    name: str,
    hold: _Hold,
    holder: weakref.ref[Any],
    ttl_ms: int,
    where: str,
) -> bool:
    """One renewal (every third of the TTL); return whether to go on.

    Holds the lock object only weakly: a lock object dropped while held (nobody can
    release it any more) is collected, its renewal ends at the next turn and the lock
    expires. A renewal that fails or finds the lock lost ends the renewing with a warning,
    unless the hold was released meanwhile (then it changed nothing: it checks owner and
    token).
    """
    if hold.released or holder() is None:
        return False
    try:
        renewed = await driver.extend(key, hold.owner, hold.token, ttl_ms)
    except Exception as exc:  # any failure ends the renewal; the holder learns on release
        if not hold.released:
            log.warning(
                "lock %r on %s: renewal failed (%s: %s); renewing stopped, the lock "
                "expires unless released first",
                name,
                where,
                type(exc).__name__,
                exc,
            )
        return False
    if not renewed and not hold.released:
        log.warning(
            "lock %r on %s: lost (it expired or another owner took it over); renewing "
            "stopped and release() will raise LockNotOwned",
            name,
            where,
        )
    return renewed


@metered("lock", "acquire", "release", "extend", "locked")
# SYNC-TEXT: "async with lock:" -> "with lock:"
class AsyncLockService:
    """A distributed lock, made by ``client.lock(name)``; see :class:`kvkit.AsyncLock`.

    Use it as ``async with lock:`` (raises :class:`kvkit.LockTimeout` when the lock is not
    acquired within ``timeout``) or with :meth:`acquire` / :meth:`release`. The object may
    be shared: callers of this process that use the same object take turns (it is not
    reentrant), and the holder state belongs to the current hold.

    Args:
        driver: The backend's lock driver.
        name: The lock's name (non-empty, at most 1024 UTF-8 bytes, no ``{``/``}``).
        prefix: Key prefix of locks (``{Settings.prefix}:lock:``).
        ttl: Seconds (or ``timedelta``) the lock lives without renewal; a holder that dies
            blocks others for at most this long.
        timeout: Seconds :meth:`acquire` and ``with`` wait by default; ``0`` tries once;
            ``None`` waits forever.
        auto_renew: Renew the lock every ``ttl / 3`` while it is held.
        where: The backend's redacted URL, for messages.

    Raises:
        InvalidArgument: a bad name, ``ttl`` (not positive, not finite), ``timeout``
            (negative, not finite) or ``auto_renew`` (not a bool). Nothing is sent.
    """

    def __init__(
        self,
        driver: AsyncLockDriver,
        *,
        name: str,
        prefix: str,
        ttl: Any = 30,
        timeout: Any = 10,
        auto_renew: bool = True,
        where: str,
    ) -> None:
        self._name = validate_lock_name(name)
        self._ttl_ms = lock_ms(ttl, "ttl")
        self._timeout = None if timeout is None else lock_seconds(timeout, "timeout", zero_ok=True)
        self._auto_renew = check_flag(auto_renew, "auto_renew")
        self._driver = driver
        self._key = lock_key(prefix, self._name)
        self._fence = fence_key(self._key)
        self._where = where
        self._gate = _LocalGate()
        self._hold: _Hold | None = None

    def __repr__(self) -> str:
        state = "held" if self._hold is not None else "not held"
        return f"<kvkit lock {self._name!r} {state} on {self._where}>"

    @property
    def name(self) -> str:
        """The lock's name."""
        return self._name

    @property
    def token(self) -> int | None:
        """The fencing token of the current hold; ``None`` while this object holds nothing.

        Strictly increasing per lock name across every holder: pass it to the resource you
        protect and let it refuse writes that carry a smaller token than it has seen.
        """
        hold = self._hold
        return None if hold is None else hold.token

    # -- acquire ----------------------------------------------------------------------------
    async def acquire(self, *, blocking: bool = True, timeout: Any = None) -> bool:
        """Acquire the lock; return whether it is held now.

        Args:
            blocking: ``False``: try once, never wait.
            timeout: Seconds to wait (``0``: try once); ``None``: the lock's ``timeout``.

        Returns:
            ``True`` once held (:attr:`token` is set), ``False`` when the wait ended first.

        Raises:
            InvalidArgument: a bad ``timeout`` or ``blocking``, or a ``timeout`` with
                ``blocking=False``.
            BackendError: the backend failed (an acquire whose outcome is unknown is
                undone first, so no lock is left behind).
        """
        check_flag(blocking, "blocking")
        wait: float | None
        if timeout is None:
            wait = self._timeout if blocking else 0.0
        elif not blocking:
            raise InvalidArgument("acquire(): a timeout cannot be given with blocking=False")
        else:
            wait = lock_seconds(timeout, "timeout", zero_ok=True)
        deadline = None if wait is None else time.monotonic() + wait
        cancel = AsyncCancelCheck()
        if not await self._gate.acquire(deadline):
            return False
        try:
            acquired = await self._take(deadline, cancel)
        except BaseException:
            self._gate.release()
            raise
        if not acquired:
            self._gate.release()
        return acquired

    async def _take(self, deadline: float | None, cancel: AsyncCancelCheck) -> bool:
        """Try until the lock is ours or ``deadline`` passes (the gate is held)."""
        # One owner id for every try of this call: a try whose reply was lost but which
        # took the lock is recognised by the next one (same token, no second hold).
        owner = new_owner()
        attempt = 0
        while True:
            cancel.check()
            token, holder_pttl = await self._try(owner)
            if token:
                try:
                    # async: A cancel swallowed below kvkit during the round trip must not
                    # async: return the lock to a caller that has gone away: undo it.
                    cancel.check()
                except BaseException:
                    await AsyncShield.run(self._undo, owner)
                    raise
                # Nothing may come between the reply and recording the hold:
                # _hold_started does no I/O and never waits.
                self._hold_started(owner, token)
                return True
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                return False
            await asleep(poll_delay(attempt, remaining, holder_pttl))
            attempt += 1

    async def _try(self, owner: str) -> tuple[int, int]:
        """One acquire round trip; undone by owner id if it ends without a reply."""
        try:
            return await self._driver.acquire(self._key, self._fence, owner, self._ttl_ms)
        except BaseException:
            # Interrupted, timed out or disconnected after the script was sent: it may have
            # run, and then this owner holds the lock without knowing it. Undo by owner id
            # (harmless if it did not run), or the lock would block everyone for ``ttl``.
            await AsyncShield.run(self._undo, owner)
            raise

    async def _undo(self, owner: str) -> None:
        try:
            await self._driver.release(self._key, owner, None)
        except Exception as exc:  # best effort: the lock still expires after ttl
            log.warning(
                "lock %r on %s: could not undo an interrupted acquire (%s); if it was "
                "taken, it expires within its ttl",
                self._name,
                self._where,
                type(exc).__name__,
            )

    def _hold_started(self, owner: str, token: int) -> None:
        hold = _Hold(owner, token)
        if self._auto_renew:
            holder = weakref.ref(self)
            args = (self._driver, self._key, self._name, hold, holder, self._ttl_ms, self._where)
            hold.renewal = AsyncRepeater(renew_interval(self._ttl_ms), _renew, *args)
            hold.renewal.start()
        self._hold = hold

    # -- release ----------------------------------------------------------------------------
    async def release(self) -> None:
        """Release the lock.

        Renewal stops first. The lock is deleted only if this hold still owns it (owner id
        and token are checked in one atomic step); either way the object holds nothing
        afterwards.

        Raises:
            LockNotOwned: this object holds nothing, or the lock expired or another owner
                holds it now (the protected work may have overlapped with theirs).
            BackendError: the backend failed; the lock expires after its ``ttl``.
        """
        hold = self._hold
        if hold is None:
            raise LockNotOwned(f"lock {self._name!r} is not held by this lock object")
        self._hold = None
        try:
            released = await self._finish(hold)
        except BaseException as exc:
            if not isinstance(exc, KVKitError):
                # Interrupted (cancelled) in the round trip: the script may not have run.
                # Finish the job, whatever happens to this caller now: owner and token
                # make a second try harmless.
                await AsyncShield.run(self._driver.release, self._key, hold.owner, hold.token)
            raise
        finally:
            self._gate.release()
        if not released:
            raise LockNotOwned(
                f"lock {self._name!r} on {self._where} expired or was taken over by another "
                f"owner before release (this hold's token: {hold.token})"
            )

    async def _finish(self, hold: _Hold) -> bool:
        """Stop renewing and delete the lock if ``hold`` still owns it."""
        # Not waiting for a renewal in progress: one that lands after the release finds
        # a foreign lock or none and changes nothing (it checks owner and token).
        hold.released = True
        if hold.renewal is not None:
            hold.renewal.stop()
        return await self._driver.release(self._key, hold.owner, hold.token)

    # -- the rest ---------------------------------------------------------------------------
    async def extend(self, ttl: Any = None) -> bool:
        """Make the lock expire ``ttl`` seconds from now (default: the lock's ``ttl``).

        Renewal, when on, goes on with the lock's own ``ttl``.

        Returns:
            Whether this hold still owned the lock (``False`` if it holds nothing, or the
            lock expired or was taken over).

        Raises:
            InvalidArgument: a bad ``ttl``.
        """
        ttl_ms = self._ttl_ms if ttl is None else lock_ms(ttl, "ttl")
        hold = self._hold
        if hold is None:
            return False
        return await self._driver.extend(self._key, hold.owner, hold.token, ttl_ms)

    async def locked(self) -> bool:
        """Return whether anyone (this object or another owner) holds the lock now."""
        return await self._driver.exists(self._key)

    async def __aenter__(self) -> AsyncLockService:
        if not await self.acquire():
            # Only a finite timeout ends a wait (None waits until the lock is acquired).
            raise LockTimeout(
                f"lock {self._name!r} on {self._where} not acquired within {self._timeout or 0:g} s"
            )
        return self

    async def __aexit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        try:
            await self.release()
        except KVKitError as error:
            if exc_type is None:
                raise
            # The block's own exception is the one to see; the lost lock is logged.
            log.warning(
                "lock %r on %s: release after a failed block: %s: %s",
                self._name,
                self._where,
                type(error).__name__,
                error,
            )


async def held_locks(driver: AsyncLockDriver, prefix: str) -> list[LockInfo]:
    """The locks held now under ``prefix`` (a SCAN on Redis: for tools, not hot paths).

    Values that kvkit did not write are listed with ``token=None``, never an error.
    """
    found = []
    for key, value, pttl in await driver.held(prefix):
        name = name_from_key(prefix, key)
        if name is not None:
            found.append(holder_info(name, value, pttl))
    return sorted(found, key=lambda info: info.name)
