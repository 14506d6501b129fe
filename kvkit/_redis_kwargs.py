"""The redis-py connection arguments of a URL, built once for every Redis backend (no I/O).

The standalone, Cluster and Sentinel backends hand redis-py the same credentials, timeouts,
health-check interval, client name and TLS settings; building them in one place keeps the
three from drifting (a TLS option honoured by one backend and silently ignored by another).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._urls import ParsedURL

__all__ = ["connection_kwargs", "maint_notifications_off", "tls_kwargs"]


def connection_kwargs(
    url: ParsedURL, *, socket_timeout: float, connect_timeout: float, health_checks: bool = True
) -> dict[str, Any]:
    """Keyword arguments every redis-py client or pool of ``url`` takes.

    Args:
        url: The parsed backend URL (credentials and options).
        socket_timeout: Seconds a command may wait for its reply.
        connect_timeout: Seconds a connection attempt may take.
        health_checks: ``False`` for a subscribed connection, where redis-py's PING
            check would read a Pub/Sub message as its reply (0 s interval: off).

    Returns:
        ``username``, ``password``, ``socket_timeout``, ``socket_connect_timeout``,
        ``health_check_interval`` (idle connections are PINGed before reuse; default 30 s)
        and ``client_name``.
    """
    return {
        "username": url.username,
        "password": url.password,
        "socket_timeout": socket_timeout,
        "socket_connect_timeout": connect_timeout,
        "health_check_interval": url.options.get("health_check_interval", 30)
        if health_checks
        else 0,
        "client_name": url.options.get("client_name"),
    }


def tls_kwargs(url: ParsedURL) -> dict[str, Any]:
    """redis-py TLS arguments for a ``rediss…://`` URL: verified unless told otherwise.

    Returns:
        ``ssl_cert_reqs`` (default ``"required"``), ``ssl_check_hostname`` and the
        certificate files given in the URL; the caller chooses how TLS is switched on
        (``ssl=True`` or an SSL connection class).
    """
    options = url.options
    cert_reqs = options.get("ssl_cert_reqs", "required")
    kwargs: dict[str, Any] = {
        "ssl_cert_reqs": cert_reqs,
        # Hostname checking follows certificate checking unless set explicitly.
        "ssl_check_hostname": options.get("ssl_check_hostname", cert_reqs != "none"),
    }
    for name in ("ssl_ca_certs", "ssl_certfile", "ssl_keyfile"):
        if name in options:
            kwargs[name] = options[name]
    return kwargs


def maint_notifications_off() -> dict[str, Any]:
    """Connection-pool kwargs that switch redis-py's maintenance notifications off.

    redis-py >= 7 defaults them to "auto" (even on RESP2) and, while they are on, skips its
    check that a pooled connection is still alive when it is handed out: a connection the
    server closed (restart, CLIENT KILL, idle timeout) would then fail the next command,
    which for a non-idempotent operation cannot be retried. kvkit speaks RESP2, where the
    notifications do not exist anyway. Older redis-py has neither the option nor the problem.
    """
    try:
        from redis.maint_notifications import MaintNotificationsConfig
    except ImportError:  # pragma: no cover - redis-py < 7
        return {}
    return {"maint_notifications_config": MaintNotificationsConfig(enabled=False)}
