"""The dashboard in a real browser: headless Chromium renders it, the DOM shows the queues.

Needs Debian's ``chromium`` (``.ci/run`` installs it). Without it the test is skipped --
unless ``KVKIT_REQUIRE_BROWSER=1`` (set by ``.ci/run``), which makes that a failure.
``KVKIT_UPDATE_SCREENSHOT=1`` also writes the screenshot to ``docs/dashboard.png``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from html.parser import HTMLParser
from pathlib import Path

import pytest

import kvkit
from tests.appservers import ROOT, run_app

pytestmark = [pytest.mark.browser, pytest.mark.redis]

TOKEN = "tok-" + uuid.uuid4().hex


@pytest.fixture(scope="module")
def chromium():
    """The Chromium executable (skip, or fail under KVKIT_REQUIRE_BROWSER=1, when missing)."""
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        reason = "headless Chromium is not installed (apt-get install chromium)"
        if os.environ.get("KVKIT_REQUIRE_BROWSER", "").strip().lower() in {"1", "true", "yes"}:
            pytest.fail(f"{reason}; KVKIT_REQUIRE_BROWSER is set, so this is an error")
        pytest.skip(f"{reason} (set KVKIT_REQUIRE_BROWSER=1 to make this an error)")
    return found


def _run_chromium(chromium, profile, *args):
    command = [
        chromium,
        "--headless",
        "--no-sandbox",  # CI runs as root, where Chromium's sandbox cannot start
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        f"--user-data-dir={profile}",
        "--window-size=1280,1500",
        # Lets the page's script run a refresh before the DOM is dumped.
        "--virtual-time-budget=3000",
        "--enable-logging=stderr",
        "--v=0",
        *args,
    ]
    return subprocess.run(command, capture_output=True, text=True, timeout=90, check=False)


class _Cells(HTMLParser):
    """Rows of the queue and dead-letter tables, as ``{row key: {cell class: text}}``."""

    def __init__(self):
        super().__init__()
        self.queues, self.dead, self.buttons = {}, {}, []
        self._row, self._cell, self._where = None, None, None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "tr" and "data-queue" in attrs:
            self._row, self._where = attrs["data-queue"], self.queues
            self.queues[self._row] = {}
        elif tag == "tr" and "data-id" in attrs:
            self._row, self._where = attrs["data-id"], self.dead
            self.dead[self._row] = {}
        elif tag == "td" and self._row is not None:
            self._cell = attrs.get("class") or ""
            self._where[self._row].setdefault(self._cell, "")
        elif tag == "button":
            self.buttons.append(attrs.get("aria-label"))

    def handle_endtag(self, tag):
        if tag == "tr":
            self._row = None
        elif tag == "td":
            self._cell = None

    def handle_data(self, data):
        if self._row is not None and self._cell is not None:
            self._where[self._row][self._cell] += data


def test_chromium_renders_the_dashboard(chromium, redis_url, tmp_path):
    """Three queues, one with a dead letter: names, counts and the error are in the DOM."""
    prefix = "t" + uuid.uuid4().hex[:12]
    with kvkit.Client(settings=kvkit.Settings(url=redis_url, prefix=prefix)) as client:
        emails = client.queue("emails")
        emails.push_many([{"to": f"user{i}@example.com"} for i in range(7)])
        for message in emails.pop_many(4):
            message.ack()
        client.queue("reports").push_many(["daily", "weekly"], delay=3600)
        webhooks = client.queue("webhooks", max_deliveries=1)
        webhooks.push_many([{"n": 1}, {"n": 2}])

        def handler(message):
            raise ConnectionError("endpoint answered 502 Bad Gateway")

        webhooks.consume(handler, max_messages=1)
        client.cache.get("warm-up")
        args = ["-m", "kvkit", "dashboard", "--url", redis_url, "--prefix", prefix]
        with run_app([*args, "--port", "{port}", "--token", TOKEN]) as server:
            url = f"{server.base}/?token={TOKEN}&queue=webhooks"
            dumped = _run_chromium(chromium, tmp_path / "profile", "--dump-dom", url)
            assert dumped.returncode == 0, dumped.stderr[-2000:]
            shot = tmp_path / "dashboard.png"
            taken = _run_chromium(chromium, tmp_path / "profile2", f"--screenshot={shot}", url)
            assert taken.returncode == 0, taken.stderr[-2000:]
        for name in ("emails", "reports", "webhooks"):
            client.queue(name).purge(dead=True)

    dom = dumped.stdout
    # The page's script ran clean, and the security policy blocked none of its own assets.
    assert "Uncaught" not in dumped.stderr, dumped.stderr[-2000:]
    assert "Refused to" not in dumped.stderr, dumped.stderr[-2000:]
    assert "dashboard unreachable" not in dom  # its refresh fetched the fragment
    cells = _Cells()
    cells.feed(dom)
    assert set(cells.queues) == {"emails", "reports", "webhooks"}
    emails_row, reports_row, hooks_row = (
        cells.queues[n] for n in ("emails", "reports", "webhooks")
    )
    assert (emails_row["ready"], emails_row["pending"], emails_row["dead"]) == ("3", "0", "0")
    assert reports_row["delayed"] == "2"
    assert (hooks_row["ready"], hooks_row["dead"]) == ("1", "1")
    assert len(cells.dead) == 1
    (dead,) = cells.dead.values()
    assert dead["error"] == (
        "max_deliveries (1) exceeded; last error: "
        "ConnectionError: endpoint answered 502 Bad Gateway"
    )
    assert dead["deliveries"] == "1"
    assert {"requeue", "purge", "requeue all", "purge all"} <= set(cells.buttons)
    assert 'id="throughput-chart"' in dom and "actions enabled" in dom
    assert shot.stat().st_size > 10_000
    if os.environ.get("KVKIT_UPDATE_SCREENSHOT") == "1":
        shutil.copyfile(shot, Path(ROOT) / "docs" / "dashboard.png")
