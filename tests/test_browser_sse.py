"""A real browser's ``EventSource`` (headless Chromium) against a real server, same origin.

The page opens ``new EventSource('/workflows/<name>/execute?mode=stream&...')`` as in the spec's
JavaScript example, writes every event it receives into the DOM and closes the source on
``complete`` (an ``EventSource`` reconnects, re-running the workflow, unless closed).
Chromium's ``--dump-dom`` prints the DOM once the page is idle, which the test reads.
"""

from __future__ import annotations

import shutil
import subprocess
from typing import Any

import pytest
from aiohttp import web

from nexus_aio import hookimpl
from nexus_aio.testing import make_app

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="Debian package chromium not installed")

PAGE = """<!doctype html>
<html><body><ol id="log"></ol><p id="state">waiting</p>
<script>
const log = document.getElementById('log');
const state = document.getElementById('state');
function record(kind, e) {
  const item = document.createElement('li');
  item.className = kind;
  item.dataset.id = e.lastEventId;
  item.textContent = e.data;
  log.appendChild(item);
}
const url = '/workflows/chat/execute?mode=stream&message=hello%20browser&delay=0';
const source = new EventSource(url);
source.addEventListener('start', (e) => { record('start', e); });
source.addEventListener('chunk', (e) => { record('chunk', e); });
source.addEventListener('complete', (e) => {
  record('complete', e);
  source.close();
  state.textContent = 'closed:' + JSON.parse(e.data).result.join(' ');
});
source.addEventListener('error', (e) => {
  if (e.data) { record('error', e); }
  source.close();
  if (state.textContent === 'waiting') { state.textContent = 'failed'; }
});
</script></body></html>
"""


class SsePage:
    """A test-only route serving the page from the API's own origin."""

    __name__ = "browser_test_page"

    @hookimpl
    def register_routes(self, nexus: Any) -> list[web.RouteDef]:
        async def page(request: web.Request) -> web.Response:
            return web.Response(text=PAGE, content_type="text/html")

        return [web.get("/sse-test-page", page)]


def dump_dom(url: str, profile: str) -> str:
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
        f"--user-data-dir={profile}",
        "--virtual-time-budget=5000",
        "--dump-dom",
        url,
    ]
    result = subprocess.run(args, capture_output=True, text=True, timeout=45)
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


def test_browser_event_source_receives_start_chunks_then_complete(nexus_thread_server, tmp_path):
    app = make_app(plugins=[SsePage()], load_entry_points=False)
    url = nexus_thread_server(app)
    dom = dump_dom(f"{url}/sse-test-page", str(tmp_path / "profile"))
    assert 'id="state">closed:You said: hello browser<' in dom
    classes = [part.split('"')[0] for part in dom.split('<li class="')[1:]]
    assert classes == ["start", "chunk", "chunk", "chunk", "chunk", "complete"]
    ids = [part.split('"')[0] for part in dom.split('data-id="')[1:]]
    assert ids == ["1", "2", "3", "4", "5", "6"]
    assert '"name":"chat"' in dom and '"success":true' in dom
