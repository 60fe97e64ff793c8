"""schemathesis 4 against real server processes: every check but ``not_a_server_error`` and
``positive_data_acceptance`` finds nothing, over the bundled examples and over a suite app.

Those two are left out on purpose: ``fail`` raises by design (its documented 500 is the point),
the timed examples answer a documented 504 to a fuzzed huge duration, and valid-looking data can
still be refused by a workflow (a documented 4xx). Everything else holds: documented statuses,
content types, headers and bodies, invalid data refused (every stated constraint enforced),
required headers, unsupported methods (405 with ``Allow``), stateful links and auth checks.

Bounded (``--max-examples``, two unexpected methods per operation) and reproducible
(``--seed``); ``request_timeout`` is short so the timed examples (``slow``, ``chat``,
``countdown``) end quickly, and both runs go at once (each mostly waits on its server).
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from nexus_aio.testing import ServerProcess

TESTS = Path(__file__).parent
CLI = "import sys; from schemathesis.cli import schemathesis; sys.exit(schemathesis())"
SEED = "20240601"
# Fewer requests: two unexpected methods per operation (405 with Allow) instead of seven.
CONFIG = """
[phases.coverage]
unexpected-methods = ["patch", "trace"]
"""
ENV = {"NEXUS_REQUEST_TIMEOUT": "0.5", "NEXUS_SSE_KEEPALIVE": "0.5", "NEXUS_LOG_LEVEL": "WARNING"}


def schemathesis(url: str, cwd: Path) -> subprocess.Popen[str]:
    """``schemathesis run`` on ``url``'s document, started (its output is read at the end)."""
    config = cwd / "schemathesis.toml"
    config.write_text(CONFIG)
    return subprocess.Popen(
        [
            sys.executable,
            "-c",
            CLI,
            "--config-file",
            str(config),
            "run",
            f"{url}/openapi.json",
            "--checks",
            "all",
            "--exclude-checks",
            "not_a_server_error,positive_data_acceptance",
            "--max-examples",
            "2",
            "--seed",
            SEED,
            "--request-timeout",
            "10",
            "--no-color",
            "--output-sanitize",
            "false",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=cwd,
    )


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, tuple[int, str]]]:
    """Both runs at once (each mostly waits on its server): app name -> (exit code, output)."""
    examples_dir = tmp_path_factory.mktemp("examples")
    suite_dir = tmp_path_factory.mktemp("suite")
    with (
        ServerProcess(["serve"], cwd=examples_dir, env=ENV) as examples,
        ServerProcess(["serve", "--app", "openapi_suite_app:app"], cwd=TESTS, env=ENV) as suite,
    ):
        procs = {
            "examples": schemathesis(examples.url, examples_dir),
            "suite": schemathesis(suite.url, suite_dir),
        }
        results = {}
        for name, proc in procs.items():
            try:
                output, _ = proc.communicate(timeout=150)
            except subprocess.TimeoutExpired:
                proc.kill()
                output = proc.communicate()[0] + "\n(timed out)"
            results[name] = (proc.returncode, output)
        yield results


def check(run: tuple[int, str]) -> None:
    code, output = run
    assert code == 0, output[-8000:]
    assert "Specification:    Open API 3.1.0" in output
    summary = output.split("SUMMARY")[-1]
    assert " passed" in summary and "failed" not in summary and "rror" not in summary, output
    generated = re.search(r"(\d+) generated, (\d+) passed", summary)
    assert generated is not None and int(generated[1]) == int(generated[2]) > 500, summary


def test_schemathesis_finds_nothing_over_the_bundled_examples(runs):
    check(runs["examples"])


def test_schemathesis_finds_nothing_over_the_suite_app(runs):
    check(runs["suite"])
