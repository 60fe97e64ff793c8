"""A real browser's ``EventSource`` (headless Chromium) against a real server, same origin.

The page opens ``new EventSource('/workflows/<name>/execute?mode=stream&...')`` as in the spec's
JavaScript example, writes every event it receives into the DOM and closes the source on
``complete`` (an ``EventSource`` reconnects, re-running the workflow, unless closed).
Chromium's ``--dump-dom`` prints the DOM once the page is idle, which the test reads.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
from collections.abc import AsyncIterator
from typing import Any

import requests
from aiohttp import web
from chromium import dump_dom, needs_chromium

from nexus_aio import hookimpl
from nexus_aio.testing import make_app

pytestmark = needs_chromium

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


def test_browser_event_source_receives_start_chunks_then_complete(nexus_thread_server, tmp_path):
    app = make_app(plugins=[SsePage()], load_entry_points=False)
    url = nexus_thread_server(app)
    dom = dump_dom(f"{url}/sse-test-page", str(tmp_path / "profile"))
    assert 'id="state">closed:You said: hello browser<' in dom
    classes = [part.split('"')[0] for part in dom.split('<li class="')[1:]]
    assert classes == ["start", "chunk", "chunk", "chunk", "chunk", "complete"]
    ids = [part.split('"')[0] for part in dom.split('data-id="')[1:]]
    workflow_id = dom.split('"workflow_id":"')[1].split('"')[0]
    assert ids == [f"{workflow_id}:{n}" for n in range(1, 7)]  # the id names the execution
    assert '"name":"chat"' in dom and '"success":true' in dom


# -- a dropped connection: the browser reconnects with Last-Event-ID and resumes its run ----------
RESUME_PAGE = """<!doctype html>
<html><body><ol id="log"></ol><p id="state">waiting</p>
<script>
const log = document.getElementById('log');
const state = document.getElementById('state');
let opened = 0;
function record(kind, e) {
  const item = document.createElement('li');
  item.className = kind;
  item.dataset.id = e.lastEventId;
  item.textContent = e.data;
  log.appendChild(item);
}
const source = new EventSource('/workflows/ticks/execute?mode=stream&n=6');
source.onopen = () => { opened += 1; };
source.addEventListener('start', (e) => { record('start', e); });
source.addEventListener('chunk', (e) => { record('chunk', e); });
source.addEventListener('complete', (e) => {
  record('complete', e);
  source.close();
  state.textContent = 'closed:' + opened + ':' + JSON.parse(e.data).result.join(',');
});
source.addEventListener('error', (e) => {
  if (e.data) { record('error', e); source.close(); state.textContent = 'failed'; }
  // no data: the connection dropped; the EventSource reconnects with Last-Event-ID
});
</script></body></html>
"""


class ResumePage:
    """Test-only routes: the resume page, from the API's own origin."""

    __name__ = "browser_resume_page"

    @hookimpl
    def register_routes(self, nexus: Any) -> list[web.RouteDef]:
        async def page(request: web.Request) -> web.Response:
            return web.Response(text=RESUME_PAGE, content_type="text/html")

        return [web.get("/sse-resume-page", page)]


class CuttingProxy:
    """A TCP proxy in front of the server that drops the first stream connection once it has
    passed two ``chunk`` events on (a network failure, as the browser sees it); other
    connections pass untouched."""

    def __init__(self, upstream: str) -> None:
        host, port = upstream.rsplit("//", 1)[1].rsplit(":", 1)
        self.upstream = (host, int(port))
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.cut = threading.Event()
        self.stream_requests: list[bytes] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        upstream = socket.create_connection(self.upstream)
        cut_this = threading.Event()

        def to_upstream() -> None:  # requests (a keep-alive connection carries several)
            with contextlib.suppress(OSError):
                while data := client.recv(65536):
                    if b"mode=stream" in data:
                        self.stream_requests.append(data)
                        if not self.cut.is_set():
                            self.cut.set()
                            cut_this.set()
                    upstream.sendall(data)

        threading.Thread(target=to_upstream, daemon=True).start()
        seen = b""
        with contextlib.suppress(OSError):
            while data := upstream.recv(65536):
                client.sendall(data)
                if cut_this.is_set():
                    seen += data
                    if seen.count(b"event: chunk") >= 2:
                        break
        for sock in (client, upstream):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def close(self) -> None:
        self.listener.close()


def test_browser_event_source_that_reconnects_with_last_event_id_resumes_the_same_execution(
    nexus_thread_server, tmp_path
):
    app = make_app(plugins=[ResumePage()], load_entry_points=False)

    @app.workflow("ticks")
    async def ticks(n: int) -> AsyncIterator[int]:
        for i in range(n):
            await asyncio.sleep(0.15)  # still running while the browser reconnects
            yield i

    server = nexus_thread_server(app)
    proxy = CuttingProxy(server)
    try:
        dom = dump_dom(f"{proxy.url}/sse-resume-page", str(tmp_path / "profile"))
    finally:
        proxy.close()
    assert proxy.cut.is_set() and len(proxy.stream_requests) == 2, proxy.stream_requests
    assert b"\r\nlast-event-id: wf-" in proxy.stream_requests[1].lower()
    # Two connections, one execution: every event once, in order, ids continuing.
    assert 'id="state">closed:2:0,1,2,3,4,5<' in dom, dom[-3000:]
    classes = [part.split('"')[0] for part in dom.split('<li class="')[1:]]
    assert classes == ["start"] + ["chunk"] * 6 + ["complete"]
    ids = [part.split('"')[0] for part in dom.split('data-id="')[1:]]
    workflow_id = dom.split('"workflow_id":"')[1].split('"')[0]
    assert ids == [f"{workflow_id}:{n}" for n in range(1, 9)]
    assert dom.count(f'"workflow_id":"{workflow_id}"') == 2  # start and complete of one run
    history = requests.get(f"{server}/executions", params={"workflow": "ticks"}, timeout=5)
    runs = history.json()["executions"]
    assert [(r["id"], r["status"]) for r in runs] == [(workflow_id, "succeeded")]
