"""The README's five-minute tour works as written, against a real server.

The examples are read from README.md itself, so the test breaks when the README drifts: every
``bash`` or ``python`` block of the tour that is followed by an output block (``json`` or
``text``) is run, ``bash`` through the real ``/usr/bin/curl``, ``python`` with this interpreter,
against ``python -m nexus_aio serve`` (the bundled examples, in-memory database), in README order.
Only host and port are rewritten. Each must exit 0 and print what the README shows, where ids,
timestamps, durations and the version may differ and ``...`` stands for any text.
"""

from __future__ import annotations

import itertools
import os
import re
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from nexus_aio.testing import ServerProcess

README = Path(__file__).resolve().parents[1] / "README.md"
TOUR_HEADING = "## A five-minute tour"
CURL = "/usr/bin/curl"
# The README addresses `make run`'s server; the test's server listens elsewhere.
README_HOST = re.compile(r"(?:http://)?(?:localhost|127\.0\.0\.1):8000")
FENCE = re.compile(r"^```(\w*)\n(.*?)^```\n", re.MULTILINE | re.DOTALL)

# Values that differ on every run, as they appear in the README -> what they may be instead.
NUMBER = r"-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?"
VOLATILE: list[tuple[re.Pattern[str], Callable[[re.Match[str]], str]]] = [
    (re.compile(r"wf-[0-9a-f]{24}"), lambda m: r"wf-[0-9a-f]{24}"),
    (re.compile(r"req-[0-9a-f]{16}"), lambda m: r"req-[0-9a-f]{16}"),
    (re.compile(r'"trace_id":"[0-9a-f]{32}"'), lambda m: r'"trace_id":"[0-9a-f]{32}"'),
    (
        re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?Z"),
        lambda m: r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?Z",
    ),
    (re.compile(r'"(execution_time|uptime)":' + NUMBER), lambda m: f'"{m[1]}":{NUMBER}'),
    (re.compile(r'"version":"\d+\.\d+\.\d+"'), lambda m: r'"version":"[^"]+"'),
]


@dataclass(frozen=True)
class Example:
    line: int  # of the code block in README.md
    lang: str  # bash | python
    code: str
    shown_lang: str  # json | text
    shown: str

    @property
    def name(self) -> str:
        first = self.code.strip().splitlines()[0]
        words = re.findall(r"[\w/.?=-]+", README_HOST.sub("", first))
        return f"line{self.line}-" + "-".join(words[:6])


def tour_examples(readme: str) -> list[Example]:
    """Each runnable block of the tour with the output block right after it."""
    start = readme.index(TOUR_HEADING)
    end = readme.find("\n## ", start + len(TOUR_HEADING))
    tour_offset, tour = start, readme[start : end if end != -1 else len(readme)]
    blocks = list(FENCE.finditer(tour))
    examples = []
    for block, after in itertools.pairwise(blocks):
        between = tour[block.end() : after.start()]
        runnable = block.group(1) in ("bash", "python") and after.group(1) in ("json", "text")
        if runnable and not between.strip():
            line = readme.count("\n", 0, tour_offset + block.start()) + 1
            examples.append(
                Example(line, block.group(1), block.group(2), after.group(1), after.group(2))
            )
    return examples


def expected_pattern(example: Example) -> re.Pattern[str]:
    """The shown output as a pattern: volatile values generalised, ``...`` matching anything."""
    shown = example.shown.strip()
    if example.shown_lang == "json":  # compact JSON wrapped for reading: undo the wrapping
        shown = re.sub(r"\n\s+", "", shown)
    pattern = []
    for piece in re.split(r"(\.\.\.)", shown):
        if piece == "...":
            pattern.append(".*?")
            continue
        spans: list[tuple[int, int, str]] = []
        for regex, replacement in VOLATILE:
            for match in regex.finditer(piece):
                if not any(s < match.end() and match.start() < e for s, e, _ in spans):
                    spans.append((match.start(), match.end(), replacement(match)))
        position = 0
        for s, e, replacement in sorted(spans):
            pattern.append(re.escape(piece[position:s]) + replacement)
            position = e
        pattern.append(re.escape(piece[position:]))
    return re.compile("".join(pattern), re.DOTALL)


