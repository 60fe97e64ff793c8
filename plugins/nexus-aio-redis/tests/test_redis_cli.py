"""``python -m nexus_aio worker`` is added by this plugin (``register_commands``), not the core."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path


def run_cli(*args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "nexus_aio", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={"NEXUS_DATABASE": ":memory:", "PATH": "/usr/bin:/bin", **env},
    )


def test_worker_is_a_command_the_plugin_adds(tmp_path: Path) -> None:
    listed = run_cli("--help", cwd=tmp_path)
    assert listed.returncode == 0 and "worker" in listed.stdout
    usage = run_cli("worker", "--help", cwd=tmp_path)
    assert usage.returncode == 0
    assert "--app" in usage.stdout and "--log-level" in usage.stdout
    plugins = {p["name"]: p for p in json.loads(run_cli("plugins", cwd=tmp_path).stdout)}
    assert "register_commands" in plugins["redis"]["hooks"]


def test_worker_without_redis_url_exits_with_a_clear_error(tmp_path: Path) -> None:
    result = run_cli("worker", cwd=tmp_path)
    assert result.returncode == 2
    assert "the worker needs redis_url (NEXUS_REDIS_URL)" in result.stderr


def test_worker_is_an_unknown_command_with_the_plugin_disabled(tmp_path: Path) -> None:
    result = run_cli("worker", cwd=tmp_path, NEXUS_DISABLE_PLUGINS="redis")
    assert result.returncode == 2
    assert "invalid choice: 'worker'" in result.stderr
    listed = run_cli("--help", cwd=tmp_path, NEXUS_DISABLE_PLUGINS="redis")
    assert listed.returncode == 0 and "worker" not in listed.stdout
