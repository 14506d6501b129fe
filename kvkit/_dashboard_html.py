"""The dashboard page, rendered on the server from the overview data (no I/O).

One page, no external assets: a style sheet and a small script served by the dashboard
itself, the throughput chart as inline SVG. The page is complete without the script (it
is what ``chromium --dump-dom`` and a browser without JavaScript see); the script only
re-fetches the ``/fragment`` of the page every few seconds and swaps it in, so all the
rendering lives here, once. Every value that comes from the store (queue names, dead-letter
ids and reasons) is HTML-escaped.
"""

from __future__ import annotations

import time
from html import escape
from typing import Any

from ._dashboard_base import Request

__all__ = ["render_content", "render_page"]

_NONE = "\u2013"  # an en dash for "no value"
_CHART_W, _CHART_H, _PAD_L, _PAD_B, _PAD_T = 720, 170, 48, 22, 10


def _e(value: Any) -> str:
    return escape(str(value), quote=True)


def _age(seconds: float | None) -> str:
    if seconds is None:
        return _NONE
    if seconds < 10:
        return f"{seconds:.1f} s"
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 172800:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} d"


def _ms(value: float | None) -> str:
    if value is None:
        return _NONE
    return f"{value:.3f}" if value < 1 else f"{value:.1f}"


def _rate(value: float) -> str:
    return "0" if not value else (f"{value:.2f}" if value < 10 else f"{value:.0f}")


def _when(unix: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(unix))


def _chart(series: list[dict[str, Any]]) -> str:
    """Messages/second pushed (in) and acknowledged (out) per bucket, as inline SVG."""
    width, height = _CHART_W - _PAD_L - 8, _CHART_H - _PAD_B - _PAD_T
    if not series:
        return '<p class="muted">no throughput data</p>'
    top = max([1.0, *(b["in"] for b in series), *(b["out"] for b in series)])
    first, last = series[0]["t"], series[-1]["t"]
    span = max(last - first, 1.0)

    def points(column: str) -> str:
        return " ".join(
            f"{_PAD_L + (b['t'] - first) / span * width:.1f},"
            f"{_PAD_T + height - b[column] / top * height:.1f}"
            for b in series
        )

    minutes = span / 60
    grid = "".join(
        f'<line class="grid" x1="{_PAD_L}" x2="{_PAD_L + width}" '
        f'y1="{_PAD_T + height * f:.1f}" y2="{_PAD_T + height * f:.1f}"/>'
        for f in (0.0, 0.5, 1.0)
    )
    return (
        f'<svg id="throughput-chart" viewBox="0 0 {_CHART_W} {_CHART_H}" role="img" '
        f'aria-label="messages per second in and out">{grid}'
        f'<text class="axis" x="{_PAD_L - 6}" y="{_PAD_T + 4}" text-anchor="end">'
        f"{_rate(top)}/s</text>"
        f'<text class="axis" x="{_PAD_L - 6}" y="{_PAD_T + height + 4}" text-anchor="end">0</text>'
        f'<text class="axis" x="{_PAD_L}" y="{_CHART_H - 4}">-{minutes:.0f} min</text>'
        f'<text class="axis" x="{_PAD_L + width}" y="{_CHART_H - 4}" text-anchor="end">now</text>'
        f'<polyline class="line-in" fill="none" points="{points("in")}"/>'
        f'<polyline class="line-out" fill="none" points="{points("out")}"/>'
        "</svg>"
        '<p class="legend"><span class="key-in">■ in (pushed)</span> '
        '<span class="key-out">■ out (acknowledged)</span></p>'
    )


