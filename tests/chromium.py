"""Headless Chromium for the browser tests: the Debian package, started as this machine needs it
(no sandbox as root, no background networking: the closed network refuses those connections),
each run in a profile of its own, printing the page's DOM once its timers have run."""

from __future__ import annotations

import shutil
import subprocess

import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None, reason="Debian package chromium not installed (apt-get install chromium)"
)


def dump_dom(
    url: str, profile: str, *extra: str, budget_ms: int = 5000, timeout: float = 45
) -> str:
    """The DOM of ``url`` after ``budget_ms`` of virtual time (``extra``: more switches)."""
    assert CHROMIUM is not None
    args = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        *extra,
        f"--user-data-dir={profile}",
        f"--virtual-time-budget={budget_ms}",
        "--dump-dom",
        url,
    ]
    result = subprocess.run(args, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout
