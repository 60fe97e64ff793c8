"""What a starting server says about its security: real ``python -m nexus_aio serve`` processes."""

from __future__ import annotations

import importlib.util
import time
from pathlib import Path

import pytest

from nexus_aio.testing import ServerProcess

NO_AUTH = "no authentication: every caller can run every workflow and read every execution"
needs_auth = pytest.mark.skipif(
    importlib.util.find_spec("nexus_aio_auth") is None, reason="plugin nexus-aio-auth not installed"
)
needs_cors = pytest.mark.skipif(
    importlib.util.find_spec("nexus_aio_cors") is None, reason="plugin nexus-aio-cors not installed"
)


def output_once_started(tmp_path: Path, env: dict[str, str], wait_for: str) -> str:
    """Start a server, poll its output for ``wait_for`` (startup logs come after the port opens
    only on slow machines), stop it and return everything it printed."""
    with ServerProcess(["serve"], cwd=tmp_path, env=env) as server:
        deadline = time.monotonic() + 10
        while wait_for not in server.read_output() and time.monotonic() < deadline:
            time.sleep(0.05)
        return server.stop()


def test_auth_off_says_so_at_startup_in_one_log_line(tmp_path):
    output = output_once_started(tmp_path, {"NEXUS_ENABLE_AUTH": "0"}, NO_AUTH)
    lines = [line for line in output.splitlines() if "no authentication" in line]
    assert len(lines) == 1, output
    assert lines[0].endswith(NO_AUTH)
    assert "WARNING" in lines[0]


@needs_auth
def test_auth_on_does_not_claim_there_is_no_authentication(tmp_path):
    env = {"NEXUS_ENABLE_AUTH": "1", "NEXUS_AUTH_API_KEYS": "startup-test-key-0123456789"}
    output = output_once_started(tmp_path, env, "auth enabled")
    assert "auth enabled" in output
    assert "no authentication" not in output


@needs_cors
def test_cors_without_origins_says_at_startup_that_every_origin_is_allowed(tmp_path):
    output = output_once_started(tmp_path, {"NEXUS_ENABLE_CORS": "1"}, "every origin")
    lines = [line for line in output.splitlines() if "every origin is allowed" in line]
    assert len(lines) == 1, output
    assert "Access-Control-Allow-Origin: *" in lines[0]
