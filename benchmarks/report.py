"""Render results: a Markdown table (stdout + ``results.md``), ``results.json``, a PNG chart."""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
from importlib import metadata
from pathlib import Path
from typing import Any

from .harness import CONCURRENCY, Result

LIBRARIES = (
    "kvkit",
    "redis",
    "hiredis",
    "orjson",
    "cashews",
    "aiocache",
    "cachetools",
    "dogpile.cache",
    "fakeredis",
    "arq",
    "rq",
    "limits",
    "matplotlib",
)


def load_average() -> float | None:
    """The 1-minute load average (``None`` where the OS has none)."""
    try:
        return round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):
        return None


def machine_info(
    server_version: str | None, url_kind: str | None, load: tuple[float | None, float | None]
) -> dict[str, Any]:
    """CPU count, OS, Python, load and the redis-server the rows ran against."""
    usable: int | None
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        usable = os.cpu_count()
    return {
        "cpus": os.cpu_count(),
        "usable_cpus": usable,
        "cpu_model": _cpu_model(),
        "platform": platform.platform(),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "redis_server": server_version,
        "redis_server_source": url_kind,
        "load_average_start": load[0],
        "load_average_end": load[1],
        "date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    }


def _cpu_model() -> str | None:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def library_versions() -> dict[str, str | None]:
    """Installed versions of kvkit and everything it is compared with."""
    out: dict[str, str | None] = {}
    for name in LIBRARIES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    try:
        from redis.utils import HIREDIS_AVAILABLE

        out["redis-py parser"] = "hiredis" if HIREDIS_AVAILABLE else "python"
    except ImportError:  # pragma: no cover - very old redis-py
        pass
    from kvkit._serde import default_codec

    out["kvkit codec"] = default_codec().name
    return out


# --------------------------------------------------------------------------- markdown


def _rate(result: Result, rate: float) -> str:
    c = result.comparison
    if c.mode == "timed":
        if c.unit == "s":
            return f"{1000.0 / rate:.1f} ms"
        if c.unit == "items/s":
            return f"{rate * c.items:,.0f} msgs/s"
        return f"{1.0 / rate:,.0f} {c.unit}"
    if c.items > 1:
        return f"{rate:,.0f} ({rate * c.items:,.0f} items/s)"
    return f"{rate:,.0f}"


def _row(result: Result) -> str:
    c = result.comparison
    if result.skipped is not None:
        cells = [c.label, c.baseline, "-", "-", "-", c.target_text, f"skipped: {result.skipped}"]
    else:
        spread = f"{min(result.ratios):.2f}-{max(result.ratios):.2f}"
        cells = [
            c.label,
            c.baseline,
            _rate(result, result.kvkit_rate),
            _rate(result, result.baseline_rate),
            f"**{result.ratio:.2f}x** ({spread})",
            c.target_text,
            result.status,
        ]
    return "| " + " | ".join(cells) + " |"


def markdown(results: list[Result], meta: dict[str, Any]) -> str:
    """The full Markdown report: a header with the machine, the table, the footnotes."""
    machine, versions, config = meta["machine"], meta["versions"], meta["config"]
    lines = [
        "# kvkit benchmarks",
        "",
        f"{machine['date']} - {machine['python']} on {machine['platform']}, "
        f"{machine['cpus']} CPUs ({machine['usable_cpus']} usable)"
        + (f", {machine['cpu_model']}" if machine.get("cpu_model") else "")
        + f"; redis-server {machine['redis_server'] or '-'} ({machine['redis_server_source']}); "
        f"1-min load average {machine['load_average_start']} at start, "
        f"{machine['load_average_end']} at end (other processes share the CPUs: the "
        "interleaving makes ratios robust to that, absolute ops/s less so).",
        "",
        "Libraries: " + ", ".join(f"{k} {v}" for k, v in versions.items() if v is not None) + ".",
        "",
        f"Run: {config['rounds']} interleaved rounds per row (order alternating), "
        f"{'quick' if config['quick'] else 'full'} mode"
        + (f", only: {', '.join(config['only'])}" if config["only"] else "")
        + f"; {config['seconds']:.0f} s in total.",
        "",
        "Ratio = kvkit ops/s / baseline ops/s, median over rounds (min-max across rounds); "
        "> 1 means kvkit is faster. The ops/s columns are each side's median, so their "
        "quotient need not equal the median ratio. Every row runs both sides in one "
        "process against the same server, with the same key length, value and TTL.",
        "",
        "| operation | compared with | kvkit ops/s | baseline ops/s | ratio | target | status |",
        "|---|---|---:|---:|---:|---|---|",
    ]
    lines += [_row(r) for r in results]
    lines += [
        "",
        "Notes:",
        "",
        "- value: `{'id': 123, 'name': 'alice', 'roles': ['admin', 'dev'], 'active': True, "
        "'score': 12.5}`, key `user:123` (kvkit's full key `kvbench:cache:user:123`), TTL 300 s.",
        "- redis-py baselines use kvkit's connection settings: `BlockingConnectionPool("
        "max_connections=20)`, same timeouts, hiredis when installed, no redis-py retries. "
        "cashews and aiocache keep their defaults except the pool (20 connections, blocking).",
        f"- `async xN tasks`: N tasks ({CONCURRENCY} in the cache rows) share one client "
        "through `asyncio.gather`; `sync xN threads`: N threads share one client; `async`: "
        "one sequential `await` loop (latency-bound). Both sides use a pool of 20 "
        "connections (kvkit's default).",
        "- `json` = stdlib `json.dumps`/`json.loads` written by hand next to redis-py; "
        f"kvkit uses its own codec ({versions.get('kvkit codec')}), which also round-trips "
        "datetimes, UUIDs, tuples, sets... (tagged JSON).",
        "- batch rows (`*_many`, `pop_many`): ops/s counts calls, items/s in parentheses.",
        "- queues: the raw baselines are `XADD` / `XREADGROUP` (parsed by redis-py) + `XACK`, "
        "and never delete entries; kvkit also leases (redelivery, delivery counts), keeps "
        "an id index (ack by id from any queue object), deletes acknowledged entries and "
        "makes pushes idempotent (`benchmarks/queues.py`). Pop rows refill both queues, "
        "untimed, before each timed slice.",
        "- sessions: kvkit runs one Lua script per call (sliding idle TTL capped by the "
        "absolute lifetime, id checks); the baselines one `MULTI` transaction "
        "(`benchmarks/sessions.py`).",
        "- consume rows: drain time of pre-enqueued no-op jobs, kvkit acknowledging each "
        "message (`benchmarks/e2e.py`).",
        "- scaling rows: see `scaling.png` (ops/s of both sides against N).",
    ]
    noted: dict[str, list[str]] = {}
    for r in results:
        if r.comparison.note and r.skipped is None:
            noted.setdefault(r.comparison.note, []).append(r.comparison.label)
    for note, labels in noted.items():
        lines.append(f"- {'; '.join(labels)}: {note}.")
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- json / png


def write_json(path: Path, results: list[Result], meta: dict[str, Any]) -> None:
    """Write ``results.json`` (machine, versions, config and every round of every row)."""
    data = {**meta, "results": [r.as_dict() for r in results]}
    path.write_text(json.dumps(data, indent=2) + "\n")


def write_png(path: Path, results: list[Result], meta: dict[str, Any]) -> str | None:
    """Draw the ratios as horizontal bars with min-max whiskers and each row's target.

    Returns:
        ``None`` on success, else why the chart was skipped (matplotlib missing).
    """
    try:
        import matplotlib

        matplotlib.use("Agg")  # no display needed
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib is not installed (pip install matplotlib, or nox -s bench)"
    rows = [r for r in results if r.skipped is None]
    if not rows:
        return "no measured rows"
    labels = [f"{r.comparison.label}\nvs {r.comparison.baseline}" for r in rows]
    ratios = [r.ratio for r in rows]
    low = [r.ratio - min(r.ratios) for r in rows]
    high = [max(r.ratios) - r.ratio for r in rows]
    colors = [{"ok": "#2e7d32", "BELOW": "#c62828"}.get(r.status, "#757575") for r in rows]
    height = 0.42 * len(rows) + 1.6
    fig, ax = plt.subplots(figsize=(11, height))
    y = list(range(len(rows)))[::-1]
    # Log scale, bars growing from 1.0: 0.8x and 1.25x look equally far from parity, and
    # a row at 9x does not flatten every other bar.
    ax.set_xscale("log", base=2)
    widths = [ratio - 1.0 for ratio in ratios]
    ax.barh(y, widths, left=1.0, color=colors, alpha=0.85, height=0.6)
    ax.errorbar(ratios, y, xerr=[low, high], fmt="none", ecolor="black", capsize=2, lw=0.8)
    for yi, r in zip(y, rows, strict=True):
        target = r.comparison.target
        if target is not None:
            ax.plot([target, target], [yi - 0.42, yi + 0.42], color="black", linewidth=2)
        ax.text(max(max(r.ratios), 1.0) * 1.03, yi, f"{r.ratio:.2f}x", va="center", fontsize=7)
    ax.axvline(1.0, color="#555555", linestyle="--", linewidth=0.8)
    ax.set_yticks(y)
    ax.set_yticklabels(labels, fontsize=7)
    ax.set_ylim(-0.7, len(rows) - 0.3)
    lo = min(0.5, min(min(r.ratios) for r in rows) * 0.85)
    hi = max(2.0, max(max(r.ratios) for r in rows) * 1.25)
    ax.set_xlim(lo, hi)
    steps = (0.25, 0.5, 0.7, 0.8, 0.9, 1, 1.25, 1.5, 2, 3, 4, 8, 16)
    if hi > 12:  # a wide range (the end-to-end rows): fine steps near 1 would overlap
        steps = (0.25, 0.5, 0.8, 1, 1.25, 2, 4, 8, 16, 32, 64)
    ticks = [t for t in steps if lo <= t <= hi]
    ax.set_xticks(ticks)
    ax.set_xticklabels([f"{t:g}x" for t in ticks], fontsize=8)
    ax.minorticks_off()
    ax.grid(axis="x", color="#dddddd", linewidth=0.5)
    ax.set_axisbelow(True)
    ax.set_xlabel(
        "kvkit throughput / baseline throughput (median of rounds, whiskers min-max; log scale)"
    )
    machine = meta["machine"]
    ax.set_title(
        "kvkit vs baselines (> 1 = kvkit faster; black tick = target; "
        f"green met, red missed, grey report-only)\n{machine['python']}, "
        f"{machine['cpus']} CPUs, redis-server {machine['redis_server'] or '-'}",
        fontsize=9,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return None


def write_scaling_png(path: Path, results: list[Result], meta: dict[str, Any]) -> str | None:
    """Plot the ``scaling`` rows: ops/s of kvkit and its baseline against concurrency.

    Returns:
        ``None`` on success, else why the chart was skipped.
    """
    rows = [r for r in results if r.comparison.group == "scaling" and r.skipped is None]
    if not rows:
        return "no scaling rows in this run"
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib is not installed (pip install matplotlib, or nox -s bench)"
    panels = [
        ("threads", "sync client, N threads", "redis-py"),
        ("concurrent", "async client, N tasks", "redis.asyncio"),
    ]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, (mode, title, base_name) in zip(axes, panels, strict=True):
        modal = [r for r in rows if r.comparison.mode == mode]
        mine = sorted(
            (r for r in modal if "auto_pipeline" not in r.comparison.name), key=_concurrency
        )
        unpiped = sorted(
            (r for r in modal if "auto_pipeline" in r.comparison.name), key=_concurrency
        )
        if not mine:
            ax.set_visible(False)
            continue
        xs = [_concurrency(r) for r in mine]
        label = "kvkit (auto-pipelined)" if mode == "concurrent" else "kvkit"
        ax.plot(xs, [r.kvkit_rate for r in mine], "o-", color="#2e7d32", label=label)
        if unpiped:
            option = unpiped[0].comparison.name.partition("[")[2].rstrip("]")
            ax.plot(
                [_concurrency(r) for r in unpiped],
                [r.kvkit_rate for r in unpiped],
                "^-",
                color="#81c784",
                label=f"kvkit, {option}",
            )
        ax.plot(
            xs,
            [r.baseline_rate for r in mine],
            "s--",
            color="#555555",
            label=f"{base_name} GET + json",
        )
        ax.axvline(20, color="#bbbbbb", linewidth=0.8, linestyle=":")
        ax.text(20, ax.get_ylim()[0], " pool size 20", fontsize=7, color="#777777")
        ax.set_xscale("log", base=2)
        ax.set_xticks(xs)
        ax.set_xticklabels([str(x) for x in xs])
        ax.minorticks_off()
        ax.set_xlabel("concurrency")
        ax.set_ylabel("cache.get ops/s (median of rounds)")
        ax.set_title(title, fontsize=9)
        ax.set_ylim(bottom=0)
        ax.grid(color="#dddddd", linewidth=0.5)
        ax.legend(fontsize=8)
    machine = meta["machine"]
    fig.suptitle(
        f"Throughput vs concurrency, default pool of 20 connections - {machine['python']}, "
        f"{machine['cpus']} CPUs, redis-server {machine['redis_server'] or '-'}",
        fontsize=9,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return None


def _concurrency(result: Result) -> int:
    return result.comparison.concurrency
