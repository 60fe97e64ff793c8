"""docs/mcp.md's client example works as written, against ``python -m nexus_aio serve``."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from nexus_aio.testing import ServerProcess

DOC = Path(__file__).resolve().parents[3] / "docs" / "mcp.md"
FENCE = re.compile(r"^```(\w*)\n(.*?)^```\n", re.MULTILINE | re.DOTALL)


def client_example() -> tuple[str, str]:
    """The first ``python`` block after "## Client example" and the ``text`` block after it."""
    section = DOC.read_text().split("## Client example", 1)[1]
    blocks = FENCE.findall(section)
    code = next(body for lang, body in blocks if lang == "python")
    output = next(body for lang, body in blocks if lang == "text")
    return code, output


def test_the_client_example_prints_what_the_page_shows(tmp_path):
    code, expected = client_example()
    with ServerProcess(["serve"], cwd=tmp_path, env={"NEXUS_ENABLE_MCP": "1"}) as server:
        script = code.replace("http://localhost:8000", server.url)
        done = subprocess.run(
            [sys.executable, "-c", script], capture_output=True, text=True, timeout=60
        )
    assert done.returncode == 0, done.stderr
    pattern = ".*".join(re.escape(part) for part in expected.split("...\n"))
    assert re.fullmatch(pattern, done.stdout, re.DOTALL), done.stdout


def test_the_latency_script_runs_every_client_against_a_real_server(capsys):
    import importlib.util

    path = Path(__file__).resolve().parents[3] / "scripts" / "bench_mcp.py"
    spec = importlib.util.spec_from_file_location("bench_mcp", path)
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = bench
    spec.loader.exec_module(bench)
    assert bench.main(["--calls", "4", "--warmup", "1", "--concurrency", "1,2"]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| ")]
    assert [row.split(" | ")[:2] for row in rows[1:]] == [
        ["| http", "1"],
        ["| mcp-raw", "1"],
        ["| mcp-sdk", "1"],
        ["| http", "2"],
        ["| mcp-raw", "2"],
        ["| mcp-sdk", "2"],
    ]