def _health(data: dict[str, Any]) -> str:
    rows = []
    for r in data["roles"]:
        ok = bool(r.get("ok"))
        error = r.get("error")
        rows.append(
            f'<tr class="{"ok" if ok else "fail"}" data-role="{_e(r.get("role"))}">'
            f'<td>{_e(r.get("role"))}<br><code class="url">{_e(r.get("url", ""))}</code></td>'
            f'<td class="state">{"ok" if ok else "FAIL"}</td>'
            f"<td>{_ms(r.get('latency_ms'))}</td><td>{_e(r.get('server_version') or '')}</td>"
            "</tr>"
            + (
                f'<tr class="fail"><td colspan="4" class="error">{_e(error)}</td></tr>'
                if error
                else ""
            )
        )
    return (
        '<section id="health"><h2>Health</h2><table><thead><tr><th>role and server</th>'
        "<th>status</th><th>ping ms</th><th>version</th></tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table></section>"
    )


def _queues(request: Request, data: dict[str, Any], token: str) -> str:
    if not data["queues"]:
        body = '<tr><td colspan="9" class="muted">no queues found under this prefix</td></tr>'
    else:
        body = "".join(
            f'<tr data-queue="{_e(q["name"])}"{" class=has-dead" if q["dead"] else ""}>'
            f'<td class="name"><a href="{_e(request.link("/", queue=q["name"], token=token))}">'
            f"{_e(q['name'])}</a></td>"
            f'<td class="ready">{q["ready"]}</td><td class="pending">{q["pending"]}</td>'
            f'<td class="delayed">{q["delayed"]}</td><td class="dead">{q["dead"]}</td>'
            f'<td class="age">{_age(q["oldest_ready_age"])}</td>'
            f"<td>{q['consumers']}</td>"
            f'<td class="in">{_rate(q["in_per_s"])}</td>'
            f'<td class="out">{_rate(q["out_per_s"])}</td>'
            "</tr>"
            for q in data["queues"]
        )
    error = data.get("queues_error")
    warning = f'<p class="warning">queues not fully read: {_e(error)}</p>' if error else ""
    return (
        f'<section id="queues"><h2>Queues</h2>{warning}<table id="queue-table"><thead><tr>'
        "<th>queue</th><th>ready</th><th>pending</th><th>delayed</th><th>dead</th>"
        "<th>oldest ready</th><th>consumers</th><th>in/s</th><th>out/s</th></tr></thead>"
        f"<tbody>{body}</tbody></table></section>"
    )


def _action(request: Request, verb: str, label: str, queue: str, token: str, id: str = "") -> str:
    what = id or "every dead letter"
    question = f"{label} {what} of {queue}?"
    confirm = f' data-confirm="{_e(question)}"' if verb == "delete-dead" else ""
    hidden = (
        f'<input type="hidden" name="id" value="{_e(id)}">'
        if id
        else '<input type="hidden" name="all" value="1">'
    )
    target = request.link(f"/api/{verb}", queue=queue)
    return (
        f'<form method="post" class="action" action="{_e(target)}"{confirm}>'
        f'<input type="hidden" name="token" value="{_e(token)}">{hidden}'
        f'<button type="submit" class="{verb}" aria-label="{_e(label)}">{_e(label)}</button></form>'
    )


def _dead(
    request: Request,
    queue: str | None,
    dead: list[dict[str, Any]] | None,
    token: str,
    act: bool,
    total: int,
) -> str:
    if queue is None or dead is None:
        return (
            '<section id="dead-letters"><h2>Dead letters</h2>'
            '<p class="muted">no dead letters</p></section>'
        )
    if not dead:
        rows = '<tr><td colspan="5" class="muted">no dead letters</td></tr>'
    else:
        rows = "".join(
            f'<tr data-id="{_e(d["id"])}"><td class="id"><code>{_e(d["id"])}</code></td>'
            f'<td class="error">{_e(d["error"] or "")}</td>'
            f'<td class="deliveries">{d["deliveries"]}</td>'
            f"<td>{_when(d['enqueued_at'])}</td>"
            + (
                '<td class="actions">'
                f"{_action(request, 'requeue', 'requeue', queue, token, d['id'])}"
                f"{_action(request, 'delete-dead', 'purge', queue, token, d['id'])}</td>"
                if act
                else "<td></td>"
            )
            + "</tr>"
            for d in dead
        )
    bulk = (
        f'<div class="bulk">{_action(request, "requeue", "requeue all", queue, token)}'
        f"{_action(request, 'delete-dead', 'purge all', queue, token)}</div>"
        if act and dead
        else ""
    )
    shown = f'<p class="muted">the oldest {len(dead)} of {total}</p>' if total > len(dead) else ""
    return (
        f'<section id="dead-letters" data-queue="{_e(queue)}"><h2>Dead letters of '
        f"<code>{_e(queue)}</code></h2>{bulk}{shown}"
        '<table id="dead-table"><thead><tr><th>id</th><th>error</th><th>deliveries</th>'
        f"<th>enqueued (UTC)</th><th></th></tr></thead><tbody>{rows}</tbody></table></section>"
    )


def _cache(data: dict[str, Any]) -> str:
    cache = data["cache"]
    ratio = cache["hit_ratio"]
    shown = _NONE if ratio is None else f"{ratio * 100:.1f} %"
    ops = "".join(
        f"<tr><td>{_e(o['service'])}</td><td>{_e(o['op'])}</td><td>{_e(o['backend'])}</td>"
        f"<td>{o['count']}</td><td>{o['errors']}</td><td>{_ms(o['p50_ms'])}</td>"
        f"<td>{_ms(o['p99_ms'])}</td></tr>"
        for o in data["operations"]
    )
    if not data["metrics_enabled"]:
        ops = '<tr><td colspan="7" class="muted">metrics are off (Settings.metrics)</td></tr>'
    elif not ops:
        ops = '<tr><td colspan="7" class="muted">no operations yet</td></tr>'
    return (
        '<section id="cache"><h2>Cache and latency</h2>'
        f'<p>hit ratio <strong id="hit-ratio">{shown}</strong> '
        f"({cache['hits']} hits, {cache['misses']} misses)</p>"
        '<table id="operations"><thead><tr><th>service</th><th>op</th><th>backend</th>'
        "<th>count</th><th>errors</th><th>p50 ms</th><th>p99 ms</th></tr></thead>"
        f"<tbody>{ops}</tbody></table></section>"
    )


def render_content(
    request: Request,
    data: dict[str, Any],
    *,
    queue: str | None,
    dead: list[dict[str, Any]] | None,
    token: str,
    act: bool,
) -> str:
    """The part of the page that the script refreshes (``GET /fragment``)."""
    total = next((q["dead"] for q in data["queues"] if q["name"] == queue), 0)
    return (
        f'<div class="status {_e(data["status"])}" id="status">{_e(data["status"])} · '
        f"updated {_when(data['time'])} UTC</div>"
        f"{_queues(request, data, token if act else '')}"
        '<div class="pair"><section id="throughput"><h2>Throughput, messages per second '
        f"(all queues)</h2>{_chart(data['throughput'])}</section>{_health(data)}</div>"
        f"{_cache(data)}"
        f"{_dead(request, queue, dead, token, act, total)}"
    )


def render_page(
    request: Request,
    data: dict[str, Any],
    *,
    queue: str | None,
    dead: list[dict[str, Any]] | None,
    token: str,
    act: bool,
    refresh: float,
    title: str,
) -> str:
    """The whole page (``GET /``)."""
    fragment = request.link("/fragment", queue=queue or "", token=token if act else "")
    mode = "actions enabled" if act else "read-only"
    content = render_content(request, data, queue=queue, dead=dead, token=token, act=act)
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_e(title)}</title>"
        f'<link rel="stylesheet" href="{_e(request.link("/static/dashboard.css"))}">'
        f'<script src="{_e(request.link("/static/dashboard.js"))}" defer></script>'
        f'</head><body data-refresh="{refresh:g}" data-fragment="{_e(fragment)}">'
        f"<header><h1>{_e(title)}</h1><span>prefix <code>{_e(data['prefix'])}</code></span>"
        f'<span class="mode" id="mode">{mode}</span></header>'
        f'<main id="content">{content}'
        f"</main><footer>kvkit {_e(data['kvkit'])} · refreshes every {refresh:g} s · "
        '<a href="' + _e(request.link("/api/overview")) + '">JSON</a></footer></body></html>'
    )