def run_example(example: Example, base_url: str, workdir: Path) -> subprocess.CompletedProcess[str]:
    code = README_HOST.sub(base_url, example.code)
    env = {**os.environ, "PATH": "/usr/bin:/bin:" + os.environ.get("PATH", "")}
    if example.lang == "bash":
        argv = ["bash", "-euo", "pipefail", "-c", code]
    else:
        script = workdir / f"readme_line{example.line}.py"
        script.write_text(code)
        argv = [sys.executable, str(script)]
    return subprocess.run(
        argv, cwd=workdir, env=env, capture_output=True, text=True, timeout=60, check=False
    )


EXAMPLES = tour_examples(README.read_text())


def test_readme_tour_covers_the_features_it_promises() -> None:
    """The tour keeps its examples: losing one would silently shrink this test."""
    assert len(EXAMPLES) >= 10, [e.name for e in EXAMPLES]
    code = "\n".join(e.code for e in EXAMPLES)
    for needle in (
        "/workflows/sum/execute",  # sync
        '"mode": "stream"',
        '"mode": "async"',
        "/executions/$ID",
        "X-Session-ID",
        "/workflows/greet/schema",
        "localhost:8000/workflows\n",
        "/health",
        "/docs",
        "NexusClient",
    ):
        assert needle in code + "\n", needle
    assert all("curl " in e.code for e in EXAMPLES if e.lang == "bash")


def test_curl_is_the_system_binary() -> None:
    assert Path(CURL).is_file() and os.access(CURL, os.X_OK), "install curl (see .ci/run)"


@pytest.fixture(scope="module")
def tour_results(
    tmp_path_factory: pytest.TempPathFactory,
) -> list[subprocess.CompletedProcess[str]]:
    """The whole tour, in README order, against one fresh server (examples depend on order)."""
    workdir = tmp_path_factory.mktemp("tour")  # no ./workflows here: serve loads the examples
    with ServerProcess(["serve"], cwd=workdir) as server:
        return [run_example(example, server.url, workdir) for example in EXAMPLES]


@pytest.mark.parametrize("index", range(len(EXAMPLES)), ids=[e.name for e in EXAMPLES])
def test_readme_example_prints_what_the_readme_shows(
    index: int, tour_results: list[subprocess.CompletedProcess[str]]
) -> None:
    example, result = EXAMPLES[index], tour_results[index]
    assert result.returncode == 0, f"README line {example.line} exited {result.returncode}:\n" + (
        result.stdout + result.stderr
    )
    output = result.stdout.replace("\r\n", "\n").strip()
    assert expected_pattern(example).fullmatch(output), (
        f"README line {example.line}: the output differs from the README's\n"
        f"--- README shows:\n{example.shown}\n--- got:\n{output}"
    )


def test_readme_registration_snippet_serves_its_workflow(tmp_path: Path) -> None:
    """The tour's myapp.py, served with the README's own command, answers the first example."""
    readme = README.read_text()
    tour = readme[readme.index(TOUR_HEADING) :]
    blocks = FENCE.findall(tour)
    app_code = next(code for lang, code in blocks if lang == "python" and "# myapp.py" in code)
    serve = next(code for lang, code in blocks if lang == "bash" and "--app myapp:app" in code)
    args = serve.split("-m nexus_aio", 1)[1].split()
    (tmp_path / "myapp.py").write_text(app_code)
    first = EXAMPLES[0]
    assert "/workflows/sum/execute" in first.code
    with ServerProcess(args, cwd=tmp_path) as server:
        result = run_example(first, server.url, tmp_path)
    assert result.returncode == 0, result.stderr
    assert expected_pattern(first).fullmatch(result.stdout.strip()), result.stdout
