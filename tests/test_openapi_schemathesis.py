"""schemathesis 4 against the examples app on a live server: no 5xx, no response off its schema.

Bounded (``--max-examples``) and reproducible (``--seed``). Two deliberate exceptions, both
behaviour the examples exist to show:

* ``fail`` always raises, so its 500 envelope is the point of the workflow: not fuzzed;
* ``slow``, ``chat`` and ``countdown`` take their duration from their inputs (seconds, delay,
  start), so a fuzzed huge value is correctly answered 504 by their timeout (0.3 s here, to keep
  the run short): for those three, 504 (and only 504) counts as expected.
"""

from __future__ import annotations

import subprocess
import sys

from nexus_aio.testing import make_app

CONFIG = """
[[operations]]
include-path-regex = "^/workflows/(slow|chat|countdown)/execute$"
checks.not_a_server_error.expected-statuses = ["2xx", "3xx", "4xx", "504"]
"""
TIMED = ("slow", "chat", "countdown")
CLI = "import sys; from schemathesis.cli import schemathesis; sys.exit(schemathesis())"


def test_schemathesis_finds_no_server_error_and_no_schema_violation(nexus_thread_server, tmp_path):
    app = make_app(sse_keepalive=0.5)
    for name in TIMED:  # their fuzzed durations end in a 504 quickly; the others get 30 s
        app.workflows[name].timeout = 0.3
    url = nexus_thread_server(app)
    config = tmp_path / "schemathesis.toml"
    config.write_text(CONFIG)
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            CLI,
            "--config-file",
            str(config),
            "run",
            f"{url}/openapi.json",
            "--checks",
            "not_a_server_error,response_schema_conformance",
            "--max-examples",
            "6",
            "--seed",
            "20240601",
            "--exclude-path-regex",
            "^/workflows/fail/",
            "--request-timeout",
            "10",
            "--no-color",
        ],
        capture_output=True,
        text=True,
        timeout=90,
        cwd=tmp_path,
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-6000:]
    assert "Specification:    Open API 3.1.0" in output
    assert " passed" in output and "failed" not in output.split("SUMMARY")[-1]
