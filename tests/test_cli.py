"""``python -m nexus_aio``: serve (subprocess), run, list; the spec's test class against it."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import requests

from nexus_aio.testing import ServerProcess

APP_MODULE = '''
from nexus_aio import Nexus

app = Nexus()


@app.workflow("test-workflow")
async def test_workflow(param: str) -> dict:
    return {"data": param.upper()}


@app.workflow()
def add(a: int, b: int = 1) -> int:
    """Add."""
    return a + b
'''


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "nexus_aio", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        env={"NEXUS_DATABASE": ":memory:", "PATH": "/usr/bin:/bin"},
    )


@pytest.fixture(scope="module")
def app_dir(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("cliapp")
    (path / "myapp.py").write_text(APP_MODULE)
    return path


@pytest.fixture(scope="module")
def served(app_dir):
    with ServerProcess(["serve", "--app", "myapp:app"], cwd=app_dir) as server:
        yield server


# The spec's "Testing API Endpoints" class, unchanged but for its base URL and workflow names.
class TestNexusAPI:
    base_url = "http://localhost:8000"

    @pytest.fixture(autouse=True)
    def _point_at_server(self, served):
        type(self).base_url = served.url

    def test_workflow_execution(self):
        response = requests.post(
            f"{self.base_url}/workflows/test-workflow/execute", json={"inputs": {"param": "value"}}
        )

        assert response.status_code == 200
        data = response.json()
        assert data["success"] is True
        assert "result" in data

    def test_workflow_not_found(self):
        response = requests.post(
            f"{self.base_url}/workflows/nonexistent/execute", json={"inputs": {}}
        )

        assert response.status_code == 404

    def test_invalid_input(self):
        response = requests.post(
            f"{self.base_url}/workflows/test-workflow/execute",
            json={"inputs": {"wrong_param": "value"}},
        )

        assert response.status_code == 400

    def test_health_check(self):
        response = requests.get(f"{self.base_url}/health")
        assert response.status_code == 200
        data = response.json()
        assert data["status"] == "healthy"


def test_serve_app_module_runs_sync_workflows(served):
    response = requests.post(f"{served.url}/workflows/add/execute", json={"inputs": {"a": 41}})
    assert response.json()["result"] == 42


def test_run_prints_the_envelope_and_exit_code(app_dir):
    ok = run_cli("run", "add", "--inputs", '{"a": 1, "b": 2}', "--app", "myapp:app", cwd=app_dir)
    assert ok.returncode == 0, ok.stderr
    envelope = json.loads(ok.stdout)
    assert envelope["success"] is True and envelope["result"] == 3
    bad = run_cli("run", "add", "--inputs", '{"a": "x"}', "--app", "myapp:app", cwd=app_dir)
    assert bad.returncode == 1
    assert json.loads(bad.stdout)["error"]["type"] == "ValidationError"
    broken = run_cli("run", "add", "--inputs", "{nope", "--app", "myapp:app", cwd=app_dir)
    assert broken.returncode == 2 and "not valid JSON" in broken.stderr


def test_run_uses_bundled_examples_by_default(tmp_path):
    result = run_cli("run", "sum", "--inputs", '{"a": 20, "b": 22}', cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["result"] == 42


def test_list_names_workflows(app_dir):
    result = run_cli("list", "--app", "myapp:app", cwd=app_dir)
    assert result.returncode == 0
    names = [line.split("\t")[0] for line in result.stdout.splitlines()]
    assert names == ["add", "test-workflow"]


def test_bare_command_serves_the_workflows_directory(tmp_path):
    (tmp_path / "workflows").mkdir()
    (tmp_path / "workflows" / "shout.py").write_text(
        textwrap.dedent("""
        async def shout(text: str) -> str:
            return text.upper() + "!"
    """)
    )
    server = ServerProcess([], cwd=tmp_path)
    with server:
        response = requests.post(
            f"{server.url}/workflows/shout/execute", json={"inputs": {"text": "hi"}}
        )
        assert response.json()["result"] == "HI!"
    out = server.stop()
    assert "workflows from ./workflows" in out


def test_workflows_option_and_bundled_examples_message(tmp_path):
    server = ServerProcess(["serve"], cwd=tmp_path)
    with server:
        assert requests.get(f"{server.url}/workflows/sum/schema").status_code == 200
    assert "bundled example workflows" in server.stop()


def test_json_access_log_has_one_line_per_request_without_inputs(tmp_path):
    server = ServerProcess(["serve", "--log-format", "json"], cwd=tmp_path)
    with server:
        requests.post(
            f"{server.url}/workflows/greet/execute",
            json={"inputs": {"name": "secret-value-123"}},
            headers={"X-Request-ID": "req-log-1", "Authorization": "Bearer tok-xyz"},
        )
    out = server.stop()
    lines = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    access = [line for line in lines if line.get("logger") == "nexus_aio.access"]
    assert len(access) == 1
    entry = access[0]
    assert entry["request_id"] == "req-log-1" and entry["workflow"] == "greet"
    assert entry["status"] == 200 and entry["method"] == "POST" and "duration_ms" in entry
    assert "secret-value-123" not in out and "tok-xyz" not in out


def test_sigterm_exits_cleanly(tmp_path):
    server = ServerProcess(["serve"], cwd=tmp_path)
    with server:
        pass
    assert server.proc.returncode == 0
